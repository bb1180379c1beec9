#!/usr/bin/env bash
# Feeds pretext each kind of bad input and prints what the user sees: exit code and message.
#   bash bench/bad-input-messages.sh          (run from the repository root, after cargo build --release)
# Every case must exit with 1 (never a panic: 101) and name the file or key at fault.
set -uo pipefail
PRETEXT="${PRETEXT:-$PWD/target/release/pretext}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

python3 - <<'PY'
import gzip, os, struct, zlib

def idx_images(n, r, c, data): return struct.pack(">BBBBIII", 0, 0, 8, 3, n, r, c) + data
def idx_labels(labels): return struct.pack(">BBBBI", 0, 0, 8, 1, len(labels)) + bytes(labels)
def put(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    open(path, "wb").write(data)

put("idx-truncated/train-images-idx3-ubyte", idx_images(10, 28, 28, bytes(100)))
put("idx-truncated/train-labels-idx1-ubyte", idx_labels([0] * 10))
put("idx-magic/train-images-idx3-ubyte", b"\x00\x00\x09\x03" + bytes(12 + 4))
put("idx-magic/train-labels-idx1-ubyte", idx_labels([0]))
put("idx-trillion/train-images-idx3-ubyte.gz", gzip.compress(struct.pack(">BBBBIII", 0, 0, 8, 3, 0xFFFFFFFF, 1000, 1000)))
put("idx-trillion/train-labels-idx1-ubyte", idx_labels([0]))
put("idx-counts/train-images-idx3-ubyte", idx_images(2, 1, 1, bytes(2)))
put("idx-counts/train-labels-idx1-ubyte", idx_labels([0, 1, 2]))
put("cifar-truncated/data_batch_1.bin", bytes([1]) + bytes(3072) + bytes([2]) + bytes(1000))
put("cifar-label/data_batch_1.bin", bytes([17]) + bytes(3072))

def png(w, h, gray=True):
    raw = b"".join(b"\x00" + bytes(w * (1 if gray else 3)) for _ in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0 if gray else 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
put("png-corrupt/a/good.png", png(8, 8)); put("png-corrupt/a/broken.png", png(8, 8)[:40])
put("png-corrupt/b/good.png", png(8, 8))
put("jpeg-truncated/a/good.png", png(8, 8)); put("jpeg-truncated/a/cut.jpg", b"\xff\xd8\xff\xe0" + bytes(30))
put("mixed-sizes/a/one.png", png(8, 8)); put("mixed-sizes/a/two.png", png(9, 8))
os.makedirs("empty-folder", exist_ok=True)
put("empty-class/a/x.png", png(4, 4)); os.makedirs("empty-class/b", exist_ok=True)
put("no-images/notes.md", b"hello"); put("no-images/Thumbs.db", b"\x00"); put("no-images/.DS_Store", b"\x00")
put("bad-utf8.txt", b"a fine line\nna\xefve\n")
put("bad-table.tsv", b"text\tlabel\nfine\tx\nno label here\n")
put("unknown-key.toml", b'[train]\nlearning_rate = 0.1\n')
put("negative-lr.toml", b'[train]\nlr = -0.1\n')
put("zero-batch.toml", b'[train]\nbatch_size = 0\n')
def npy(descr, shape, payload):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload
put("features-1d.npy", npy("<f4", "(2,)", bytes(8)))
put("features-short.npy", npy("<f4", "(60000, 512)", bytes(64)))
PY

# Tiny real runs for the checkpoint cases.
common=(--data synthetic --epochs 1 --batch-size 32 --quiet --threads 2)
"$PRETEXT" pretrain "${common[@]}" --width 4 --out run-a >/dev/null 2>&1
cp -r run-a run-corrupt
head -c 100 run-a/checkpoint/latest.ckpt > run-corrupt/checkpoint/latest.ckpt
sed -i 's/^width = 4/width = 8/' run-a/config.toml 2>/dev/null
cp -r run-a run-other-model
cp run-a/encoder.safetensors enc.bak
sed -i 's/"width":4/"width":8/' run-other-model/encoder.json

show() {
    local name=$1; shift
    local err code
    err=$("$PRETEXT" "$@" 2>&1 >/dev/null); code=$?
    printf '| %s | `pretext %s` | %s | %s |\n' "$name" "$*" "$code" "$(echo "$err" | grep -m1 -E '^error' | sed "s#$tmp/##g; s#|#\\\\|#g")"
}
echo "| case | command | exit | message |"
echo "| --- | --- | --- | --- |"
show "truncated IDX" info idx-truncated
show "wrong IDX magic" info idx-magic --format idx
show "IDX header claiming 4e9 x 10^6 pixels" info idx-trillion
show "label and image counts differ" info idx-counts
show "truncated CIFAR batch" info cifar-truncated
show "CIFAR label out of range" info cifar-label
show "corrupt PNG" info png-corrupt
show "truncated JPEG" info jpeg-truncated
show "images of mixed sizes" info mixed-sizes
show "empty folder" info empty-folder
show "empty class folder" info empty-class
show "folder of non-image and hidden files" info no-images
show "missing path" info does-not-exist
show "non-UTF-8 text line" info bad-utf8.txt
show "table row without a label" info bad-table.tsv
show "unknown config key" pretrain --config unknown-key.toml
show "negative learning rate" pretrain --config negative-lr.toml
show "zero batch size" pretrain --config zero-batch.toml
show "more labels per class than exist" transfer --data synthetic --model convnet4 --mode scratch --labels-per-class 100000
show "checkpoint of another model" resume run-other-model
show "corrupt checkpoint" resume run-corrupt
show "1-D features for k-means" kmeans features-1d.npy --k 2 --out l.npy
show "features header larger than the file" kmeans features-short.npy --k 2 --out l.npy
