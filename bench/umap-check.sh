#!/usr/bin/env bash
# UMAP, pretext vs umap-learn, on the same float32 N x D features (both L2-normalised), same
# threads; prints a markdown table of times, peak memory and trustworthiness.
#   bash bench/umap-check.sh FEATURES.npy
# Env: THREADS (2) SAMPLE (5000: rows the trustworthiness is measured on)
#      PY (/work/venv-torch/bin/python, needs umap-learn and scikit-learn)
#      PRETEXT (target/release/pretext) OUT (a temporary folder: where both maps go)
set -euo pipefail
features=${1:?usage: bench/umap-check.sh FEATURES.npy}
THREADS="${THREADS:-2}"
SAMPLE="${SAMPLE:-5000}"
PY="${PY:-/work/venv-torch/bin/python}"
PRETEXT="${PRETEXT:-target/release/pretext}"
if [ -z "${OUT:-}" ]; then
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT
fi
"$PRETEXT" bench umap --features "$features" --normalise --out "$OUT/pretext.npy" \
  --trust-sample "$SAMPLE" --threads "$THREADS" | tee "$OUT/pretext.json"
NUMBA_NUM_THREADS="$THREADS" "$PY" bench/umap_check.py "$features" --threads "$THREADS" \
  --pretext-coords "$OUT/pretext.npy" --pretext-json "$OUT/pretext.json" \
  --out "$OUT/umap_learn.npy" --sample "$SAMPLE"
