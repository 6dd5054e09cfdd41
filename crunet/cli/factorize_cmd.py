"""``crunet factorize``: turn chosen stages of a trained unshared model into CRU stages by collective factorization.

Input: a ``crunet train`` checkpoint (a torch file holding ``model_name`` and the ``model`` state_dict), or a
safetensors state_dict with ``--model NAME`` (classes and input channels are read from the weights). Output: a
safetensors file with the CRU model's design in its metadata, loadable with ``crunet.gbtd.saving.load_model``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from crunet.cli.main import CliError
from crunet.gbtd.convert import factorize_model
from crunet.gbtd.saving import save_model
from crunet.models import create_model, is_model


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("factorize", help="unshared model -> CRU model by collective tensor factorization")
    p.add_argument("--checkpoint", required=True, help="crunet train checkpoint, or safetensors weights with --model")
    p.add_argument("--model", help="model name of safetensors weights (a train checkpoint names its own)")
    p.add_argument("--stages", required=True, help="comma-separated stages to share, e.g. conv4 or conv3,conv4")
    p.add_argument("--groups", type=int, default=None, help="R of the CRU stages (default: one per channel)")
    p.add_argument("--share-every", type=int, default=None, help="units per sharing group (default: whole stage)")
    p.add_argument("--iterations", type=int, default=100, help="maximum ALS sweeps per sharing group")
    p.add_argument("--restarts", type=int, default=2, help="extra ALS runs from random starts; the best is kept")
    p.add_argument("--out", required=True, help="where to write the CRU model (.safetensors)")
    p.set_defaults(func=run)


def read_weights(path: Path, model_name: str | None) -> tuple[str, dict[str, torch.Tensor]]:
    if not path.is_file():
        raise CliError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        if not model_name:
            raise CliError("safetensors weights do not name their model: pass --model NAME")
        return model_name, load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a foreign file
        raise CliError(f"{path} is neither a crunet train checkpoint nor safetensors: {str(err)[:120]}") from err
    if not isinstance(state, dict) or "model" not in state or "model_name" not in state:
        raise CliError(f"{path} is not a crunet train checkpoint (no model / model_name)")
    return model_name or state["model_name"], state["model"]


def build_model(name: str, weights: dict[str, torch.Tensor]):
    if not is_model(name):
        raise CliError(f"unknown model {name!r}; `crunet models` lists them")
    if "head.fc.weight" not in weights or "stem.0.weight" not in weights:
        raise CliError(f"these weights are not a {name} (no head.fc.weight / stem.0.weight)")
    num_classes, in_chans = weights["head.fc.weight"].shape[0], weights["stem.0.weight"].shape[1]
    model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CliError(f"these weights do not fit {name}: {str(err).splitlines()[0]}") from err
    return model.eval()


def run(args: argparse.Namespace) -> int:
    name, weights = read_weights(Path(args.checkpoint), args.model)
    model = build_model(name, weights)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    new, report = factorize_model(model, stages, args.groups, args.share_every, args.iterations, args.restarts)
    save_model(new, args.out)
    print(f"{name}: {report.params_before:,} params -> {new.name}: {report.params_after:,} params "
          f"({report.params_after / report.params_before:.1%})")
    for g in report.groups:
        errors = ", ".join(f"{e:.3f}" for e in g.errors.tolist())
        print(f"  {g.stage} units {g.units[0] + 1}-{g.units[-1] + 1}: relative reconstruction error per unit "
              f"[{errors}] after {len(g.factors.total_errors) - 1} ALS sweeps (start {g.factors.total_errors[0]:.3f},"
              f" end {g.factors.total_errors[-1]:.3f})")
    print(f"wrote {args.out}: crunet.gbtd.saving.load_model() reads it; fine-tune it before use")
    return 0
