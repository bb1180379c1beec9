#!/usr/bin/env bash
# Issue-6 study: pretrain SimCLR and BYOL with their configs (configs/DATA-TASK.toml: ConvNet-4
# of width 16, batch 256, the wall-clock budget of the DATA rotation run), then transfer each
# at 10 and 100 labels per class (probe, k-NN, fine-tune; the first also scratch and random).
# Run from the repository root:
#   bash bench/siamese-study.sh fashion-mnist OUT_DIR      (or cifar10)
# then: python3 bench/compare_table.py OUT_DIR/simclr OUT_DIR/byol runs/DATA
# Env: PRETEXT (target/release/pretext), THREADS (2), TASKS ("simclr byol"), FIRST_MODES (the
# first task's transfer modes; scratch and random are the same for every task).
set -euo pipefail
DATA="${1:?usage: bench/siamese-study.sh DATA OUT_DIR}"
OUT="${2:?usage: bench/siamese-study.sh DATA OUT_DIR}"
PRETEXT="${PRETEXT:-target/release/pretext}"
export PRETEXT
mkdir -p "$OUT"
modes="${FIRST_MODES:-scratch,random,probe,knn,finetune}"
for task in ${TASKS:-simclr byol}; do
  t=$(date +%s)
  "$PRETEXT" --quiet --threads "${THREADS:-2}" pretrain --config "configs/$DATA-$task.toml" --out "$OUT/$task"
  echo "pretraining $task took $(( $(date +%s) - t )) s"
  bash bench/transfer-10-100.sh "$OUT/$task" "$modes"
  modes=probe,knn,finetune
done
