#!/usr/bin/env bash
# SimCLR on CIFAR-10 started from a torchvision ResNet-18 that PyTorch trained (supervised, on
# Fashion-MNIST: bench/torch_supervised_resnet18.py), against the same SimCLR run from random
# weights, at the same number of steps; both transferred at 10 labels per class. Also transfers
# the PyTorch checkpoint itself (`transfer --init-from`), without any SimCLR.
#   bash bench/init-from-simclr.sh [WORK_DIR]   (needs /work/venv-torch with torch and torchvision)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/init-from-simclr}
PRETEXT=${PRETEXT:-target/release/pretext}
PYTHON=${PYTHON:-/work/venv-torch/bin/python}
CONFIG=configs/cifar10-simclr-resnet18-init.toml
mkdir -p "$WORK"
CKPT="$WORK/fmnist_resnet18.pth"
[ -f "$CKPT" ] || "$PYTHON" bench/torch_supervised_resnet18.py \
  --data ../shared/data/fashion-mnist --minutes 8 --out "$CKPT"
for start in init random; do
  flags=()
  [ "$start" = init ] && flags=(--init-from "$CKPT")
  /usr/bin/time -v "$PRETEXT" pretrain --config "$CONFIG" "${flags[@]}" --out "$WORK/simclr-$start" \
    2> "$WORK/simclr-$start.time"
  "$PRETEXT" transfer --run "$WORK/simclr-$start" --out "$WORK/simclr-$start/transfer" \
    --mode probe,knn,finetune,scratch
done
"$PRETEXT" transfer --config "$CONFIG" --init-from "$CKPT" --model resnet18 --width 64 \
  --stem imagenet --out "$WORK/torch-only" --mode probe,knn,finetune
grep -h "Elapsed\|Maximum resident" "$WORK"/simclr-*.time
