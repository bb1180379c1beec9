#!/usr/bin/env bash
# Check `pretext export` against PyTorch, torchvision, timm and onnxruntime on real images.
#
#   bash bench/interop-check.sh [PRETEXT] [WORK]    (defaults: target/release/pretext, runs/interop)
#
# Builds nothing. Makes five short pretraining runs at 32 pixels (rotation; the ConvNet-4 on
# ../shared/data/cifar10-jpeg as in the README, the larger encoders on a flat folder of 512
# CIFAR-10 training JPEGs so that the end-of-run scoring stays cheap on a small CPU), writes
# WORK/images: 512 CIFAR-10 test images as PNG (the JPEGs' decoded pixels, lossless, so that
# pretext and PIL read the same pixels) in pretext's folder layout (images/test/<class>/ beside
# a small images/train/<class>/, which the layout requires), and runs bench/interop_check.py on
# each run. Prints every run's table and collects them in WORK/interop.md; exit status 1 if any
# check failed. Environment: PY (python with torch, torchvision, timm, onnxruntime, onnx,
# safetensors, Pillow; default /work/venv-torch/bin/python), CIFAR (the cifar10-jpeg folder),
# N (images compared, 512), STEPS (steps of the larger runs, 3), THREADS (2), TRACT (the
# tract_features example: `cargo build --release --example tract_features`, then
# target/release/examples/tract_features; without it tract is left out).
set -euo pipefail
# Arguments are relative to the caller's directory; the defaults to the repository's.
PRETEXT=$(realpath -m "${1:-$(dirname "$0")/../target/release/pretext}")
WORK=$(realpath -m "${2:-$(dirname "$0")/../runs/interop}")
cd "$(dirname "$0")/.."
PY=${PY:-/work/venv-torch/bin/python}
CIFAR=${CIFAR:-../shared/data/cifar10-jpeg}
N=${N:-512}
STEPS=${STEPS:-3}
THREADS=${THREADS:-2}

[ -x "$PRETEXT" ] || { echo "no pretext binary at $PRETEXT (cargo build --release)" >&2; exit 1; }
"$PRETEXT" export --help >/dev/null 2>&1 || { echo "$PRETEXT has no \`export\` command" >&2; exit 1; }
mkdir -p "$WORK/runs" "$WORK/check"

# The images: WORK/images/{train,test}/<class>/*.png, and a flat folder of JPEGs to pretrain on.
"$PY" - "$CIFAR" "$WORK" "$N" <<'PYEOF'
import os, shutil, sys
from pathlib import Path
from PIL import Image

cifar, work, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
classes = sorted(d for d in os.listdir(cifar / "test") if (cifar / "test" / d).is_dir())

def files(split, cls):
    return sorted(f for f in os.listdir(cifar / split / cls) if f.lower().endswith((".jpg", ".jpeg")))

def to_png(src, dst):
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as img:
            img.convert("RGB").save(dst)  # PNG: exactly PIL's decoded pixels

made = 0
for i, cls in enumerate(classes):  # N test images spread over the classes, in class order
    count = n // len(classes) + (i < n % len(classes))
    for f in files("test", cls)[:count]:
        to_png(cifar / "test" / cls / f, work / "images" / "test" / cls / (Path(f).stem + ".png"))
        made += 1
    for f in files("train", cls)[:10]:  # the layout needs a train split with every class
        to_png(cifar / "train" / cls / f, work / "images" / "train" / cls / (Path(f).stem + ".png"))
flat = work / "pretrain-images"
flat.mkdir(parents=True, exist_ok=True)
for cls in classes:
    for f in files("train", cls)[:52]:
        if not (flat / f"{cls}-{f}").exists():
            shutil.copyfile(cifar / "train" / cls / f, flat / f"{cls}-{f}")
print(f"{work / 'images'}: {made} test PNGs, {10 * len(classes)} train PNGs; "
      f"{len(os.listdir(flat))} JPEGs to pretrain on in {flat}", file=sys.stderr)
PYEOF

# No k-NN monitoring (it would embed thousands of images per epoch); the ViT's patch set
# explicitly (4 is also the default at 32 pixels).
printf '[run]\nmonitor_memory = 0\n' > "$WORK/pretrain.toml"
printf '[model]\narch = "vit_tiny"\npatch = 4\n\n[run]\nmonitor_memory = 0\n' > "$WORK/pretrain-vit.toml"

pretrain() { # name, then pretrain flags
    local name=$1; shift
    local run="$WORK/runs/$name"
    if [ -f "$run/encoder.safetensors" ]; then
        echo "== $name: $run already trained" >&2
        return
    fi
    echo "== $name: pretext pretrain $*" >&2
    "$PRETEXT" --quiet --threads "$THREADS" pretrain --task rotation --image-size 32 \
        --out "$run" "$@" >"$WORK/runs/$name.log" 2>&1 \
        || { tail -5 "$WORK/runs/$name.log" >&2; return 1; }
}

pretrain convnet4_w16 --config "$WORK/pretrain.toml" --data "$CIFAR" \
    --model convnet4 --width 16 --max-steps 20
pretrain resnet18_w64_cifar --config "$WORK/pretrain.toml" --data "$WORK/pretrain-images" \
    --model resnet18 --width 64 --stem cifar --max-steps "$STEPS" --batch-size 32
pretrain resnet18_w64_imagenet --config "$WORK/pretrain.toml" --data "$WORK/pretrain-images" \
    --model resnet18 --width 64 --stem imagenet --max-steps "$STEPS" --batch-size 32
pretrain resnet50_w64_imagenet --config "$WORK/pretrain.toml" --data "$WORK/pretrain-images" \
    --model resnet50 --width 64 --stem imagenet --max-steps "$STEPS" --batch-size 32
pretrain vit_tiny_p4 --config "$WORK/pretrain-vit.toml" --data "$WORK/pretrain-images" \
    --model vit_tiny --max-steps "$STEPS" --batch-size 32

status=0
: > "$WORK/interop.md"
for name in convnet4_w16 resnet18_w64_cifar resnet18_w64_imagenet resnet50_w64_imagenet vit_tiny_p4; do
    echo "== $name: interop_check.py" >&2
    "$PY" bench/interop_check.py --pretext "$PRETEXT" --run "$WORK/runs/$name" \
        --images "$WORK/images" --n "$N" --work "$WORK/check/$name" --threads "$THREADS" \
        ${TRACT:+--tract "$TRACT"} \
        | tee -a "$WORK/interop.md" || status=1
done
echo "tables in $WORK/interop.md, details in $WORK/check/*/interop.json" >&2
exit $status
