"""Build a large image folder for the real-collection benchmarks, outside the repository.

    python bench/make_folder.py SOURCE OUT N [--size 224] [--large K]

SOURCE is ../shared/data/cifar10-jpeg (its train/<class>/*.jpg and test/<class>/*.jpg). OUT gets
N JPEGs of SIZE x SIZE in class folders, OUT/<class>/<n>.jpg: each an upscaled CIFAR-10 image,
cropped at one of four offsets and flipped or not, so the first 480,000 are all different.
--large K also writes K photos of 2,000-4,000 pixels a side (mixed aspect ratios) into
OUT-large/, for the JPEG decoder comparison (`pretext bench decode`).
Needs Pillow (the benchmark virtual environment has it); uses every core.
"""

import argparse
import os
import sys
from multiprocessing import Pool
from pathlib import Path

from PIL import Image

CROPS = [(0, 0), (4, 0), (0, 4), (4, 4)]  # 28x28 windows of the 32x32 image
QUALITY = 90


def sources(root):
    files = []
    for split in ("train", "test"):
        for cls in sorted(os.listdir(root / split)):
            for name in sorted(os.listdir(root / split / cls)):
                files.append((cls, root / split / cls / name))
    return files


def make(job):
    n, cls, src, out, size = job
    variant = n // SOURCES
    left, top = CROPS[(variant // 2) % len(CROPS)]
    img = Image.open(src).convert("RGB").crop((left, top, left + 28, top + 28))
    img = img.resize((size, size), Image.BICUBIC)
    if variant % 2:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    path = out / cls / f"{n:07d}.jpg"
    img.save(path, quality=QUALITY)


def make_large(job):
    n, src, out = job
    w = 2000 + (n * 397) % 2001
    h = 2000 + (n * 211) % 2001
    img = Image.open(src).convert("RGB").resize((w, h), Image.BICUBIC)
    img.save(out / f"photo-{n:03d}.jpg", quality=QUALITY)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("source", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("n", type=int)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--large", type=int, default=0)
    a = p.parse_args()
    files = sources(a.source)
    global SOURCES
    SOURCES = len(files)
    classes = sorted({cls for cls, _ in files})
    for cls in classes:
        (a.out / cls).mkdir(parents=True, exist_ok=True)
    # A stride coprime with the source count spreads every class over the first images.
    jobs = [(n, *files[n * 7919 % SOURCES], a.out, a.size) for n in range(a.n)]
    with Pool() as pool:
        pool.map(make, jobs, chunksize=256)
    if a.large:
        large = Path(str(a.out) + "-large")
        large.mkdir(parents=True, exist_ok=True)
        with Pool() as pool:
            pool.map(make_large, [(n, files[n * 7919 % SOURCES][1], large) for n in range(a.large)])
    print(f"wrote {a.n} images of {a.size}x{a.size} to {a.out}", file=sys.stderr)


SOURCES = 1
if __name__ == "__main__":
    main()
