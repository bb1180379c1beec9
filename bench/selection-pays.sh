#!/usr/bin/env bash
# Does choosing what to label pay? Labels SIZES images of CIFAR-10 chosen by `select` (coreset,
# diverse) and the same number drawn at random without stratification (3 seeds), transfers a
# pretrained encoder to each with `transfer --labels-file` / `--random N --unstratified`, and
# prints probe and fine-tune accuracy per choice.
#   RUN=runs/cifar10-simclr DATA=../shared/data/cifar10-jpeg bash bench/selection-pays.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/cifar10-simclr}
DATA=${DATA:-../shared/data/cifar10-jpeg}
OUT=${OUT:-runs/selection-pays}
SIZES=${SIZES:-"100 500"}
SEEDS=${SEEDS:-3}
BIN=${BIN:-target/release/pretext}
mkdir -p "$OUT"
accuracy() { # results.json, mode -> mean ± std over seeds
  python3 -c 'import json,sys
r=next(m for m in json.load(open(sys.argv[1]))["results"] if m["mode"]==sys.argv[2])
print("%.3f ± %.3f" % (r["mean"], r["std"]))' "$1" "$2"
}
echo "| images | choice | probe | fine-tune | select s |"
echo "| --- | --- | --- | --- | --- |"
for n in $SIZES; do
  for strategy in coreset diverse; do
    csv="$OUT/$strategy-$n.csv"
    start=$(date +%s.%N)
    [ -f "$csv" ] || "$BIN" select --quiet --run "$RUN" --data "$DATA" --strategy "$strategy" --n "$n" --out "$csv" >/dev/null
    secs=$(python3 -c "import time;print(f'{time.time()-$start:.0f}')")
    [ -f "$OUT/$strategy-$n/results.json" ] || "$BIN" transfer --quiet --run "$RUN" --data "$DATA" \
      --mode probe,finetune --seeds "$SEEDS" --labels-file "$csv" --out "$OUT/$strategy-$n" >/dev/null
    echo "| $n | $strategy | $(accuracy "$OUT/$strategy-$n/results.json" probe) | $(accuracy "$OUT/$strategy-$n/results.json" finetune) | $secs |"
  done
  [ -f "$OUT/random-$n/results.json" ] || "$BIN" transfer --quiet --run "$RUN" --data "$DATA" \
    --mode probe,finetune --seeds "$SEEDS" --random "$n" --unstratified --out "$OUT/random-$n" >/dev/null
  echo "| $n | random, unstratified | $(accuracy "$OUT/random-$n/results.json" probe) | $(accuracy "$OUT/random-$n/results.json" finetune) | |"
done
