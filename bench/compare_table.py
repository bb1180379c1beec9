#!/usr/bin/env python3
"""One Markdown table comparing pretraining runs, each transferred at 10 and 100 labels per
class (RUN/transfer-10 and RUN/transfer-100, as bench/tasks-study.sh writes them). Scratch and random come from whichever run's transfer has
them. Usage: python3 bench/compare_table.py RUN [RUN ...]"""
import json
import sys
from pathlib import Path

def cell(r):
    if r is None:
        return "–"
    return f"{r['mean']:.3f}" if len(r["per_seed"]) == 1 else f"{r['mean']:.3f} ± {r['std']:.3f}"

modes = ["probe", "knn", "finetune"]
budgets = ["10", "100"]
rows, baseline = [], {}
for run in map(Path, sys.argv[1:]):
    pre = json.loads((run / "results.json").read_text())
    cells = {}
    for b in budgets:
        path = run / f"transfer-{b}" / "results.json"
        if path.exists():
            for r in json.loads(path.read_text())["results"]:
                cells[(r["mode"], b)] = r
                if r["mode"] in ("scratch", "random"):
                    baseline.setdefault((r["mode"], b), r)
    acc = pre.get("pretext_test_acc")
    rows.append([pre["task"], f"{pre['seconds'] / 60:.1f}", str(pre["steps"]),
                 "–" if acc is None else f"{acc:.3f}"]
                + [cell(cells.get((m, b))) for b in budgets for m in modes])

head = ["task", "pretraining (min)", "steps", "pretext test acc"] + [
    f"{m} @{b}" for b in budgets for m in modes]
print("| " + " | ".join(head) + " |")
print("|" + " --- |" * len(head))
# Scratch is the fine-tuning recipe from random weights; random is the probe on a random encoder.
for mode, column in [("scratch", "finetune"), ("random", "probe")]:
    print(f"| {mode} | – | – | – | " + " | ".join(
        cell(baseline.get((mode, b))) if m == column else "–"
        for b in budgets for m in modes) + " |")
for row in rows:
    print("| " + " | ".join(row) + " |")
