"""``crunet gbtd MODEL``: each stage as a Generalized Block Term Decomposition, and how much its factors compress."""

from __future__ import annotations

import argparse

from crunet.cli.main import CliError
from crunet.gbtd.summary import stage_summaries
from crunet.models import create_model, is_model


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("gbtd", help="per stage: R, d3*, d4*, what is shared, factors vs dense operator")
    p.add_argument("model", help="a registered model name (crunet models lists them)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not is_model(args.model):
        raise CliError(f"unknown model {args.model!r}; `crunet models` lists them")
    summaries = stage_summaries(create_model(args.model).eval())  # before printing: ValueError if not GBTD
    print(f"{args.model}: residual functions as GBTD, X* = sum_r G_r x3 A3_r x4 A4_r (BN absorbed, linear view)")
    print(f"{'stage':<7}{'units':>6}{'R':>7}{'d3*':>6}{'d4*':>6}  {'shared':<32}{'factors':>12}{'dense X*':>14}"
          f"{'ratio':>8}")
    for s in summaries:
        terms = "/".join(str(r) for r in s.terms)
        d3s = "/".join(str(r[0]) for r in s.ranks)
        d4s = "/".join(str(r[1]) for r in s.ranks)
        print(f"{s.name:<7}{s.units:>6}{terms:>7}{d3s:>6}{d4s:>6}  {s.shared:<32}{s.factor_params:>12,}"
              f"{s.dense_params:>14,}{s.compression:>7.1f}x")
    return 0
