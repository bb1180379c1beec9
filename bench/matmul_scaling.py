#!/usr/bin/env python3
"""What two threads can give on this machine: a large fp32 matrix product in PyTorch at 1 and
2 threads, interleaved, REPEAT rounds. Prints GFLOP/s and the 2-thread speed-up (the ceiling
against which a training step's thread scaling is read). Usage: matmul_scaling.py [N] [REPEAT]"""
import sys
import time

import torch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
torch.set_num_interop_threads(1)
a, b = torch.randn(n, n), torch.randn(n, n)


def gflops(threads):
    torch.set_num_threads(threads)
    a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


rows = [(gflops(1), gflops(2)) for _ in range(repeat)]
for one, two in rows:
    print(f"matmul {n}x{n} fp32: 1 thread {one:.1f} GFLOP/s, 2 threads {two:.1f} GFLOP/s, {two / one:.2f}x")
