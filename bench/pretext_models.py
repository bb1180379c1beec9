"""PyTorch modules for pretext's exported encoders, and a loader for `pretext export` files.

    from pretext_models import load_export
    model, meta = load_export("encoder.safetensors")   # strict=True; eval mode
    x = normalise(pixels_over_255, meta)               # float32 [N, C, H, W]
    features = model(x)                                # [N, D]

The state-dict names are torchvision's (ResNets), timm's (ViTs) and `blocks.{i}.conv/bn`
(ConvNet-4); see docs/interop.md. Needs torch and torchvision, timm for ViTs, safetensors.
"""

import json

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


# --- the 20-line module: any width, input channels and stem, torchvision's names ---
class PretextResNet(ResNet):
    def __init__(self, block, layers, width=64, in_channels=3, stem="imagenet"):
        self.width = width
        super().__init__(block, layers)
        k, s = (3, 1) if stem == "cifar" else (7, 2)  # the stem's conv: kernel, stride
        self.conv1 = nn.Conv2d(in_channels, width, k, s, k // 2, bias=False)
        self.bn1, self.fc = nn.BatchNorm2d(width), nn.Identity()
        if stem == "cifar":
            self.maxpool = nn.Identity()

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:  # the first stage starts from the stem's width
            self.inplanes = self.width
        return super()._make_layer(block, planes * self.width // 64, blocks, stride, dilate)


def resnet(arch, width=64, in_channels=3, stem="imagenet"):
    block, layers = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}[arch]
    return PretextResNet(block, layers, width, in_channels, stem)


class ConvNet4(nn.Module):
    def __init__(self, in_channels=3, width=64):
        super().__init__()
        ch = [in_channels, width, 2 * width, 4 * width, 8 * width]
        self.blocks = nn.ModuleList(nn.ModuleDict({"conv": nn.Conv2d(ch[i], ch[i + 1], 3, padding=1, bias=False),
                                                   "bn": nn.BatchNorm2d(ch[i + 1])}) for i in range(4))

    def forward(self, x):
        for i, b in enumerate(self.blocks):
            x = F.relu(b["bn"](b["conv"](x)))
            if i < 3 and min(x.shape[-2:]) >= 2:  # no pooling below 2x2
                x = F.max_pool2d(x, 2, 2)
        return x.mean((2, 3))
# --- end of the 20-line module ---


VIT_NAMES = {"vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224"}


def vit(arch, img_size, patch, in_channels=3):
    """timm's ViT-Tiny or ViT-Small for `img_size` images and `patch`-pixel patches."""
    import timm

    return timm.create_model(VIT_NAMES.get(arch, arch), pretrained=False, num_classes=0,
                             img_size=img_size, patch_size=patch, in_chans=in_channels)


def read_metadata(path):
    """The metadata of a safetensors file, with the numbers and lists decoded."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    meta = dict(raw)
    for key in ("width", "in_channels", "vit_patch"):
        if key in meta:
            meta[key] = int(meta[key])
    for key in ("mean", "std", "input_size"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    size = meta.get("input_size")
    if isinstance(size, list):  # [H, W] or [C, H, W]: the model needs the side
        meta["input_size"] = int(size[-1])
    return meta


def build(meta):
    """The module that a pretext export with this metadata loads into."""
    arch = meta["arch"]
    if arch == "convnet4":
        return ConvNet4(meta["in_channels"], meta["width"])
    if arch in ("resnet18", "resnet50"):
        return resnet(arch, meta["width"], meta["in_channels"], meta["stem"])
    if arch in VIT_NAMES:
        return vit(arch, meta["input_size"], meta["vit_patch"], meta["in_channels"])
    raise ValueError(f"unknown arch {arch!r}")


def load_export(path):
    """(module in eval mode, metadata) for a `pretext export` .safetensors file (strict=True)."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    model = build(meta)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), meta


def normalise(x, meta):
    """pixel/255 float32 [N, C, H, W] -> the encoder's input ((x - mean) / std per channel)."""
    mean = torch.tensor(meta["mean"], dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(meta["std"], dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std
