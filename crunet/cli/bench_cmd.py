"""``crunet bench MODEL ...``: images/s of inference and training steps, beside the peers, in one process."""

from __future__ import annotations

import argparse
import sys

from crunet.bench import BenchConfig, format_table, run_bench, write_csv, write_json
from crunet.bench.runner import DTYPES, LAYOUTS, MODES, VARIANTS
from crunet.cli.main import CliError
from crunet.models import is_model


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="images/s (inference, training step) against the peers",
                              description="Time models in the same process as the peers (timm's resnext50_32x4d "
                                          "and resnet50 when timm is importable, our preresnext50_32x4d always).")
    p.add_argument("models", nargs="+", help="registered model names, or timm:NAME")
    p.add_argument("--mode", nargs="+", choices=MODES, default=["infer"])
    p.add_argument("--batch", nargs="+", type=int, default=[8])
    p.add_argument("--size", nargs="+", type=int, default=[224], help="input height = width")
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), default=["float32"], help="bf16 = autocast")
    p.add_argument("--layout", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    p.add_argument("--variant", nargs="+", choices=VARIANTS, default=["eager"],
                   help="deploy = crunet.deploy.deploy(model) (our models, inference; deploy-shared keeps shared "
                        "weights shared); compile = torch.compile")
    p.add_argument("--peers", nargs="*", default=None, help="peer models (default: the timm pair + ours); "
                                                            "give none to run only MODELS")
    p.add_argument("--ref", default=None, help="the ratio's reference model (default: the first peer)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: on CUDA the runs are synchronized "
                                                  "and each row has its peak GPU memory")
    p.add_argument("--no-memory", action="store_true", help="do not sample the resident memory")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    p.add_argument("--json", default=None, help="also write the rows and the run's metadata to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in args.models + (args.peers or []):
        if not name.startswith("timm:") and not is_model(name):
            raise CliError(f"unknown model {name!r}; `crunet models` lists them (timm's: timm:NAME)")
    try:
        cfg = BenchConfig(args.models, tuple(args.mode), tuple(args.batch), tuple(args.size), args.in_chans,
                          args.num_classes, tuple(args.dtype), tuple(args.layout), tuple(args.variant), args.peers,
                          args.ref, args.warmup, args.repeats, args.threads, not args.no_memory, args.device)
    except ValueError as err:
        msg = str(err)
        raise CliError(f"--{msg}" if msg.startswith("device ") else msg) from None
    rows, meta = run_bench(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(rows, meta, markdown=args.markdown))
    if args.csv:
        write_csv(rows, args.csv)
    if args.json:
        write_json(rows, meta, args.json)
    return 0
