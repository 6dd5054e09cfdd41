"""``crunet factorize``: turn chosen stages of a trained unshared model into CRU stages by collective factorization.

Input: a ``crunet train`` checkpoint (a torch file holding ``model_name`` and the ``model`` state_dict), or a
safetensors weights file (``--model NAME`` when it does not name its model). Output: a crunet weights file
(``crunet.interop.weights``) of the source model with its CRU stages as design overrides, and the source's class
names, input size and normalization: ``crunet eval``, ``predict``, ``export`` and ``load_weights`` read it as they
read any other. The conversion is not calibrated (``crunet compress`` calibrates it on training images and
fine-tunes it).
"""

from __future__ import annotations

import argparse

from crunet.gbtd.convert import factorize_model
from crunet.interop.weights import read_weights, save_weights


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("factorize", help="unshared model -> CRU model by collective tensor factorization")
    p.add_argument("--checkpoint", required=True, help="crunet train checkpoint, or safetensors weights with --model")
    p.add_argument("--model", help="model name of safetensors weights (a train checkpoint names its own)")
    p.add_argument("--stages", required=True, help="comma-separated stages to share, e.g. conv4 or conv3,conv4")
    p.add_argument("--groups", type=int, default=None, help="R of the CRU stages (default: one per channel)")
    p.add_argument("--share-every", type=int, default=None, help="units per sharing group (default: whole stage)")
    p.add_argument("--iterations", type=int, default=100, help="maximum ALS sweeps per sharing group")
    p.add_argument("--restarts", type=int, default=2, help="extra ALS runs from random starts; the best is kept")
    p.add_argument("--out", required=True, help="where to write the CRU model (a .safetensors weights file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    weights = read_weights(args.checkpoint, args.model)
    model = weights.build()
    name = model.name
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    new, report = factorize_model(model, stages, args.groups, args.share_every, args.iterations, args.restarts)
    # the CRU design is the source's with new stages: a registered name and overrides that rebuild it anywhere
    new.name, new.design_overrides = name, {**getattr(model, "design_overrides", {}), "stages": new.cfg.stages}
    save_weights(new, args.out, extra=weights.provenance())
    print(f"{name}: {report.params_before:,} params -> its CRU design: {report.params_after:,} params "
          f"({report.params_after / report.params_before:.1%})")
    for g in report.groups:
        errors = ", ".join(f"{e:.3f}" for e in g.errors.tolist())
        print(f"  {g.stage} units {g.units[0] + 1}-{g.units[-1] + 1}: relative reconstruction error per unit "
              f"[{errors}] after {len(g.factors.total_errors) - 1} ALS sweeps (start {g.factors.total_errors[0]:.3f},"
              f" end {g.factors.total_errors[-1]:.3f})")
    print(f"wrote {args.out} ({name} with CRU stages: crunet eval, predict and export read it). It is not "
          f"calibrated nor fine-tuned: crunet compress does both")
    return 0
