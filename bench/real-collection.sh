#!/usr/bin/env bash
# Real collections: pretext on folders of N JPEGs at 224 pixels, beside PyTorch on the same folder.
#
#   bash bench/real-collection.sh [N ...]        (default: 20000 200000)
#
# For each N it builds (once) a folder of upscaled, cropped and flipped CIFAR-10 images outside the
# repository (SCALE_DIR, default /work/scale; bench/make_folder.py), then measures:
#   info      `pretext info` with a cold index and again from the cache: seconds and peak RSS
#   pretrain  SimCLR on the ImageNet-stem ResNet-18 at 224, batch 64, STEPS steps, 2 threads:
#             pretext's peak RSS and images/s, and PyTorch's (torchvision resnet18 fed by a
#             DataLoader with 2 workers) peak PSS summed over its processes and images/s
# and once, on the first N:
#   pipeline  decode + SimCLR's two views at 224 alone: `pretext bench augment` against a
#             torchvision DataLoader (PIL), 1 and 2 threads / workers
#   decode    `pretext bench decode` on 40 photos of 2,000-4,000 pixels: full-size decoding
#             against JPEG DCT scaling
# The folders are deleted at the end unless KEEP=1. Needs TORCH_PYTHON (default
# /work/venv-torch/bin/python) with torch, torchvision and Pillow; see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${TORCH_PYTHON:-/work/venv-torch/bin/python}
SCALE_DIR=${SCALE_DIR:-/work/scale}
STEPS=${STEPS:-3}
BIN=target/release/pretext
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(20000 200000)
export PRETEXT_CACHE="$SCALE_DIR/index-cache"
mkdir -p "$SCALE_DIR"
cargo build --release --quiet

peak() { # peak RSS in MB and seconds of a command: "MB s"
  /usr/bin/time -f "%M %e" -o "$SCALE_DIR/time.txt" "$@" >"$SCALE_DIR/out.txt" 2>"$SCALE_DIR/err.txt" \
    || { cat "$SCALE_DIR/err.txt" >&2; return 1; }
  awk '{printf "%.0f %.2f\n", $1 / 1024, $2}' "$SCALE_DIR/time.txt"
}

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(grep -o -m1 'avx512f' /proc/cpuinfo || echo 'AVX2 only')"
printf "| N | info cold (s, MB) | info cached (s, MB) | pretext pretrain (img/s, peak MB) | PyTorch (img/s, peak PSS MB) |\n|---|---|---|---|---|\n"
for n in "${SIZES[@]}"; do
  dir="$SCALE_DIR/n$n"
  [ -d "$dir" ] || "$PY" bench/make_folder.py ../shared/data/cifar10-jpeg "$dir" "$n" --large 40 >&2
  rm -rf "$PRETEXT_CACHE"
  read -r cold_mb cold_s < <(peak $BIN info "$dir")
  read -r warm_mb warm_s < <(peak $BIN info "$dir")
  run="$SCALE_DIR/run-$n"
  rm -rf "$run"
  read -r pre_mb _ < <(peak $BIN pretrain --task simclr --model resnet18 --stem imagenet \
    --image-size 224 --batch-size 64 --max-steps "$((STEPS + 1))" --data "$dir" --out "$run" \
    --threads 2 --quiet)
  pre_ips=$("$PY" -c "import json; r = json.load(open('$run/results.json')); print(f\"{r['views_per_s'] / 2:.1f}\")")
  torch=$("$PY" bench/torch_collection.py step --data "$dir" --threads 2 --workers 2 --steps "$STEPS")
  t_ips=$(echo "$torch" | "$PY" -c "import json, sys; print(f\"{json.load(sys.stdin)['images_per_s']:.1f}\")")
  t_mb=$(echo "$torch" | "$PY" -c "import json, sys; print(f\"{json.load(sys.stdin)['peak_pss_mb']:.0f}\")")
  echo "| $n | $cold_s, $cold_mb | $warm_s, $warm_mb | $pre_ips, $pre_mb | $t_ips, $t_mb |"
done

first="$SCALE_DIR/n${SIZES[0]}"
printf "\n| threads / workers | pretext pipeline (img/s) | torchvision DataLoader (img/s) | ratio |\n|---|---|---|---|\n"
for t in 1 2; do
  p=$($BIN bench augment --data "$first" --task simclr --images 2048 --batch 64 --threads "$t" 2>/dev/null \
    | "$PY" -c "import json, sys; print(json.load(sys.stdin)['images_per_s'])")
  q=$("$PY" bench/torch_collection.py pipeline --data "$first" --workers "$t" --images 2048 \
    | "$PY" -c "import json, sys; print(json.load(sys.stdin)['images_per_s'])")
  "$PY" -c "print(f'| $t | {$p:.0f} | {$q:.0f} | {$p / $q:.2f}x |')"
done

echo
$BIN bench decode --data "$first-large" --images 40 --threads 1
[ "${KEEP:-0}" = 1 ] || for n in "${SIZES[@]}"; do rm -rf "$SCALE_DIR/n$n" "$SCALE_DIR/n$n-large" "$SCALE_DIR/run-$n"; done
