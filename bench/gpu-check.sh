#!/usr/bin/env bash
# The GPU check: pretext's training steps on a GPU (burn's wgpu backend, or cuda) beside the same
# steps in PyTorch on CUDA on the same machine, interleaved, then `pretext demo` end to end on it.
# Steps: ConvNet-4 rotation step (batch 128), ResNet-18 (CIFAR, batch 64), the BERT-style MLM
# step (hidden 256, 4 layers, 128 tokens, batch 32); with BIG=1 also at 4x those batches.
# Run from the repo root on a machine with an NVIDIA GPU:
#   cargo build --release --features wgpu && bash bench/gpu-check.sh
#   cargo build --release --features vulkan && DEVICE=vulkan bash bench/gpu-check.sh   (SPIR-V)
# Env overrides: PRETEXT (target/release/pretext) DEVICE (wgpu) TORCH_PYTHON (python3)
#                STEPS (30) WARMUP (10) BIG (0) LIMIT (s per step command, 150) DEMO_LIMIT (240)
#                OUT (where the JSON lines and the demo go; default: a temporary folder)
set -uo pipefail

PRETEXT="${PRETEXT:-target/release/pretext}"
DEVICE="${DEVICE:-wgpu}"
TORCH_PYTHON="${TORCH_PYTHON:-python3}"
STEPS="${STEPS:-30}"
WARMUP="${WARMUP:-10}"
BIG="${BIG:-0}"
LIMIT="${LIMIT:-150}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
LINES="$OUT/gpu-steps.jsonl"
: >"$LINES"

if [[ ! -x "$PRETEXT" ]]; then
    echo "error: $PRETEXT not found; build it with: cargo build --release --features wgpu" >&2
    exit 1
fi
if ! "$TORCH_PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "warning: $TORCH_PYTHON has no CUDA PyTorch; only pretext's side is measured" >&2
    TORCH_PYTHON=""
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true

cases=("convnet4 128" "resnet18 64" "transformer 32")
if [[ "$BIG" == 1 ]]; then
    cases+=("convnet4 512" "resnet18 256" "transformer 128")
fi

for case in "${cases[@]}"; do
    read -r model batch <<<"$case"
    echo "== $model batch $batch: pretext on $DEVICE" >&2
    timeout "$LIMIT" "$PRETEXT" --device "$DEVICE" --quiet bench step --model "$model" \
        --batch "$batch" --steps "$STEPS" --warmup "$WARMUP" | tail -n 1 | tee -a "$LINES"
    if [[ -n "$TORCH_PYTHON" ]]; then
        echo "== $model batch $batch: pytorch on cuda" >&2
        if [[ "$model" == transformer ]]; then
            peer=(bench/mlm_step_torch.py)
        else
            peer=(bench/torch_step.py --model "$model")
        fi
        timeout "$LIMIT" "$TORCH_PYTHON" "${peer[@]}" --device cuda --batch "$batch" \
            --steps "$STEPS" --warmup "$WARMUP" | tail -n 1 | tee -a "$LINES"
    fi
done

python3 - "$LINES" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        d = json.loads(line)
        key = (d["model"].split("/")[0], d["batch"])
        rows.setdefault(key, {})[d["impl"]] = d
print("| step | batch | pretext samples/s | PyTorch CUDA samples/s | ratio |")
print("| --- | --- | --- | --- | --- |")
for (model, batch), r in rows.items():
    p = r.get("pretext", {}).get("samples_per_s")
    t = r.get("pytorch", {}).get("samples_per_s")
    fmt = lambda v: "%.0f" % v if v else "n/a"
    ratio = "%.2f" % (p / t) if p and t else "n/a"
    print(f"| {model} | {batch} | {fmt(p)} | {fmt(t)} | {ratio} |")
EOF

echo "== data parallel: SimCLR on two copies of $DEVICE (synthetic data, 30 steps)" >&2
timeout "$LIMIT" "$PRETEXT" --devices "$DEVICE,$DEVICE" --quiet pretrain --data synthetic \
    --task simclr --max-steps 30 --out "$OUT/data-parallel" 2>&1 | tail -n 5

echo "== end to end: pretext demo (pretraining, transfer, study) on $DEVICE" >&2
timeout "${DEMO_LIMIT:-240}" "$PRETEXT" --device "$DEVICE" --quiet demo --out "$OUT/demo" 2>&1 | tail -n 30
