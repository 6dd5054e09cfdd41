"""``crunet models [PATTERN]``: the registered models with their size and cost."""

from __future__ import annotations

import argparse

from crunet.analysis.model_info import model_info
from crunet.cli.main import CliError
from crunet.models import list_models


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("models", help="list registered models: parameters, MiB, MACs")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern, e.g. 'crunet*'")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--in-chans", type=int, default=3)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise CliError(f"no model matches {args.pattern!r}; `crunet models` lists them all")
    width = max(len(n) for n in names) + 2
    print(f"{'model':<{width}}{'params':>14}{'MiB':>9}{'GMACs':>9}  input")
    for name in names:
        info = model_info(name, args.num_classes, args.in_chans)
        size = "x".join(map(str, info.input_size))
        print(f"{name:<{width}}{info.params:>14,}{info.mib:>9.1f}{info.macs / 1e9:>9.3f}  {size}")
    return 0
