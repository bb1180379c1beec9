"""Write the PyTorch interoperability fixtures into tests/fixtures/interop/.

    /work/venv-torch/bin/python bench/interop_fixtures.py [--out tests/fixtures/interop]

For five small encoders (random weights, torch.manual_seed(0), BatchNorm running statistics
from three training-mode passes, affine and LayerNorm parameters perturbed so nothing sits at
its initial constant), it writes `{name}.safetensors` (the state dict, no metadata: a foreign
file as PyTorch users save it), `{name}_input.npy` (a fixed float32 input) and
`{name}_features.npy` (float32 [2, D]: the module's output in eval mode). Also `names.json`:
the state-dict names and shapes of torchvision's resnet18/resnet50 (fc = Identity) and timm's
vit_tiny/vit_small_patch16_224 (num_classes=0), in order. Needs torch, torchvision, timm,
safetensors and numpy; runs on one thread in a few seconds.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretext_models import ConvNet4, resnet  # noqa: E402


def perturb_batchnorm(model, data):
    """Running statistics from three training passes, then random affine parameters."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(data())
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.1 * torch.randn_like(m.bias))


def perturb_vit(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.1 * torch.randn_like(m.bias))
        model.pos_embed.copy_(0.5 * torch.randn_like(model.pos_embed))
        model.cls_token.copy_(0.5 * torch.randn_like(model.cls_token))


def tiny_vit():
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=16, patch_size=4, in_chans=3, embed_dim=12, depth=2,
                             num_heads=2, num_classes=0)


def save(out, name, model, x):
    from safetensors.torch import save_file

    model.eval()
    with torch.no_grad():
        features = model(x)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    for k, v in state.items():
        assert v.dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32), k
    save_file(state, str(out / f"{name}.safetensors"))
    np.save(out / f"{name}_input.npy", x.numpy().astype(np.float32))
    np.save(out / f"{name}_features.npy", features.numpy().astype(np.float32))
    print(f"{name}: {len(state)} tensors, "
          f"{sum(v.numel() for k, v in state.items() if v.dtype == torch.float32)} parameters "
          f"and statistics, input {list(x.shape)}, features {list(features.shape)}, "
          f"|features| max {features.abs().max():.4f}")


def names(model):
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parent.parent / "tests/fixtures/interop")
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    cnns = [
        ("resnet18_w4_imagenet", lambda: resnet("resnet18", 4, 3, "imagenet")),
        ("resnet18_w4_cifar", lambda: resnet("resnet18", 4, 3, "cifar")),
        ("resnet50_w4_imagenet", lambda: resnet("resnet50", 4, 3, "imagenet")),
        ("convnet4_w4", lambda: ConvNet4(3, 4)),
    ]
    for name, make in cnns:
        model = make()
        perturb_batchnorm(model, lambda: torch.randn(8, 3, 32, 32))
        save(args.out, name, model, torch.randn(2, 3, 32, 32))
    model = tiny_vit()
    perturb_vit(model)
    save(args.out, "vit_d12_depth2", model, torch.randn(2, 3, 16, 16))

    import timm
    import torchvision

    table = {}
    for arch in ("resnet18", "resnet50"):
        m = getattr(torchvision.models, arch)(weights=None)
        m.fc = nn.Identity()
        table[f"torchvision_{arch}"] = names(m)
    for arch in ("vit_tiny_patch16_224", "vit_small_patch16_224"):
        table[f"timm_{arch}"] = names(timm.create_model(arch, pretrained=False, num_classes=0))
    with open(args.out / "names.json", "w") as f:
        json.dump(table, f, separators=(",", ":"))
        f.write("\n")
    print("names.json:", ", ".join(f"{k} {len(v)}" for k, v in table.items()))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}")


if __name__ == "__main__":
    main()
