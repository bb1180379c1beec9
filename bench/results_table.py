#!/usr/bin/env python3
"""Markdown table of a transfer study (bench/transfer-study.sh) from its results.json files.
Usage: python3 bench/results_table.py runs/fashion-mnist"""
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
pre = json.loads((run / "results.json").read_text())
cells = {}
for budget in ["10", "100", "all"]:
    path = run / f"transfer-{budget}" / "results.json"
    if path.exists():
        for r in json.loads(path.read_text())["results"]:
            cells[(r["mode"], budget)] = r

print(f"pretraining: {pre['steps']} steps in {pre['seconds'] / 60:.1f} min; "
      f"rotation test accuracy {pre['pretext_test_acc']:.3f}\n")
print("| mode | 10 labels/class | 100 labels/class | all labels |")
print("| --- | --- | --- | --- |")
for mode in ["scratch", "random", "probe", "knn", "finetune"]:
    row = []
    for budget in ["10", "100", "all"]:
        r = cells.get((mode, budget))
        row.append("–" if r is None else (f"{r['mean']:.3f}" if len(r["per_seed"]) == 1 else f"{r['mean']:.3f} ± {r['std']:.3f}"))
    print(f"| {mode} | " + " | ".join(row) + " |")
