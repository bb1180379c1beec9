#!/usr/bin/env bash
# Compare one training step, pretext (Rust) vs PyTorch (CPU, fp32), interleaved at each thread
# count: the ConvNet-4 rotation-pretext step (MODEL=convnet4, bench/torch_step.py) or the
# BERT-style masked-language-model step (MODEL=transformer, bench/mlm_step_torch.py: hidden 256,
# 4 layers, sequences of 128 tokens, batch 32). Run from the repo root:
#   bash bench/compare.sh                    MODEL=transformer bash bench/compare.sh
# INFERENCE=1 times feature extraction instead (image encoders' forward pass, eval mode, no grad).
# MODEL=resnet18|resnet50 with SIZE=224 times the ImageNet ResNets (torchvision's on the PyTorch
# side). Each side also reports its peak resident memory minus its resident memory before the
# first step (libtorch's own baseline is large), in the table's MiB columns.
# Env overrides: MODEL (convnet4) BATCH (128; transformer 32) STEPS (20) WARMUP (3) WIDTH (64)
#                SIZE (image side; 32 when unset)
#                THREADS ("1 2") REPEAT (1: rounds; the table gives each side's median)
#                TORCH_PYTHON (/work/venv-torch/bin/python)
#                PRETEXT (target/release/pretext) JSON_OUT (a file the raw JSON lines are appended to)
set -euo pipefail

MODEL="${MODEL:-convnet4}"
if [[ "$MODEL" == transformer ]]; then
    BATCH="${BATCH:-32}"
    PEER=bench/mlm_step_torch.py
else
    BATCH="${BATCH:-128}"
    PEER=bench/torch_step.py
fi
STEPS="${STEPS:-20}"
WARMUP="${WARMUP:-3}"
WIDTH="${WIDTH:-64}"
THREADS="${THREADS:-1 2}"
TORCH_PYTHON="${TORCH_PYTHON:-/work/venv-torch/bin/python}"
PRETEXT="${PRETEXT:-target/release/pretext}"

if [[ ! -f bench/torch_step.py ]]; then
    echo "error: run this from the repository root (bash bench/compare.sh)" >&2
    exit 1
fi
if [[ ! -x "$TORCH_PYTHON" ]]; then
    cat >&2 <<EOF
error: no Python with PyTorch at $TORCH_PYTHON
create it (outside the repo) with:
    python3 -m venv /work/venv-torch
    /work/venv-torch/bin/pip install torch numpy
or point TORCH_PYTHON at an interpreter that has torch.
EOF
    exit 1
fi
if [[ ! -x "$PRETEXT" ]]; then
    echo "error: $PRETEXT not found; build it first with: cargo build --release" >&2
    exit 1
fi

args=(--model "$MODEL" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP")
[[ "$MODEL" == transformer ]] || args+=(--width "$WIDTH")
[[ -n "${SIZE:-}" ]] && args+=(--image-size "$SIZE")
[[ "${INFERENCE:-0}" == 1 ]] && args+=(--inference)

results=()
for round in $(seq "${REPEAT:-1}"); do
    for n in $THREADS; do
        echo "round $round, threads=$n: pretext ..." >&2
        r=$(OMP_NUM_THREADS="$n" RAYON_NUM_THREADS="$n" MKL_NUM_THREADS="$n" \
            "$PRETEXT" bench step "${args[@]}" --threads "$n" | tail -n 1)
        results+=("$r")
        echo "round $round, threads=$n: pytorch ..." >&2
        r=$(OMP_NUM_THREADS="$n" RAYON_NUM_THREADS="$n" MKL_NUM_THREADS="$n" \
            "$TORCH_PYTHON" "$PEER" "${args[@]}" --threads "$n" | tail -n 1)
        results+=("$r")
    done
done

[[ -n "${JSON_OUT:-}" ]] && printf '%s\n' "${results[@]}" >> "$JSON_OUT"
printf '%s\n' "${results[@]}" | python3 -c '
import json, sys
rows, memory = {}, {}
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        d = json.loads(line)
    except json.JSONDecodeError:
        sys.exit("error: not a JSON line: %r" % line)
    rows.setdefault(int(d["threads"]), {}).setdefault(d["impl"], []).append(d["samples_per_s"])
    if "step_mib" in d:
        memory.setdefault(int(d["threads"]), {}).setdefault(d["impl"], []).append(d["step_mib"])
median = lambda v: sorted(v)[len(v) // 2] if len(v) % 2 else sum(sorted(v)[len(v) // 2 - 1:len(v) // 2 + 1]) / 2
print("model=%s batch=%s width=%s steps=%s warmup=%s size=%s" % tuple(sys.argv[1:7]))
print("%7s  %18s  %18s  %8s  %12s  %12s  %s" % ("threads", "pretext samples/s", "pytorch samples/s", "ratio", "pretext MiB", "pytorch MiB", "each round"))
med = {}
for n in sorted(rows):
    p, t = rows[n].get("pretext", []), rows[n].get("pytorch", [])
    med[n] = (median(p) if p else None, median(t) if t else None)
    ratio = "%.3f" % (med[n][0] / med[n][1]) if p and t else "n/a"
    each = " ".join("%.2f" % (a / b) for a, b in zip(p, t)) if len(p) > 1 else ""
    fmt = lambda v: "%.1f" % v if v is not None else "n/a"
    mib = [median(memory.get(n, {}).get(k, [])) if memory.get(n, {}).get(k) else None for k in ("pretext", "pytorch")]
    print("%7d  %18s  %18s  %8s  %12s  %12s  %s" % (n, fmt(med[n][0]), fmt(med[n][1]), ratio, fmt(mib[0]), fmt(mib[1]), each))
if 1 in med and 2 in med and all(med[1]) and all(med[2]):
    print("2 threads / 1 thread: pretext %.2fx, pytorch %.2fx" % (med[2][0] / med[1][0], med[2][1] / med[1][1]))
' "$MODEL" "$BATCH" "$WIDTH" "$STEPS" "$WARMUP" "${SIZE:-32}"
