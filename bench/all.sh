#!/usr/bin/env bash
# Every CPU comparison with PyTorch in one run, each side by side and interleaved at 1 and 2
# threads (bench/compare.sh): the ConvNet-4 rotation step (batch 128), the ResNet-18 step
# (batch 64), the masked-language-model step (batch 32), feature extraction with both image
# encoders, and the data pipeline alone: rotation views per second against what the ConvNet-4
# step consumes, and SimCLR's two-view augmentation against torchvision's
# (bench/augment-compare.sh); then the ImageNet ResNet-18 and ResNet-50 at 224 pixels (batch 32,
# torchvision's models as the peers), training and feature extraction. Each step's table also
# gives both sides' step memory (peak resident minus resident before the first step).
# Run from the repo root on an idle machine after
# `cargo build --release`:
#   bash bench/all.sh
# Env: DATA (../shared/data/cifar10-jpeg), TORCH_PYTHON (/work/venv-torch/bin/python),
#      PRETEXT (target/release/pretext), STEPS (20; STEPS_224, 5, at 224 pixels),
#      REPEAT (1: interleaved rounds, medians
#      reported), IMAGES (20000), OUT (a JSON-lines file; a temporary one by default).
set -euo pipefail
DATA="${DATA:-../shared/data/cifar10-jpeg}"
PRETEXT="${PRETEXT:-target/release/pretext}"
TORCH_PYTHON="${TORCH_PYTHON:-/work/venv-torch/bin/python}"
IMAGES="${IMAGES:-20000}"
OUT="${OUT:-$(mktemp)}"
: > "$OUT"
export PRETEXT TORCH_PYTHON STEPS="${STEPS:-20}"

compare() {
    local title="$1"
    shift
    echo
    echo "== $title"
    env "$@" JSON_OUT="$OUT" bash bench/compare.sh
}
compare "ConvNet-4 rotation training step" MODEL=convnet4 BATCH=128
echo
echo "== what two threads can give: a matrix product in PyTorch"
"$TORCH_PYTHON" bench/matmul_scaling.py 2048 "${REPEAT:-1}"
compare "ResNet-18 training step" MODEL=resnet18 BATCH=64
compare "masked-language-model training step" MODEL=transformer BATCH=32
compare "ConvNet-4 feature extraction" MODEL=convnet4 BATCH=128 INFERENCE=1
compare "ResNet-18 feature extraction" MODEL=resnet18 BATCH=64 INFERENCE=1
for model in resnet18 resnet50; do
    compare "$model (ImageNet) training step, 224 pixels" MODEL=$model BATCH=32 SIZE=224 \
        STEPS="${STEPS_224:-5}" WARMUP=2
    compare "$model (ImageNet) feature extraction, 224 pixels" MODEL=$model BATCH=32 SIZE=224 \
        STEPS="${STEPS_224:-5}" WARMUP=2 INFERENCE=1
done

echo
echo "== data pipeline: rotation views against the ConvNet-4 step"
if [[ ! -d "$DATA" ]]; then
    echo "skipped: no data set at $DATA"
    exit 0
fi
for t in 1 2; do
    "$PRETEXT" --threads "$t" bench augment --data "$DATA" --task rotation --images "$IMAGES" |
        tail -n 1 >> "$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
runs = {}
for r in rows:
    if r["impl"] == "pretext" and r.get("model") == "convnet4":
        runs.setdefault(r["threads"], []).append(r["samples_per_s"])
step = {t: sorted(v)[len(v) // 2] for t, v in runs.items()}
for r in rows:
    if r.get("task") == "rotation":
        views = r["images_per_s"] * r["views"] / r["images"]
        t = r["threads"]
        ratio = views / step[t] if t in step else float("nan")
        print(f"threads {t}: pipeline {views:,.0f} views/s, ConvNet-4 step {step.get(t, float('nan')):.1f} views/s, ratio {ratio:,.0f}x")
PY
echo
echo "== data pipeline: SimCLR two-view augmentation against torchvision"
REPEAT=1 PYTHON="$TORCH_PYTHON" bash bench/augment-compare.sh "$DATA"
