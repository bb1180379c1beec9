"""umap-learn beside `pretext bench umap` on the same features: both on L2-normalised rows,
umap-learn with euclidean distance (equal to pretext's distance on the unit sphere),
n_neighbors=15, min_dist=0.1 and no random_state (a random_state forces one thread). The
timed run is the second; the first, on a subset large enough to take the same code paths,
compiles numba's functions. Trustworthiness (scikit-learn, k = 15) of both maps is measured on
the same random rows. Prints a markdown table.
  NUMBA_NUM_THREADS=T python bench/umap_check.py FEATURES.npy --threads T \
      --pretext-coords P.npy --pretext-json P.json [--out umap_learn.npy] [--sample 5000]"""
import argparse
import json
import os
import resource
import time

p = argparse.ArgumentParser()
p.add_argument("features")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--pretext-coords", required=True)
p.add_argument("--pretext-json", required=True)
p.add_argument("--out")
p.add_argument("--sample", type=int, default=5000)
p.add_argument("--warmup-rows", type=int, default=12_000)
a = p.parse_args()
# numba reads this when it is first imported.
os.environ["NUMBA_NUM_THREADS"] = str(a.threads)

import numpy as np  # noqa: E402
import umap  # noqa: E402
from sklearn.manifold import trustworthiness  # noqa: E402

x = np.load(a.features).astype(np.float32)
x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit(rows):
    return umap.UMAP(n_neighbors=15, min_dist=0.1, metric="euclidean").fit_transform(rows)


fit(x[: a.warmup_rows])
t0 = time.perf_counter()
ours = fit(x)
seconds = time.perf_counter() - t0
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if a.out:
    np.save(a.out, ours.astype(np.float32))

pretext = json.load(open(a.pretext_json))
theirs = np.load(a.pretext_coords)
rows = np.sort(np.random.default_rng(0).choice(len(x), min(a.sample, len(x)), replace=False))
trust = {
    name: trustworthiness(x[rows], y[rows], n_neighbors=15)
    for name, y in [("umap-learn", ours), ("pretext", theirs)]
}
print(f"{len(x)} x {x.shape[1]} features, {a.threads} threads, trustworthiness on {len(rows)} rows\n")
print("| implementation | k-NN s | layout s | total s | peak RSS MiB | trustworthiness |")
print("|---|---:|---:|---:|---:|---:|")
print(f"| pretext | {pretext['knn_seconds']:.1f} | {pretext['layout_seconds']:.1f} | "
      f"{pretext['seconds']:.1f} | {pretext['peak_rss_mib']:.0f} | {trust['pretext']:.4f} |")
print(f"| umap-learn {umap.__version__} | | | {seconds:.1f} | {peak_mib:.0f} | "
      f"{trust['umap-learn']:.4f} |")
