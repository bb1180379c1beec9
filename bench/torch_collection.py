"""PyTorch peer of the real-collection benchmarks (bench/real-collection.sh), on the same folder.

    python bench/torch_collection.py pipeline --data DIR --workers W [--images N] [--batch 64]
    python bench/torch_collection.py step --data DIR --threads T --workers W [--steps S] [--batch 64]

pipeline: a torchvision DataLoader (PIL decoding, ImageFolder) making SimCLR's two views at 224
pixels with the transforms of pretext's default `[task.views]` (random resized crop 0.2-1,
flip, colour jitter 0.4/0.4/0.2/0.1 with p 0.8, grayscale 0.2, solarisation on the second view
with p 0.2, no blur), W worker processes; prints images/s.
step: torchvision's resnet18 (ImageNet stem, fc removed) with pretext's SimCLR projector
(512 -> 512, BatchNorm, ReLU -> 128), NT-Xent at temperature 0.2 and SGD with momentum, fed by
that DataLoader; prints images/s and the peak proportional set size summed over the main
process and its workers (sampled every 50 ms).
Each prints one JSON line.
"""

import argparse
import json
import os
import threading
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision import datasets, transforms

SIZE = 224


def view(solarise):
    return transforms.Compose([
        transforms.RandomResizedCrop(SIZE, scale=(0.2, 1.0), ratio=(0.75, 4 / 3)),
        transforms.RandomHorizontalFlip(),
        transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        transforms.RandomSolarize(128, p=solarise),
        transforms.ToTensor(),
        transforms.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),
    ])


class TwoViews:
    def __init__(self):
        self.first, self.second = view(0.0), view(0.2)

    def __call__(self, img):
        return self.first(img), self.second(img)


def worker_init(_):
    torch.set_num_threads(1)


def loader(data, workers, batch):
    ds = datasets.ImageFolder(data, transform=TwoViews())
    return torch.utils.data.DataLoader(
        ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
        worker_init_fn=worker_init, persistent_workers=workers > 0)


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return kids


class PeakPss(threading.Thread):
    """Peak of PSS summed over this process and its DataLoader workers."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = 0, False

    def run(self):
        me = os.getpid()
        while not self.stop:
            total = pss_kb(me) + sum(pss_kb(c) for c in children(me))
            self.peak = max(self.peak, total)
            time.sleep(0.05)


def pipeline(a):
    it = iter(loader(a.data, a.workers, a.batch))
    next(it)  # workers started, first batch made
    seen, start = 0, time.perf_counter()
    while seen < a.images:
        (v1, _), _ = next(it)
        seen += v1.shape[0]
    secs = time.perf_counter() - start
    return {"impl": "pytorch", "what": "pipeline", "workers": a.workers, "images": seen,
            "seconds": secs, "images_per_s": seen / secs}


def nt_xent(z1, z2, t):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / t
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def step(a):
    torch.set_num_threads(a.threads)
    monitor = PeakPss()
    monitor.start()
    net = torchvision.models.resnet18()
    net.fc = nn.Identity()
    proj = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128))
    params = list(net.parameters()) + list(proj.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    it = iter(loader(a.data, a.workers, a.batch))
    before = monitor.peak

    def one():
        (v1, v2), _ = next(it)
        loss = nt_xent(proj(net(v1)), proj(net(v2)), 0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()

    one()  # warm-up
    start = time.perf_counter()
    for _ in range(a.steps):
        one()
    secs = time.perf_counter() - start
    monitor.stop = True
    return {"impl": "pytorch", "what": "step", "torch": torch.__version__, "threads": a.threads,
            "workers": a.workers, "batch": a.batch, "steps": a.steps, "seconds": secs,
            "images_per_s": a.steps * a.batch / secs, "pss_before_mb": before / 1024,
            "peak_pss_mb": monitor.peak / 1024}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["pipeline", "step"])
    p.add_argument("--data", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    print(json.dumps(pipeline(a) if a.what == "pipeline" else step(a)))


if __name__ == "__main__":
    main()
