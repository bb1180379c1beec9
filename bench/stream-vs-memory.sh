#!/usr/bin/env bash
# Streaming does not change results: SimCLR on CIFAR-10 (JPEG, 32 pixels) for the same minutes
# decoded in memory and streamed from disk (`data.stream = "always"`), then the same transfer of
# both; prints the training speed and the transfer table of each.
#
#   bash bench/stream-vs-memory.sh [MINUTES] [OUT]     (default 6 minutes, /work/stream-vs-memory)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-6}
OUT=${2:-/work/stream-vs-memory}
BIN=target/release/pretext
export PRETEXT_CACHE="$OUT/index-cache"
cargo build --release --quiet
mkdir -p "$OUT"
for mode in never always; do
  run="$OUT/simclr-$mode"
  rm -rf "$run"
  $BIN pretrain --config configs/cifar10-simclr.toml --stream "$mode" --max-minutes "$MINUTES" \
    --out "$run" --threads 2 --quiet
done
for mode in never always; do
  echo "== data.stream = $mode"
  python3 -c "import json; r = json.load(open('$OUT/simclr-$mode/results.json')); print(f\"{r['steps']} steps, {r['views_per_s']:.0f} views/s\")"
  $BIN transfer --run "$OUT/simclr-$mode" --config configs/cifar10-simclr.toml \
    --mode knn,probe --labels-per-class 100 --seeds 3 --out "$OUT/transfer-$mode" --threads 2 --quiet
done
