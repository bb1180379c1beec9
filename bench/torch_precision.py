"""The PyTorch peers' GPU settings and precision, as pretext's gpu-check compares them: fp32 with
TF32 allowed (cuBLAS and cuDNN) and cuDNN autotuning on, as pretext's `tch-cuda` runs; bf16 as
`torch.autocast(bfloat16)` (fp32 weights, bf16 compute)."""
import contextlib

import torch

CHOICES = ["fp32", "bf16"]


def add_argument(parser):
    parser.add_argument("--precision", choices=CHOICES, default="fp32",
                        help="fp32 (TF32 allowed on CUDA) or bf16 (autocast)")


def setup(device):
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device, precision):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
