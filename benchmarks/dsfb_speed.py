"""DSFB training and deployed-inference speed against the unshared counterpart, in one process
(benchmarks/RESULTS.md: "DSFB at the speed of its arithmetic").

Every case is built once, warmed up, then timed in interleaved rounds (order rotated each round). Each run records
wall time and the process's CPU time: on a loaded machine the CPU time is the steadier of the two (it does not count
the time the threads wait for a core), so both ratios are printed. ``ref-path`` is the DSFB model with every
``SharedBasisConv`` running its reference forward (the two-convolution path this issue replaced).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dsfb_speed.py train --batch 128 --size 28 --in-chans 1 \\
        --num-classes 10 dsfb_resnet32_s16u1 resnet32_cifar
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dsfb_speed.py infer --batch 8 --size 32 deploy:dsfb_resnet32_s16u1 \\
        deploy:resnet32_cifar
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import crunet
from crunet.deploy import deploy
from crunet.layers.shared_basis import SharedBasisConv


def build(spec: str, args: argparse.Namespace) -> Callable[[], None]:
    """``name``, ``ref-path:name`` (training through the reference forward), ``deploy:name`` or
    ``deploy-shared:name`` (inference of ``deploy(unshare=False)``)."""
    kind, _, name = spec.rpartition(":")
    model = crunet.create_model(name, num_classes=args.num_classes, in_chans=args.in_chans)
    fmt = torch.channels_last
    x = torch.randn(args.batch, args.in_chans, args.size, args.size).contiguous(memory_format=fmt)
    if kind == "ref-path":
        for m in model.modules():
            if isinstance(m, SharedBasisConv):
                m.forward = m._reference_forward
    if args.mode == "infer":
        model.eval()
        if kind.startswith("deploy"):
            model = deploy(model, unshare=kind == "deploy", layout="channels_last")
        else:
            model.to(memory_format=fmt)

        def infer() -> None:
            with torch.inference_mode():
                model(x)
        return infer
    model.train().to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    y = torch.randint(0, args.num_classes, (args.batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("train", "infer"))
    parser.add_argument("models", nargs="+", help="the first is compared with the others' (ratio of medians)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = {spec: build(spec, args) for spec in args.models}
    wall: dict[str, list[float]] = {s: [] for s in steps}
    cpu: dict[str, list[float]] = {s: [] for s in steps}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    load_before = os.getloadavg()
    order = list(steps)
    for r in range(args.repeats):
        for spec in order[r % len(order):] + order[: r % len(order)]:
            w0, c0 = time.perf_counter(), time.process_time()
            steps[spec]()
            wall[spec].append(time.perf_counter() - w0)
            cpu[spec].append(time.process_time() - c0)
    load_after = os.getloadavg()
    print(f"torch {torch.__version__}, {args.threads} threads, {args.mode} batch {args.batch} "
          f"{args.in_chans}x{args.size}x{args.size}, {args.repeats} interleaved runs after {args.warmup} warm-up; "
          f"load average before {load_before[0]:.2f} {load_before[1]:.2f}, after {load_after[0]:.2f} "
          f"{load_after[1]:.2f}")
    print("| case | img/s (wall, median) | wall min-max ms | CPU ms (median) | CPU min-max ms | "
          "speed vs first (wall) | speed vs first (CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    first = order[0]
    for spec in order:
        mw, mc = statistics.median(wall[spec]), statistics.median(cpu[spec])
        rw = statistics.median(wall[first]) / mw
        rc = statistics.median(cpu[first]) / mc
        print(f"| {spec} | {args.batch / mw:.1f} | {min(wall[spec]) * 1e3:.0f}-{max(wall[spec]) * 1e3:.0f} | "
              f"{mc * 1e3:.0f} | {min(cpu[spec]) * 1e3:.0f}-{max(cpu[spec]) * 1e3:.0f} | {rw:.2f} | {rc:.2f} |")


if __name__ == "__main__":
    main()
