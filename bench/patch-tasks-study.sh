#!/usr/bin/env bash
# Issue-4 study: pretrain relpos, jigsaw and jigsaw++ on one data set (ConvNet-4 of width 16, the
# data config's recipe), then transfer each at 10 and 100 labels per class (probe, k-NN,
# fine-tune, 3 seeds). The first task's transfer also runs scratch and random, and a rotation
# run (ROTATION_RUN, e.g. runs/fashion-mnist from bench/transfer-study.sh) is transferred in the
# same session so that every row of the table comes from the same code. Run from the repo root:
#   bash bench/patch-tasks-study.sh configs/fashion-mnist.toml OUT_DIR
# Env: PRETEXT (target/release/pretext), THREADS (2), RELPOS_STEPS (5000, batch 128),
# JIGSAW_STEPS (1400, batch 64), ROTATION_RUN (unset: no rotation row), TASKS.
set -euo pipefail
CONFIG="${1:?usage: bench/patch-tasks-study.sh CONFIG.toml OUT_DIR}"
OUT="${2:?usage: bench/patch-tasks-study.sh CONFIG.toml OUT_DIR}"
PRETEXT="${PRETEXT:-target/release/pretext}"
THREADS="${THREADS:-2}"
TASKS="${TASKS:-relpos jigsaw jigsaw++}"
mkdir -p "$OUT"

transfer() { # RUN MODES
  for n in 10 100; do
    epochs=40; [ "$n" = 100 ] && epochs=15
    t=$(date +%s)
    "$PRETEXT" --quiet --threads "$THREADS" transfer --run "$1" --mode "$2" \
      --labels-per-class "$n" --seeds 3 --epochs "$epochs" --out "$1/transfer-$n"
    echo "transfer of $1 at $n labels per class took $(( $(date +%s) - t )) s"
  done
}

first=1
for task in $TASKS; do
  run="$OUT/$task"
  if [ "$task" = relpos ]; then steps="${RELPOS_STEPS:-5000}"; batch=128; epochs=12
  else steps="${JIGSAW_STEPS:-1400}"; batch=64; epochs=3; fi
  t=$(date +%s)
  "$PRETEXT" --quiet --threads "$THREADS" pretrain --config "$CONFIG" --task "$task" \
    --max-steps "$steps" --batch-size "$batch" --epochs "$epochs" --out "$run"
  echo "pretraining $task took $(( $(date +%s) - t )) s"
  modes=probe,knn,finetune
  [ "$first" = 1 ] && modes=scratch,random,probe,knn,finetune
  first=0
  transfer "$run" "$modes"
done
if [ -n "${ROTATION_RUN:-}" ]; then transfer "$ROTATION_RUN" probe,knn,finetune; fi
