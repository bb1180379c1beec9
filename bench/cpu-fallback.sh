#!/usr/bin/env bash
# One binary on every x86-64: run pretext's kernel-level test and a short training step under
# QEMU's user-mode emulation of CPUs without AVX-512 (Haswell: AVX2 and FMA) and without AVX
# (Nehalem), so that gemm's and pretext's runtime dispatch must take their fallbacks; an
# instruction the emulated CPU lacks would stop the run with SIGILL. Slow (minutes): not in CI.
# Needs Debian's qemu-user (`apt-get install qemu-user`). Run from the repo root after
#   cargo build --release && cargo test --release --test simd_levels --no-run
set -euo pipefail
PRETEXT="${PRETEXT:-target/release/pretext}"
test_bin=$(ls -t target/release/deps/simd_levels-* | grep -v '\.d$' | head -n 1)
for cpu in Haswell Nehalem; do
    echo "== qemu-x86_64 -cpu $cpu"
    qemu-x86_64 -cpu "$cpu" "$test_bin" --nocapture 2>/dev/null | grep -E "levels on this CPU|test result"
done
echo "== a ConvNet-4 training step under -cpu Haswell (gemm's AVX2 kernels, not its AVX-512 ones)"
qemu-x86_64 -cpu Haswell "$PRETEXT" --threads 2 bench step --model convnet4 --batch 32 \
    --steps 2 --warmup 1 2>/dev/null
