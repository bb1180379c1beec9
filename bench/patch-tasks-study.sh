#!/usr/bin/env bash
# Issue-4 study: pretrain relpos, jigsaw and jigsaw++ with their configs
# (configs/DATA-TASK.toml: ConvNet-4 of width 16, 10 to 13 minutes each on 2 cores), then
# transfer each at 10 and 100 labels per class (probe, k-NN, fine-tune; the first task's
# transfer also runs scratch and random). Run from the repository root:
#   bash bench/patch-tasks-study.sh fashion-mnist OUT_DIR      (or cifar10)
# then: python3 bench/compare_table.py OUT_DIR/relpos OUT_DIR/jigsaw OUT_DIR/jigsaw++ runs/DATA
# (runs/DATA: the rotation run of bench/transfer-study.sh configs/DATA.toml).
# Env: PRETEXT (target/release/pretext), THREADS (2), TASKS ("relpos jigsaw jigsaw++").
set -euo pipefail
DATA="${1:?usage: bench/patch-tasks-study.sh DATA OUT_DIR}"
OUT="${2:?usage: bench/patch-tasks-study.sh DATA OUT_DIR}"
PRETEXT="${PRETEXT:-target/release/pretext}"
export PRETEXT
mkdir -p "$OUT"
modes=scratch,random,probe,knn,finetune
for task in ${TASKS:-relpos jigsaw jigsaw++}; do
  t=$(date +%s)
  "$PRETEXT" --quiet --threads "${THREADS:-2}" pretrain --config "configs/$DATA-$task.toml" --out "$OUT/$task"
  echo "pretraining $task took $(( $(date +%s) - t )) s"
  bash bench/transfer-10-100.sh "$OUT/$task" "$modes"
  modes=probe,knn,finetune
done
