#!/usr/bin/env bash
# Fuzzes each parser for a fixed number of executions and prints the counts.
#   fuzz/run.sh [RUNS_PER_TARGET]   (default 200000; SECONDS_PER_TARGET=N stops each target
#                                    after N seconds instead, whichever comes first)
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz wants a nightly compiler for its
# sanitizer flags; RUSTC_BOOTSTRAP=1 lets the stable one accept them. The targets are built in
# the dev profile (`--dev`: overflow checks on, no optimisation): the parsers are cheap, while an
# optimised, instrumented build of burn, which the crate links, takes over an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-200000}
export RUSTC_BOOTSTRAP=1
python3 seeds.py corpus
cargo fuzz build --dev
for target in idx cifar config folder decode; do
    mkdir -p "corpus/$target" artifacts
    log=$(mktemp)
    # -rss_limit_mb: an input that makes the reader allocate more than this is a crash.
    if cargo fuzz run --dev "$target" "corpus/$target" -- -runs="$runs" -rss_limit_mb=1024 \
        -malloc_limit_mb=1024 -max_len=65536 -print_final_stats=1 ${SECONDS_PER_TARGET:+-max_total_time=$SECONDS_PER_TARGET} >"$log" 2>&1; then
        status=ok
    else
        status="CRASH (see fuzz/artifacts/$target)"
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
    echo "$target: $execs executions in ${secs}s, coverage $cov edges, $status"
    [ "$status" = ok ] || tail -40 "$log"
    rm -f "$log"
done
