"""The torchvision peer of `pretext bench augment --task simclr`: the same two-view pipeline
(RandomResizedCrop scale 0.2-1, flip, ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale
p 0.2, solarisation p 0.2 on the second view, to float and normalised) over the same decoded
images, with THREADS DataLoader workers of one torch thread each, batches of 256.
Prints one JSON object like pretext's. Usage: python augment_torchvision.py DATA_DIR THREADS N"""
import json, os, sys, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

root, threads, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
train = root / "train" if (root / "train").is_dir() else root
files = sorted(p for p in train.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:n]
images = [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).contiguous() for f in files]
stack = torch.stack(images)
mean = (stack.float() / 255).mean(dim=(0, 2, 3)).tolist()
std = (stack.float() / 255).std(dim=(0, 2, 3)).tolist()
size = stack.shape[-1]

def view(solarise):
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomSolarize(threshold=128, p=solarise),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])

class TwoViews(torch.utils.data.Dataset):
    def __init__(self):
        self.first, self.second = view(0.0), view(0.2)
    def __len__(self):
        return len(images)
    def __getitem__(self, i):
        img = images[i]
        return self.first(img), self.second(img)

def worker_init(_):
    torch.set_num_threads(1)

loader = torch.utils.data.DataLoader(TwoViews(), batch_size=256, num_workers=threads,
                                     worker_init_fn=worker_init, persistent_workers=True)
for _ in zip(range(1), loader):  # warm-up: workers started, first batch made
    pass
start = time.perf_counter()
count = 0
for a, b in loader:
    count += a.shape[0]
seconds = time.perf_counter() - start
print(json.dumps({"impl": "torchvision", "task": "simclr", "images": count, "views": 2 * count,
                  "batch_size": 256, "threads": threads, "seconds": seconds,
                  "images_per_s": count / seconds}))
