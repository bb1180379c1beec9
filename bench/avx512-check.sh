#!/usr/bin/env bash
# Runs pretext's AVX-512 code paths where the machine has no AVX-512: on an emulated
# Skylake-X (Bochs, through bench/bochs-avx512.sh), it
#   1. runs tests/simd_levels.rs, which checks every kernel at every level the CPU has
#      (there: baseline, AVX2, AVX-512) against the top one;
#   2. pretrains a small ConvNet-4 (rotation, synthetic data) and embeds the test split twice,
#      with pretext's kernels at AVX-512 and forced to AVX2 (PRETEXT_SIMD=avx2); gemm takes
#      its AVX-512 kernels in both;
# and compares with the same run on this machine's own CPU (AVX2 gemm):
#   - the two emulated runs must give the same bits (pretext's levels add in the same order,
#     and gemm is the same in both);
#   - the emulated and native features must agree to 1e-4 of the largest (gemm's AVX-512 and
#     AVX2 kernels add in different orders).
# Slow (Bochs runs vector code about 100-200x slower than the host): about 5 minutes.
# Run from the repository root: bash bench/avx512-check.sh
set -euo pipefail

[[ -f bench/bochs-avx512.sh ]] || { echo "error: run from the repository root" >&2; exit 1; }
for t in bochs genisoimage cpio; do
    command -v "$t" >/dev/null || {
        echo "error: $t missing: apt-get install bochs bochsbios vgabios cpio genisoimage" >&2
        exit 1
    }
done
cargo build --release --quiet
TEST_BIN=$(cargo test --release --test simd_levels --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "simd_levels" and m.get("executable"):
        print(m["executable"])')
PRETEXT=$(realpath target/release/pretext)
# Not under /tmp: the guest mounts a fresh tmpfs there.
mkdir -p target
WORK=$(mktemp -d "$PWD/target/avx512-check.XXXXXX")
[[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$WORK"' EXIT

cat > "$WORK/tiny.toml" <<TOML
[data]
path = "synthetic"
synthetic_train = 256
synthetic_test = 64
synthetic_size = 16

[run]
monitor_memory = 0
TOML

# One pretraining and embedding, printed as: its metrics, the encoder tensors' hash, and the test
# features' bits in hex (after the .npy header of 128 bytes).
cat > "$WORK/run-one.sh" <<SH
#!/bin/sh
set -e
out=\$1
"$PRETEXT" pretrain --config "$WORK/tiny.toml" --task rotation --model convnet4 --width 8 \\
    --batch-size 32 --max-steps 4 --epochs 1 --threads 1 --quiet --out "\$out" >/dev/null
"$PRETEXT" embed --run "\$out" --out "\$out/emb" --threads 1 --quiet >/dev/null
echo "metrics \$(cat "\$out/metrics.jsonl")"
# The tensors' bytes only: the header's metadata comes in no fixed order.
header=\$(od -A n -t u8 -N 8 "\$out/encoder.safetensors" | tr -d ' ')
echo "encoder \$(tail -c +\$((header + 9)) "\$out/encoder.safetensors" | sha256sum | cut -c1-64)"
echo "features-begin"
od -A n -v -t x4 -j 128 "\$out/emb/test_features.npy"
echo "features-end"
SH
cat > "$WORK/guest.sh" <<SH
#!/bin/busybox sh
set -e
"$TEST_BIN" --nocapture --test-threads=1
echo "== level avx512"
sh "$WORK/run-one.sh" /tmp/avx512
echo "== level avx2"
PRETEXT_SIMD=avx2 sh "$WORK/run-one.sh" /tmp/avx2
SH
chmod +x "$WORK/guest.sh" "$WORK/run-one.sh"

echo "native run (this CPU) ..." >&2
{ echo "== level native"; sh "$WORK/run-one.sh" "$WORK/native"; } > "$WORK/native.txt"
echo "emulated AVX-512 runs (Bochs, a few minutes) ..." >&2
started=$(date +%s)
EXTRA_FILES="$PRETEXT $TEST_BIN $WORK" TIMEOUT_S="${TIMEOUT_S:-3600}" \
    bash bench/bochs-avx512.sh "$WORK/guest.sh" > "$WORK/guest.txt" || {
    rc=$?
    cat "$WORK/guest.txt"
    echo "error: the emulated run failed (exit $rc)" >&2
    exit "$rc"
}
echo "Bochs took $(( $(date +%s) - started )) s" >&2
grep -E "levels on this CPU|test result" "$WORK/guest.txt"

python3 - "$WORK/guest.txt" "$WORK/native.txt" <<'PY'
import struct, sys
def runs(path):
    out, level, feats = {}, None, None
    for line in open(path):
        line = line.strip()
        if line.startswith("== level "):
            level = line.split()[-1]; out[level] = {"hex": []}
        elif line == "features-begin": feats = out[level]["hex"]
        elif line == "features-end": feats = None
        elif feats is not None: feats.extend(line.split())
        elif line.startswith(("metrics ", "encoder ")) and level:
            key, value = line.split(" ", 1); out[level][key] = value
    return out
guest, native = runs(sys.argv[1]), runs(sys.argv[2])["native"]
if "levels on this CPU: [Baseline, Avx2, Avx512]" not in open(sys.argv[1]).read():
    sys.exit("error: the emulated CPU did not run the AVX-512 level")
floats = lambda r: [struct.unpack("<f", bytes.fromhex(h)[::-1])[0] for h in r["hex"]]
a512, a2, nat = floats(guest["avx512"]), floats(guest["avx2"]), floats(native)
same_features = guest["avx512"]["hex"] == guest["avx2"]["hex"]
same_encoder = guest["avx512"]["encoder"] == guest["avx2"]["encoder"]
same = same_features and same_encoder
if not same:
    differ = sum(x != y for x, y in zip(guest["avx512"]["hex"], guest["avx2"]["hex"]))
    worst_levels = max(abs(x - y) for x, y in zip(a512, a2))
    print(f"levels differ: encoder hashes {'equal' if same_encoder else 'differ'}, "
          f"{differ} feature values differ, by up to {worst_levels:.3g}")
scale = max(abs(v) for v in nat)
worst = max(abs(x - y) for x, y in zip(a512, nat))
print(f"features: {len(a512)} values; AVX-512 vs AVX2 levels in the guest: "
      f"{'same bits' if same else 'DIFFERENT'}; emulated vs native: largest difference "
      f"{worst:.3g} ({worst / scale:.2g} of the largest value {scale:.3g})")
for name, r in [("guest avx512", guest["avx512"]), ("guest avx2", guest["avx2"]), ("native", native)]:
    print(f"{name:13} {r['metrics']}")
if not same or worst > 1e-4 * scale or len(a512) != len(nat):
    sys.exit("error: the AVX-512 paths disagree")
print("ok")
PY
