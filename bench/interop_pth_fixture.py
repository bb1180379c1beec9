"""Writes tests/fixtures/interop/convnet4_w4_wrapped.pth: the ConvNet-4 fixture's state dict as a
training script would save it (a `state_dict` wrapper, DataParallel's `module.` and a `backbone.`
prefix, a classifier head), to test that `--init-from` reads PyTorch's pickle format and unwraps
it. Run after bench/interop_fixtures.py:  /work/venv-torch/bin/python bench/interop_pth_fixture.py
"""
import pathlib

import torch
from safetensors.torch import load_file

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "interop"

state = load_file(str(FIXTURES / "convnet4_w4.safetensors"))
wrapped = {f"module.backbone.{k}": v for k, v in state.items()}
torch.manual_seed(0)
wrapped["module.head.weight"] = torch.randn(10, 32)
wrapped["module.head.bias"] = torch.zeros(10)
torch.save({"state_dict": wrapped, "epoch": 3}, FIXTURES / "convnet4_w4_wrapped.pth")
print("wrote", FIXTURES / "convnet4_w4_wrapped.pth")
