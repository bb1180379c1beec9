#!/usr/bin/env bash
# The GPU check: pretext's training steps on each GPU path beside the same steps in PyTorch on
# CUDA in the same call (same model, batch and precision: fp32 with TF32 allowed on both sides,
# bf16 against PyTorch's autocast), then SimCLR with its k-NN monitor, SimCLR data-parallel on two
# copies of the GPU, and `pretext demo` on it. Writes gpu-steps.jsonl, table.md and the logs to OUT.
# Build (here, against the GPU machine's PyTorch; README "GPUs"):
#   cargo build --release --features tch,vulkan
# Run from the repo root on a machine with an NVIDIA GPU and a CUDA PyTorch:
#   OUT=docs/results/gpu-check-h100 bash bench/gpu-check.sh
# Cases run in this order, each on every path and precision, so that a short budget still gets
# the first: ResNet-18 CIFAR 256, ConvNet-4 128 and 512, ResNet-18 CIFAR 64, ResNet-50 at 224
# pixels 64, MLM 32 and 128.
# Env overrides: PRETEXT (target/release/pretext) PATHS ("tch-cuda vulkan") PRECISIONS
#   ("fp32 bf16") CASES (as "model:batch[:size] ...") TORCH_PYTHON (python3) STEPS (30)
#   WARMUP (10) PROFILE (5) LIMIT (s per command, 180) DEMO (1) DEMO_LIMIT (300)
#   SIMCLR_MINUTES (3) OUT (default: a temporary folder)
set -uo pipefail

PRETEXT="${PRETEXT:-target/release/pretext}"
PATHS="${PATHS:-tch-cuda vulkan}"
PRECISIONS="${PRECISIONS:-fp32 bf16}"
CASES="${CASES:-resnet18:256 convnet4:128 convnet4:512 resnet18:64 resnet50:64:224 transformer:32 transformer:128}"
TORCH_PYTHON="${TORCH_PYTHON:-python3}"
STEPS="${STEPS:-30}"
WARMUP="${WARMUP:-10}"
PROFILE="${PROFILE:-5}"
LIMIT="${LIMIT:-180}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
LINES="$OUT/gpu-steps.jsonl"
: >"$LINES"

if [[ ! -x "$PRETEXT" ]]; then
    echo "error: $PRETEXT not found; build it with: cargo build --release --features tch,vulkan" >&2
    exit 1
fi
# libtorch comes from the PyTorch beside it (the tch build links it dynamically).
TORCH_LIB="$("$TORCH_PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
if [[ -n "$TORCH_LIB" ]]; then
    export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if ! "$TORCH_PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "warning: $TORCH_PYTHON has no CUDA PyTorch; only pretext's side is measured" >&2
    TORCH_PYTHON=""
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"

# pretext on DEVICE at PRECISION for MODEL BATCH [SIZE], one JSON line.
pretext_step() {
    local device=$1 precision=$2 model=$3 batch=$4 size=$5
    echo "== pretext $model batch $batch ${size:+${size}px }$precision on $device" >&2
    timeout "$LIMIT" "$PRETEXT" --device "$device" --precision "$precision" --quiet bench step \
        --model "$model" --batch "$batch" ${size:+--image-size "$size"} --steps "$STEPS" \
        --warmup "$WARMUP" --profile "$PROFILE" | tail -n 1 | tee -a "$LINES"
}

# PyTorch on CUDA at PRECISION for MODEL BATCH [SIZE], one JSON line.
torch_step() {
    local precision=$1 model=$2 batch=$3 size=$4
    echo "== pytorch $model batch $batch ${size:+${size}px }$precision on cuda" >&2
    local peer=(bench/torch_step.py --model "$model" ${size:+--size "$size"})
    [[ "$model" == transformer ]] && peer=(bench/mlm_step_torch.py)
    timeout "$LIMIT" "$TORCH_PYTHON" "${peer[@]}" --device cuda --precision "$precision" \
        --batch "$batch" --steps "$STEPS" --warmup "$WARMUP" | tail -n 1 | tee -a "$LINES"
}

# Keeps a run's metrics and results beside it, and drops its checkpoints and encoder.
keep_results() {
    local run=$1
    for file in metrics.jsonl results.json; do
        cp "$run/$file" "$run-$file" 2>/dev/null
    done
    rm -rf "$run"
}

for case in $CASES; do
    IFS=: read -r model batch size <<<"$case"
    for precision in $PRECISIONS; do
        for device in $PATHS; do
            pretext_step "$device" "$precision" "$model" "$batch" "${size:-}"
        done
        [[ -n "$TORCH_PYTHON" ]] && torch_step "$precision" "$model" "$batch" "${size:-}"
    done
done
python3 bench/gpu_table.py "$LINES" | tee "$OUT/table.md"

[[ "${DEMO:-1}" == 1 ]] || exit 0
first="${PATHS%% *}"
for precision in $PRECISIONS; do
    echo "== SimCLR on $first, $precision, synthetic data, ${SIMCLR_MINUTES:-3} minutes" >&2
    timeout $((${SIMCLR_MINUTES:-3} * 60 + 120)) "$PRETEXT" --device "$first" \
        --precision "$precision" --quiet pretrain --data synthetic --task simclr --epochs 1000 \
        --max-minutes "${SIMCLR_MINUTES:-3}" --out "$OUT/simclr-$precision" 2>&1 | tail -n 3
    keep_results "$OUT/simclr-$precision"
done
echo "== data parallel: SimCLR on two copies of $first (synthetic data, 30 steps)" >&2
timeout "$LIMIT" "$PRETEXT" --devices "$first,$first" --quiet pretrain --data synthetic \
    --task simclr --max-steps 30 --out "$OUT/data-parallel" 2>&1 | tail -n 2
keep_results "$OUT/data-parallel"
echo "== end to end: pretext demo on $first" >&2
timeout "${DEMO_LIMIT:-300}" "$PRETEXT" --device "$first" --quiet demo --out "$OUT/demo" 2>&1 \
    | tail -n 12
keep_results "$OUT/demo"
