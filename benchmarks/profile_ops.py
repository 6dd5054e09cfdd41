"""The top operators of one inference pass or training step (torch.profiler, self CPU time), to see what limits a
model. ``--deploy`` profiles ``crunet.deploy.deploy(model)``.
    .venv/bin/python benchmarks/profile_ops.py crunet_small --mode train --size 28 --in-chans 1 --num-classes 10
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from crunet.bench.peers import build
from crunet.bench.runner import Case, make_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--mode", choices=("infer", "train"), default="infer")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--in-chans", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--layout", choices=("contiguous", "channels_last"), default="channels_last")
    parser.add_argument("--deploy", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variant = "deploy" if args.deploy else "eager"
    case = Case(args.model, args.mode, args.batch, args.size, args.in_chans, "float32", args.layout, variant)
    step = make_step(case, build(args.model, args.num_classes, args.in_chans))
    step()
    step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
