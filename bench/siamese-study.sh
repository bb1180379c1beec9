#!/usr/bin/env bash
# Issue-6 study: pretrain SimCLR and BYOL on one data set with a wall-clock budget (the data
# config's ConvNet-4 of width 16), then transfer each at 10 and 100 labels per class (probe,
# k-NN, fine-tune, 3 seeds; the first also scratch and random). Run from the repo root:
#   bash bench/siamese-study.sh configs/fashion-mnist.toml OUT_DIR MINUTES
# then: python3 bench/compare_table.py OUT_DIR/simclr OUT_DIR/byol runs/fashion-mnist
# Env: PRETEXT (target/release/pretext), THREADS (2), TASKS ("simclr byol"), BATCH (256),
# LR_simclr (0.3), LR_byol (0.1), LR_simsiam (0.1), FIRST_MODES (the first task's transfer modes;
# scratch and random are the same for every task).
set -euo pipefail
CONFIG="${1:?usage: bench/siamese-study.sh CONFIG.toml OUT_DIR MINUTES}"
OUT="${2:?usage: bench/siamese-study.sh CONFIG.toml OUT_DIR MINUTES}"
MINUTES="${3:?usage: bench/siamese-study.sh CONFIG.toml OUT_DIR MINUTES}"
PRETEXT="${PRETEXT:-target/release/pretext}"
THREADS="${THREADS:-2}"
LR_simclr="${LR_simclr:-0.3}" LR_byol="${LR_byol:-0.1}" LR_simsiam="${LR_simsiam:-0.1}"
mkdir -p "$OUT"
modes="${FIRST_MODES:-scratch,random,probe,knn,finetune}"
for task in ${TASKS:-simclr byol}; do
  run="$OUT/$task"
  lr_var="LR_$task"
  t=$(date +%s)
  "$PRETEXT" --quiet --threads "$THREADS" pretrain --config "$CONFIG" --task "$task" \
    --batch-size "${BATCH:-256}" --lr "${!lr_var}" --epochs 1000 --max-steps 0 \
    --max-minutes "$MINUTES" --out "$run"
  echo "pretraining $task took $(( $(date +%s) - t )) s"
  for n in 10 100; do
    epochs=40; [ "$n" = 100 ] && epochs=15
    t=$(date +%s)
    "$PRETEXT" --quiet --threads "$THREADS" transfer --run "$run" --mode "$modes" \
      --labels-per-class "$n" --seeds 3 --epochs "$epochs" --out "$run/transfer-$n"
    echo "transfer of $run at $n labels per class took $(( $(date +%s) - t )) s"
  done
  modes=probe,knn,finetune
done
