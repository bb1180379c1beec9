"""A torchvision ResNet-18 trained by PyTorch, to start pretext from (`--init-from`): supervised on
Fashion-MNIST (grey images repeated over three channels and padded to 32x32), for a time budget.
Writes the model's `state_dict()` (with its 10-class `fc`, which pretext ignores) as a `.pth`.

    /work/venv-torch/bin/python bench/torch_supervised_resnet18.py \
        --data ../shared/data/fashion-mnist --minutes 8 --out /tmp/fmnist_resnet18.pth
"""
import argparse
import gzip
import pathlib
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def batches(images, labels, size, rng):
    order = rng.permutation(len(images))
    for start in range(0, len(order) - size + 1, size):
        rows = order[start:start + size]
        x = torch.from_numpy(images[rows]).float().div(255).sub(0.286).div(0.353)
        x = F.pad(x.unsqueeze(1), (2, 2, 2, 2)).repeat(1, 3, 1, 1)
        yield x, torch.from_numpy(labels[rows].astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=pathlib.Path, required=True)
    ap.add_argument("--minutes", type=float, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    images = idx(a.data / "train-images-idx3-ubyte.gz")
    labels = idx(a.data / "train-labels-idx1-ubyte.gz")
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    start, steps, correct, seen = time.time(), 0, 0, 0
    model.train()
    while time.time() - start < a.minutes * 60:
        for x, y in batches(images, labels, 128, rng):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            if steps % 50 == 0:
                print(f"step {steps}: loss {loss.item():.3f}, train acc {correct / seen:.3f}", flush=True)
                correct, seen = 0, 0
            if time.time() - start > a.minutes * 60:
                break
    torch.save(model.state_dict(), a.out)
    print(f"wrote {a.out} after {steps} steps in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
