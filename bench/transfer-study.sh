#!/usr/bin/env bash
# Pretrain with a config, then transfer at 10 and 100 labels per class (3 seeds, every mode) and
# a probe with all labels; prints each results table. Run from the repository root:
#   bash bench/transfer-study.sh configs/fashion-mnist.toml
# Env: PRETEXT (target/release/pretext), THREADS (2), FT_EPOCHS_10 (40), FT_EPOCHS_100 (15).
set -euo pipefail
CONFIG="${1:?usage: bench/transfer-study.sh CONFIG.toml}"
PRETEXT="${PRETEXT:-target/release/pretext}"
THREADS="${THREADS:-2}"
RUN=$(python3 -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["run"]["out"])' "$CONFIG")

start=$(date +%s)
"$PRETEXT" --threads "$THREADS" pretrain --config "$CONFIG"
echo "pretraining took $(( $(date +%s) - start )) s"
python3 -c 'import json,sys; print("pretext (rotation) test accuracy:", json.load(open(sys.argv[1]))["pretext_test_acc"])' "$RUN/results.json"

t=$(date +%s)
"$PRETEXT" --threads "$THREADS" transfer --run "$RUN" --labels-per-class 10 --seeds 3 --epochs "${FT_EPOCHS_10:-40}" --out "$RUN/transfer-10"
echo "transfer at 10 labels per class took $(( $(date +%s) - t )) s"
t=$(date +%s)
"$PRETEXT" --threads "$THREADS" transfer --run "$RUN" --labels-per-class 100 --seeds 3 --epochs "${FT_EPOCHS_100:-15}" --out "$RUN/transfer-100"
echo "transfer at 100 labels per class took $(( $(date +%s) - t )) s"
t=$(date +%s)
"$PRETEXT" --threads "$THREADS" transfer --run "$RUN" --labels-per-class 0 --seeds 1 --mode probe,random --out "$RUN/transfer-all"
echo "probe with all labels took $(( $(date +%s) - t )) s"
echo "total $(( $(date +%s) - start )) s"
