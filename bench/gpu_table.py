#!/usr/bin/env python3
"""The GPU check's table: one row per (step, batch, precision), pretext's samples/s on each device
it ran on beside PyTorch's on CUDA, the ratios, and each pretext device's profile (a step's
milliseconds until it returns, its work issued, and until the GPU has finished it).
Usage: python3 bench/gpu_table.py gpu-steps.jsonl"""
import json
import sys


def key(d):
    return (d["model"].split("/")[0], d["batch"], d.get("precision", "fp32"))


def main(path):
    rows, devices = {}, []
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        name = "pytorch" if d["impl"] == "pytorch" else d["device"]
        if name != "pytorch" and name not in devices:
            devices.append(name)
        rows.setdefault(key(d), {})[name] = d
    head = ["step", "batch", "precision", "PyTorch CUDA"]
    for dev in devices:
        head += [f"pretext {dev}", "ratio", "issue / synced ms"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for (model, batch, precision), r in rows.items():
        torch = r.get("pytorch", {}).get("samples_per_s")
        cells = [model, str(batch), precision, f"{torch:.0f}" if torch else "n/a"]
        for dev in devices:
            d = r.get(dev, {})
            ours = d.get("samples_per_s")
            prof = d.get("profile")
            cells += [
                f"{ours:.0f}" if ours else "n/a",
                f"{ours / torch:.2f}" if ours and torch else "n/a",
                f"{prof['issue_ms']:.1f} / {prof['synced_ms']:.1f}" if prof else "n/a",
            ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
