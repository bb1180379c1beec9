#!/usr/bin/env python3
"""One markdown table of a study's results.csv: a row per method (scratch and random first),
k-NN, probe and fine-tune at each budget, mean ± standard deviation over the seeds.

    python3 bench/study_table.py runs/study-cifar10 [--budgets 10,100] [--methods rotation,simclr,byol]
"""
import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("study")
    p.add_argument("--budgets", default="10,100")
    p.add_argument("--methods", default="")
    a = p.parse_args()
    cells = defaultdict(list)
    order = []
    with open(Path(a.study) / "results.csv") as f:
        for row in csv.DictReader(f):
            key = (row["method"], row["mode"], row["labels_per_class"])
            cells[key].append(float(row["accuracy"]))
            if row["method"] not in order:
                order.append(row["method"])
    budgets = a.budgets.split(",")
    methods = [m for m in order if m not in ("scratch", "random")]
    if a.methods:
        methods = a.methods.split(",")
    modes = ["knn", "probe", "finetune"]

    def cell(method, mode, budget):
        v = cells.get((method, mode, budget))
        if not v:
            return "–"
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return "%.3f ± %.3f" % (statistics.mean(v), sd)

    head = ["method"] + ["%s @%s" % (m, b) for b in budgets for m in modes]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    print("| scratch | " + " | ".join(
        cell("scratch", "finetune", b) if m == "finetune" else "–" for b in budgets for m in modes) + " |")
    print("| random encoder | " + " | ".join(
        cell("random", "probe", b) if m == "probe" else "–" for b in budgets for m in modes) + " |")
    for method in methods:
        print("| %s | " % method + " | ".join(cell(method, m, b) for b in budgets for m in modes) + " |")


if __name__ == "__main__":
    main()
