"""Writes small valid seed inputs for each fuzz target into corpus/<target>/ (run by run.sh)."""
import os
import struct
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "corpus"


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def split2(a, b):
    # The targets split at u16_le(first two bytes) % (len(rest) + 1).
    return struct.pack("<H", len(a)) + a + b


# IDX: 3 images of 2x2 and their labels; raw and gzipped variants via the flag byte.
images = struct.pack(">BBBBIII", 0, 0, 8, 3, 3, 2, 2) + bytes(range(12))
labels = struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes([0, 1, 2])
for flags in range(4):
    put("idx", f"valid-{flags}", bytes([flags]) + split2(images, labels))

# CIFAR-10 (1 label byte) and CIFAR-100 (2 label bytes) records of 3x32x32.
rec10 = bytes([3]) + bytes(3072)
rec100 = bytes([1, 7]) + bytes(3072)
names10 = b"\n".join(b"c%d" % i for i in range(10)) + b"\n"
put("cifar", "c10", bytes([0]) + split2(rec10 * 2, split2(rec10, names10)))
put("cifar", "c100", bytes([1]) + split2(rec100 * 2, split2(rec100, b"")))

# Configs: the shipped ones and a transfer config.
here = os.path.dirname(os.path.abspath(__file__))
configs = os.path.join(here, "..", "configs")
for name in sorted(os.listdir(configs)):
    with open(os.path.join(configs, name), "rb") as f:
        put("config", name, f.read())
put("config", "transfer", b'labels_per_class = 10\nmodes = ["probe", "knn"]\nseeds = 3\n')

# Folder: entries [where, kind, a, b, c, len] + len raw bytes (see fuzz_targets/folder.rs).
def entry(where, kind, a=3, b=3, c=1, raw=b""):
    return bytes([where, kind, a, b, c, len(raw)]) + raw

put("folder", "classes", entry(1, 8 + 0) + entry(2, 8 + 6) + entry(9, 16 + 1))
put("folder", "splits", entry(4, 8) + entry(5, 8) + entry(6, 8) + entry(14, 8))
put("folder", "flat", entry(0, 8, 5, 5, 2) + entry(8, 16 + 1, 5, 5) + entry(0, 3, raw=b"hello"))
put("folder", "broken", entry(1, 24, 7, 9, 2) + entry(2, 24, 7, 9, 1, raw=b"\xff\xd8"))


# decode: one byte (the needed side) then a whole file: a 3x2 grey PNG and a 2x2 RGB PNG.
def png(width, height, colour_type, raw_rows):
    import zlib

    def chunk(kind, body):
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    data = zlib.compress(b"".join(b"\0" + row for row in raw_rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


put("decode", "grey-png", bytes([2]) + png(3, 2, 0, [bytes([0, 128, 255])] * 2))
put("decode", "rgb-png", bytes([1]) + png(2, 2, 2, [bytes(range(6))] * 2))
