"""scikit-learn's KMeans on a float32 .npy matrix, configured like `pretext kmeans`:
k-means++ (greedy, sklearn's default), Lloyd, the given iteration cap, tolerance and restarts.
Prints one JSON line: {"impl": "sklearn", "k", "inertia", "iterations", "seconds", "threads", ...}.
Threads are set with threadpoolctl (OpenMP and BLAS) before the fit."""
import argparse
import json
import time

import numpy as np
from sklearn import __version__ as sk_version
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_info, threadpool_limits

p = argparse.ArgumentParser()
p.add_argument("features")
p.add_argument("--k", type=int, required=True)
p.add_argument("--max-iter", type=int, default=300)
p.add_argument("--tol", type=float, default=1e-4)
p.add_argument("--restarts", type=int, default=1)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()

x = np.load(a.features)
assert x.dtype == np.float32 and x.ndim == 2, (x.dtype, x.shape)
with threadpool_limits(limits=a.threads):
    km = KMeans(
        n_clusters=a.k,
        init="k-means++",
        n_init=a.restarts,
        max_iter=a.max_iter,
        tol=a.tol,
        algorithm="lloyd",
        random_state=a.seed,
    )
    t0 = time.perf_counter()
    km.fit(x)
    seconds = time.perf_counter() - t0
    pools = {p["internal_api"]: p["num_threads"] for p in threadpool_info()}
print(json.dumps({
    "impl": "sklearn", "sklearn": sk_version, "k": a.k, "rows": x.shape[0], "dim": x.shape[1],
    "inertia": float(km.inertia_), "iterations": int(km.n_iter_), "threads": a.threads,
    "seconds": seconds, "thread_pools": pools,
}))
