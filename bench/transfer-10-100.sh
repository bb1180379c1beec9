#!/usr/bin/env bash
# Transfer one pretraining run at 10 and 100 labels per class (3 seeds; fine-tuning for 40 and
# 15 epochs), into RUN/transfer-10 and RUN/transfer-100:
#   bash bench/transfer-10-100.sh RUN MODES        e.g. MODES=probe,knn,finetune
# Env: PRETEXT (target/release/pretext), THREADS (2).
set -euo pipefail
RUN="${1:?usage: bench/transfer-10-100.sh RUN MODES}"
MODES="${2:?usage: bench/transfer-10-100.sh RUN MODES}"
PRETEXT="${PRETEXT:-target/release/pretext}"
for n in 10 100; do
  epochs=40; [ "$n" = 100 ] && epochs=15
  t=$(date +%s)
  "$PRETEXT" --quiet --threads "${THREADS:-2}" transfer --run "$RUN" --mode "$MODES" \
    --labels-per-class "$n" --seeds 3 --epochs "$epochs" --out "$RUN/transfer-$n"
  echo "transfer of $RUN at $n labels per class took $(( $(date +%s) - t )) s"
done
