#!/usr/bin/env bash
# One short GPU session, for a GPU machine without cargo (a lent one: minutes of device time).
# Here, after `cargo build --release --features tch,vulkan` against the GPU machine's PyTorch
# version (docs/gpu.md, libtorch), pack the binary and the library's test binary:
#   bash bench/gpu-session.sh --pack          # writes target/carry/{pretext,lib-tests}.xz
# There, with target/carry carried along:
#   OUT=/some/dir bash bench/gpu-session.sh   # CASES, PATHS, PRECISIONS, DEMO as gpu-check.sh
# It unpacks both, checks libtorch's fused BatchNorm on CUDA against burn's (the unit test, on
# the GPU), then runs bench/gpu-check.sh (by default its first three cases, no demo).
set -uo pipefail

CARRY=target/carry
TEST_FILTER=kernels::libtorch

if [[ "${1:-}" == --pack ]]; then
    set -e
    # Only the two archives travel (the carry holds 64 MiB); an earlier run's unpacked copies go.
    rm -rf "$CARRY/bin"
    mkdir -p "$CARRY"
    tests=$(cargo test --release --features tch,vulkan --lib --no-run --message-format=json \
        | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "pretext" and "lib" in m["target"]["kind"]:
        print(m["executable"])')
    target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    for pair in "$target_dir/release/pretext:pretext" "$tests:lib-tests"; do
        strip -o "$CARRY/${pair##*:}" "${pair%%:*}"
        xz -T2 -6 -f "$CARRY/${pair##*:}"
    done
    ls -l "$CARRY"
    exit 0
fi

OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT" "$CARRY/bin"
for name in pretext lib-tests; do
    xz -dc "$CARRY/$name.xz" >"$CARRY/bin/$name" && chmod +x "$CARRY/bin/$name"
done
TORCH_PYTHON="${TORCH_PYTHON:-python3}"
export LD_LIBRARY_PATH="$("$TORCH_PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
echo "== libtorch's BatchNorm against burn's, on the GPU" >&2
timeout 120 "$CARRY/bin/lib-tests" "$TEST_FILTER" 2>&1 | tee "$OUT/kernel-check.log" | tail -n 4
PRETEXT="$CARRY/bin/pretext" CASES="${CASES:-resnet18:256 convnet4:128 transformer:32}" \
    DEMO="${DEMO:-0}" OUT="$OUT" bash bench/gpu-check.sh
