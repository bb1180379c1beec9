#!/usr/bin/env bash
# k-means, pretext vs scikit-learn, on the same float32 N x D features, same threads, same
# k-means++ seeding method, iteration cap and tolerance; runs interleaved, REPEAT times each.
#   bash bench/kmeans-compare.sh FEATURES.npy
# Env: KS ("100 500") THREADS ("1 2") MAX_ITER (100) REPEAT (2) TOL (0: both run MAX_ITER
#      iterations unless the labels stop changing, so that the times compare like for like)
#      SK_PYTHON (/work/venv-torch/bin/python, needs scikit-learn) PRETEXT (target/release/pretext)
set -euo pipefail
features=${1:?usage: bench/kmeans-compare.sh FEATURES.npy}
KS="${KS:-100 500}"
THREADS="${THREADS:-1 2}"
MAX_ITER="${MAX_ITER:-100}"
REPEAT="${REPEAT:-2}"
TOL="${TOL:-0}"
SK_PYTHON="${SK_PYTHON:-/work/venv-torch/bin/python}"
PRETEXT="${PRETEXT:-target/release/pretext}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

printf '%-4s %-7s %-4s %10s %10s %8s %14s %14s %9s\n' k threads rep pretext_s sklearn_s speedup pretext_inertia sklearn_inertia inertia_Δ
for k in $KS; do
  for t in $THREADS; do
    for rep in $(seq "$REPEAT"); do
      p=$("$PRETEXT" kmeans "$features" --k "$k" --max-iter "$MAX_ITER" --tol "$TOL" --threads "$t" --seed "$rep" --out "$out/labels.npy")
      s=$("$SK_PYTHON" bench/kmeans_sklearn.py "$features" --k "$k" --max-iter "$MAX_ITER" --tol "$TOL" --threads "$t" --seed "$rep")
      python3 - "$k" "$t" "$rep" "$p" "$s" <<'PY'
import json, sys
k, t, rep, p, s = sys.argv[1:]
p, s = json.loads(p), json.loads(s)
print(f"{k:<4} {t:<7} {rep:<4} {p['seconds']:10.2f} {s['seconds']:10.2f} {s['seconds']/p['seconds']:7.2f}x "
      f"{p['inertia']:14.6g} {s['inertia']:14.6g} {100*(p['inertia']/s['inertia']-1):+8.2f}%"
      f"   (iterations {p['iterations']} vs {s['iterations']})")
PY
    done
  done
done
