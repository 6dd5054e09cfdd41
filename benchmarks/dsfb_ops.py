"""Where a DSFB training step loses time: one SharedBasisConv (forward + backward) against the plain 3x3 + BN it
replaces, per stage shape of the CIFAR ResNet-32 at 28x28, batch 128, channels_last; and the BatchNorm kernels at the
basis widths (16 shared + 1 unique = 17 channels, not a multiple of the vector width).

Timed with ONE thread by its own CPU time (``time.thread_time``, the minimum of the runs): on a shared machine that
is far steadier than wall time, and these are per-op costs, not the 2-thread speed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dsfb_ops.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crunet.layers.shared_basis import SharedBasis, SharedBasisConv

CL = torch.channels_last


def cpu_ms(fn: Callable[[], None], runs: int = 7) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return min(times) * 1e3


def train_step(module: nn.Module, x: Tensor) -> Callable[[], None]:
    def run() -> None:
        module(x).sum().backward()
    return run


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| stage shape | 3x3 + BN (ResNet) | SharedBasisConv, reference path | SharedBasisConv, this path |")
    print("|---|---:|---:|---:|")
    for chs, hw, shared, unique in ((16, 28, 16, 1), (32, 14, 32, 2), (64, 7, 64, 4)):
        x = torch.randn(128, chs, hw, hw).contiguous(memory_format=CL).requires_grad_()
        plain = nn.Sequential(nn.Conv2d(chs, chs, 3, 1, 1, bias=False), nn.BatchNorm2d(chs)).to(memory_format=CL)
        owner = SharedBasis(chs, shared)
        conv = SharedBasisConv(chs, chs, unique, owner).to(memory_format=CL)
        holder = nn.ModuleList([owner, conv]).train()

        def ref(conv: SharedBasisConv = holder[1], x: Tensor = x) -> None:
            conv._reference_forward(x).sum().backward()
        print(f"| {chs}x{hw}x{hw}, basis {shared}+{unique} | {cpu_ms(train_step(plain, x)):.1f} ms | "
              f"{cpu_ms(ref):.1f} ms | {cpu_ms(train_step(conv, x)):.1f} ms |")
    print()
    print("| BN channels (channels_last, batch 128) | forward ms | backward ms |")
    print("|---|---:|---:|")
    for chs, hw in ((16, 28), (17, 28), (32, 14), (34, 14), (64, 7), (68, 7)):
        b = torch.randn(128, chs, hw, hw).contiguous(memory_format=CL)
        g = torch.randn_like(b)
        w, z, o = torch.ones(chs), torch.zeros(chs), torch.ones(chs)
        fwd = cpu_ms(lambda b=b, w=w, z=z: F.batch_norm(b, None, None, w, z, True))
        bwd = cpu_ms(lambda b=b, g=g, w=w, z=z, o=o: torch.ops.aten.native_batch_norm_backward(
            g, b, w, None, None, z, o, True, 1e-5, [True, True, True]))
        print(f"| {chs} at {hw}x{hw} | {fwd:.2f} | {bwd:.2f} |")


if __name__ == "__main__":
    main()
