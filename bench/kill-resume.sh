#!/usr/bin/env bash
# Kill a real pretraining run with SIGKILL at several random moments, resume it each time, and
# check that it ends with the same metrics and weights as the same run left alone.
# Run from the repository root: bash bench/kill-resume.sh [KILLS]   (default 5)
# STREAM=1: the run streams ../shared/data/cifar10-jpeg/test from disk instead (decoded on demand,
# framed at 24 pixels with random resized crops of 50-100 % of each file, SimCLR), so the
# streaming source's order, crops and decoding are what must survive the kills.
set -euo pipefail
PRETEXT="${PRETEXT:-target/release/pretext}"
KILLS="${1:-5}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "${STREAM:-0}" = 1 ]; then
    export PRETEXT_CACHE="$work/index-cache"
    cat > "$work/cfg.toml" <<TOML
[data]
path = "$(cd "$(dirname "$0")/../.." && pwd)/shared/data/cifar10-jpeg/test"
stream = "always"
image_size = 24
crop_min_scale = 0.5
[model]
width = 8
[task]
name = "simclr"
[train]
epochs = 2
batch_size = 64
[run]
checkpoint_minutes = 0.01
TOML
else
    cat > "$work/cfg.toml" <<TOML
[data]
synthetic_train = 2000
synthetic_test = 200
synthetic_size = 16
[model]
width = 8
[train]
epochs = 4
batch_size = 32
[run]
checkpoint_minutes = 0.01
TOML
fi
args=(--quiet --threads 2 pretrain --config "$work/cfg.toml")
t0=$(date +%s.%N)
"$PRETEXT" "${args[@]}" --out "$work/reference" > /dev/null
length=$(python3 -c "print($(date +%s.%N) - $t0)")
echo "uninterrupted run: ${length} s"

"$PRETEXT" "${args[@]}" --out "$work/killed" > /dev/null &
pid=$!
for k in $(seq "$KILLS"); do
    delay=$(python3 -c "import random; print(round(random.uniform(0.3, $length / $KILLS), 2))")
    sleep "$delay"
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        echo "kill $k: SIGKILL after ${delay} s"
    else
        echo "kill $k: the run had already finished"
        break
    fi
    "$PRETEXT" --quiet --threads 2 resume "$work/killed" > /dev/null &
    pid=$!
done
wait "$pid"
python3 - "$work/reference" "$work/killed" <<'PY'
import json, struct, sys
def metrics(run):
    rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
    for r in rows:
        r.pop("epoch_seconds"); r.pop("views_per_s"); r.pop("warmup_seconds", None)
    return rows
def tensors(run):
    b = open(f"{run}/encoder.safetensors", "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = sys.argv[1], sys.argv[2]
same_metrics = metrics(a) == metrics(b)
same_weights = tensors(a) == tensors(b)
print("final metrics identical:", same_metrics, "| final weights identical:", same_weights)
print("last epoch:", metrics(b)[-1])
sys.exit(0 if same_metrics and same_weights else 1)
PY
