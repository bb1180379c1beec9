#!/usr/bin/env bash
# Training throughput over MPI ranks against one process with the same threads:
# 2 ranks x 1 thread against 1 process x 2 threads (same global batch, steps and data),
# ConvNet-4 rotation and SimCLR on CIFAR-10 in memory, interleaved rounds. Prints views/s,
# the ratio, the share of rank 0's training time spent in collectives (the all-reduce itself
# and waiting for the other rank), and each process's peak resident memory.
#
#   cargo build --release --features mpi
#   bash bench/distributed.sh [ROUNDS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
steps=${2:-60}
bin=${PRETEXT:-target/release/pretext}
data=${DATA:-../shared/data/cifar10-jpeg}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi=(mpirun --allow-run-as-root --oversubscribe --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)

cat >"$work/cfg.toml" <<EOF
[data]
path = "$data"
[model]
arch = "convnet4"
width = 32
[train]
batch_size = 256
[run]
monitor_memory = 0
checkpoint_minutes = 0
EOF

grep -m1 "model name" /proc/cpuinfo
grep -q avx512f /proc/cpuinfo && echo "AVX-512: yes" || echo "AVX-512: no (AVX2)"

# run LABEL TASK THREADS LAUNCH...: one run, each process under GNU time; prints one line.
run() {
  local label=$1 task=$2 threads=$3
  shift 3
  local out="$work/${label// /}-$task"
  rm -rf "$out" "$out".rss.*
  "$@" sh -c '/usr/bin/time -f "%M" -o "$0.rss.$$" "$@"' "$out" \
    "$bin" pretrain --config "$work/cfg.toml" --task "$task" --max-steps "$steps" \
    --threads "$threads" --out "$out" --quiet >"$out.json" 2>"$out.err" \
    || { cat "$out.err" >&2; exit 1; }
  python3 - "$out" "$label" "$task" <<'PY'
import glob, json, sys
out, label, task = sys.argv[1:]
result = json.load(open(out + "/results.json"))
last = [json.loads(l) for l in open(out + "/metrics.jsonl")][-1]
share = last.get("collective_seconds", 0.0) / result["seconds"]
rss = [int(open(f).read().split()[-1]) // 1024 for f in sorted(glob.glob(out + ".rss.*"))]
print(f"{label:<14} {task:<9} {result['views_per_s']:8.1f} views/s   in collectives {100 * share:4.1f} %   peak RSS {' + '.join(map(str, rss))} MiB", flush=True)
PY
}

for round in $(seq "$rounds"); do
  echo "round $round ($steps steps, global batch 256, ConvNet-4 width 32, CIFAR-10 in memory)"
  for task in rotation simclr; do
    run "1 process x 2" "$task" 2 env
    run "2 ranks x 1" "$task" 1 "${mpi[@]}" -np 2
  done
done
