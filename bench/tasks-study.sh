#!/usr/bin/env bash
# Pretrain pretext tasks with their configs (configs/DATA-TASK.toml: ConvNet-4 of width 16; the
# patch tasks by steps, simclr and byol with the DATA rotation run's wall-clock budget), then
# transfer each at 10 and 100 labels per class (probe, k-NN, fine-tune; the first task's
# transfer also runs scratch and random, which are the same for every task). From the repo root:
#   bash bench/tasks-study.sh fashion-mnist OUT_DIR relpos jigsaw jigsaw++    (issue 4)
#   bash bench/tasks-study.sh cifar10 OUT_DIR simclr byol                     (issue 6)
# then: python3 bench/compare_table.py OUT_DIR/TASK ... runs/DATA
# (runs/DATA: the rotation run of bench/transfer-study.sh configs/DATA.toml).
# Env: PRETEXT (target/release/pretext), THREADS (2), FIRST_MODES (the first task's modes).
set -euo pipefail
DATA="${1:?usage: bench/tasks-study.sh DATA OUT_DIR TASK...}"
OUT="${2:?usage: bench/tasks-study.sh DATA OUT_DIR TASK...}"
shift 2
[ "$#" -gt 0 ] || { echo "usage: bench/tasks-study.sh DATA OUT_DIR TASK..." >&2; exit 2; }
PRETEXT="${PRETEXT:-target/release/pretext}"
export PRETEXT
mkdir -p "$OUT"
modes="${FIRST_MODES:-scratch,random,probe,knn,finetune}"
for task in "$@"; do
  t=$(date +%s)
  "$PRETEXT" --quiet --threads "${THREADS:-2}" pretrain --config "configs/$DATA-$task.toml" --out "$OUT/$task"
  echo "pretraining $task took $(( $(date +%s) - t )) s"
  bash bench/transfer-10-100.sh "$OUT/$task" "$modes"
  modes=probe,knn,finetune
done
