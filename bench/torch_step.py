#!/usr/bin/env python3
"""PyTorch peer of `pretext bench step`: one ConvNet-4, ResNet-18, ResNet-50, ViT-Tiny or
ViT-Small rotation-pretext training step (fp32 or bf16 autocast; CPU, or CUDA with --device cuda), timed over a number
of steps after warm-up. The ResNets take pretext's rule for the stem: the CIFAR variant (3x3
stem, no max-pool; ResNet-18 only) below 96 pixels, torchvision's ImageNet models from 96 up.

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

import resident
import torch_precision

# From this image size up the ResNets take the ImageNet stem, as `model.stem = "auto"` does.
IMAGENET_STEM_FROM = 96


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


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.first = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(self.bn2(self.conv2(self.first(x))) + skip)


class ResNet18(nn.Module):
    """CIFAR ResNet-18 as pretext's: a 3x3 stem (no max-pool), four stages of two basic
    blocks (W, 2W, 4W, 8W; stride 2 from the second), global average pool."""

    def __init__(self, channels=3, width=64):
        super().__init__()
        self.stem = block(channels, width, False)
        blocks, cin = [], width
        for stage, mult in enumerate([1, 2, 4, 8]):
            cout = width * mult
            blocks += [BasicBlock(cin, cout, 1 if stage == 0 else 2), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = cin

    def forward(self, x):
        return self.blocks(self.stem(x)).mean(dim=(2, 3))


class Torchvision(nn.Module):
    """torchvision's ImageNet ResNet-18 or -50 (7x7 stem, max-pool), its classifier removed."""

    def __init__(self, model, channels=3, width=64):
        super().__init__()
        import torchvision

        if width != 64:
            raise SystemExit("error: torchvision's ResNets have width 64 (got --width %d)" % width)
        net = getattr(torchvision.models, model)()
        if channels != 3:
            net.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x):
        return self.net(x)


# ViTs: patch 4 up to this image size, 16 above (pretext's `model.patch` default).
SMALL_IMAGE_MAX = 32
VIT_SIZES = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6)}


class Attention(nn.Module):
    """timm's Attention: one qkv linear layer with bias, scaled dot-product attention (timm's
    fused_attn path), an output projection."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """timm's VisionTransformer (class token, position embedding including it, pre-norm
    blocks, LayerNorm eps 1e-6, final norm) without its classifier: the class token out."""

    def __init__(self, model, channels, size):
        super().__init__()
        dim, depth, heads = VIT_SIZES[model]
        patch = 4 if size <= SMALL_IMAGE_MAX else 16
        grid = size // patch
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.feature_dim = dim

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))[:, 0]


def encoder(model, channels, width, size):
    if model in VIT_SIZES:
        return VisionTransformer(model, channels, size)
    if model == "convnet4":
        return ConvNet4(channels, width)
    if size >= IMAGENET_STEM_FROM:
        return Torchvision(model, channels, width)
    if model == "resnet18":
        return ResNet18(channels, width)
    raise SystemExit("error: the CIFAR stem is built for resnet18 only; use --size >= %d" % IMAGENET_STEM_FROM)


class RotationNet(nn.Module):
    def __init__(self, channels=3, width=64, model="convnet4", size=32):
        super().__init__()
        self.encoder = encoder(model, channels, width, size)
        self.head = nn.Linear(self.encoder.feature_dim, 4)

    def forward(self, x):
        return self.head(self.encoder(x))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="convnet4",
                   choices=["convnet4", "resnet18", "resnet50", "vit_tiny", "vit_small"])
    p.add_argument("--batch", "--batch-size", dest="batch_size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--size", "--image-size", dest="size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    torch_precision.add_argument(p)
    p.add_argument("--inference", action="store_true",
                   help="time feature extraction: the encoder's forward pass, eval mode, no grad")
    a = p.parse_args()
    if a.steps < 1:
        p.error("--steps must be >= 1")

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)

    device = torch.device(a.device)
    torch_precision.setup(device)
    model = RotationNet(a.channels, a.width, a.model, a.size).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    x = torch.randn(a.batch_size, a.channels, a.size, a.size, dtype=torch.float32, device=device)
    y = torch.randint(0, 4, (a.batch_size,), device=device)

    def features():
        with torch.no_grad(), torch_precision.autocast(device, a.precision):
            return model.encoder(x)

    def train_step():
        with torch_precision.autocast(device, a.precision):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    if a.inference:
        model.eval()
    step = features if a.inference else train_step

    before = resident.current_mib()
    for _ in range(a.warmup):
        step()

    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    loss.sum().item()  # waits for the queued GPU work
    t = time.perf_counter() - t0

    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "model": a.model + ("-features" if a.inference else ""),
        "width": a.width,
        "batch": a.batch_size,
        "threads": a.threads,
        "device": a.device,
        "precision": a.precision,
        "steps": a.steps,
        "seconds": t,
        "samples_per_s": a.steps * a.batch_size / t,
        **resident.fields(before),
    }), flush=True)


if __name__ == "__main__":
    main()
