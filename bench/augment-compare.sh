#!/usr/bin/env bash
# The two-view augmentation pipeline (SimCLR/BYOL) of pretext against torchvision's, on the same
# decoded images and threads, interleaved, REPEAT times at 1 and 2 threads. Run from the repo
# root after `cargo build --release`, with torch and torchvision in $PYTHON's environment:
#   bash bench/augment-compare.sh ../shared/data/cifar10-jpeg
# Env: PYTHON (python3), PRETEXT (target/release/pretext), N (20000), REPEAT (2).
set -euo pipefail
DATA="${1:-../shared/data/cifar10-jpeg}"
PYTHON="${PYTHON:-python3}"
PRETEXT="${PRETEXT:-target/release/pretext}"
N="${N:-20000}"
for rep in $(seq "${REPEAT:-2}"); do
  for t in 1 2; do
    ours=$("$PRETEXT" --threads "$t" bench augment --data "$DATA" --task simclr --images "$N")
    peer=$("$PYTHON" bench/augment_torchvision.py "$DATA" "$t" "$N")
    python3 - "$ours" "$peer" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"threads {a['threads']}: pretext {a['images_per_s']:.0f} images/s, torchvision {b['images_per_s']:.0f} images/s, ratio {a['images_per_s'] / b['images_per_s']:.2f}x")
PY
  done
done
