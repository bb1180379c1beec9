#!/usr/bin/env bash
# Issue 7's measurement: MLM pretraining (CONFIG: configs/wordnet-mlm.toml, the WordNet
# table's training glosses, 30 minutes; configs/gcide-mlm.toml for GCIDE), then WordNet
# supersense classification at 10 and 50 labels per class (3 seeds; probe, k-NN, fine-tune
# against scratch and random), then the held-out curve and the transfer table.
#   bash bench/text-study.sh OUT_DIR
# Env: PRETEXT (target/release/pretext), THREADS (2), CONFIG.
set -euo pipefail
OUT="${1:?usage: bench/text-study.sh OUT_DIR}"
PRETEXT="${PRETEXT:-target/release/pretext}"
TABLE=../shared/data/wordnet/wordnet-supersense.tsv.gz
t=$(date +%s)
"$PRETEXT" --quiet --threads "${THREADS:-2}" pretrain --config "${CONFIG:-configs/wordnet-mlm.toml}" --out "$OUT"
echo "pretraining took $(( $(date +%s) - t )) s"
for n in 10 50; do
  t=$(date +%s)
  "$PRETEXT" --quiet --threads "${THREADS:-2}" transfer --run "$OUT" --data "$TABLE" \
    --labels-per-class "$n" --out "$OUT/transfer-$n"
  echo "transfer at $n labels per class took $(( $(date +%s) - t )) s"
done
python3 - "$OUT" <<'PY'
import json, sys, pathlib
run = pathlib.Path(sys.argv[1])
print("held-out masked-token accuracy and perplexity (2 % of the documents held out)")
print("%6s %7s %9s %10s %11s" % ("epoch", "step", "minutes", "accuracy", "perplexity"))
minutes = 0.0
for line in open(run / "metrics.jsonl"):
    e = json.loads(line)
    minutes += e["epoch_seconds"] / 60
    print("%6d %7d %9.1f %10.3f %11.1f" % (e["epoch"], e["step"], minutes, e["heldout_acc"], e["heldout_perplexity"]))
for n in (10, 50):
    r = json.load(open(run / f"transfer-{n}" / "results.json"))
    print(f"\nsupersense, {n} labels per class, {r['seeds']} seeds, {r['test_images']} test glosses")
    for m in r["results"]:
        print("  %-9s %.3f ± %.3f" % (m["mode"], m["mean"], m["std"]))
PY
