#!/usr/bin/env python3
"""PyTorch peer of `pretext bench-step`: one ConvNet-4 rotation-pretext
training step (fp32, CPU), timed over a number of steps after warm-up.

The batch holds already-rotated views (random inputs, random labels in 0..4):
rotating the images is data-side work and is not timed, same as on the Rust
side. Prints exactly one JSON line on stdout.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def block(cin, cout, pool):
    layers = [
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ConvNet4(nn.Module):
    """Four conv3x3-BN-ReLU blocks (W, 2W, 4W, 8W), max-pool after the first
    three, global average pool -> 8W-dim feature."""

    def __init__(self, channels=3, width=64):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.blocks = nn.Sequential(
            block(channels, w[0], True),
            block(w[0], w[1], True),
            block(w[1], w[2], True),
            block(w[2], w[3], False),
        )
        self.feature_dim = w[3]

    def forward(self, x):
        x = self.blocks(x)
        return x.mean(dim=(2, 3))


class RotationNet(nn.Module):
    def __init__(self, channels=3, width=64):
        super().__init__()
        self.encoder = ConvNet4(channels, width)
        self.head = nn.Linear(self.encoder.feature_dim, 4)

    def forward(self, x):
        return self.head(self.encoder(x))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="convnet4", choices=["convnet4"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.steps < 1:
        p.error("--steps must be >= 1")

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)

    device = torch.device("cpu")
    model = RotationNet(a.channels, a.width).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    x = torch.randn(a.batch_size, a.channels, a.size, a.size, dtype=torch.float32, device=device)
    y = torch.randint(0, 4, (a.batch_size,), device=device)

    def step():
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(a.warmup):
        step()

    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    loss.item()  # force completion (no-op on CPU, kept for symmetry)
    t = time.perf_counter() - t0

    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "model": a.model,
        "width": a.width,
        "batch_size": a.batch_size,
        "threads": a.threads,
        "steps": a.steps,
        "seconds": t,
        "samples_per_s": a.steps * a.batch_size / t,
    }), flush=True)


if __name__ == "__main__":
    main()
