"""What a trained preresnext_small keeps when converted as ``crunet train --init-from`` converts it, before any
training: into crunet_small (``cru``), into the CRU design of its own widths (``crunet factorize``'s, 288,810
parameters) and into thinner copies of itself (``norm``, ``size=F``); each one's test top-1, how often its top class
is the original's, and the relative error of its logits against the original's (crunet_small's own init, whose
logits are near zero, for scale).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/resnext_conversion.py CHECKPOINT [--images 256] [--test 10000]

float32 on Fashion-MNIST's test set (its first ``--test`` images); the conversions read the first ``--images``
training images of the fixed shuffle, as ``crunet train --init-from`` does. Prints one markdown row per network.
"""

from __future__ import annotations

import argparse

import torch

from crunet.data import eval_shard, open_split
from crunet.gbtd.convert import calibrate_norms, cru_design
from crunet.layers.complexity import count_parameters
from crunet.models import create_model
from crunet.study.grid import size_overrides
from crunet.train.config import TrainConfig
from crunet.train.init_from import calibration_images, cru_from_resnext, source_model, thin
from crunet.train.inputs import data_spec

THIN_FACTORS = (1.0, 0.82, 0.5)  # 0.82: the size=F nearest the CRU design of its own widths (283,387 against 288,810)


def logits(model: torch.nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of ``model`` (eval mode, float32) over ``loader``."""
    outs, labels = [], []
    with torch.no_grad():
        for x, y, _ in loader.iterate(eval_shard(len(loader), 250), 0, train=False):
            outs.append(model.float().eval()(x))
            labels.append(y)
    return torch.cat(outs), torch.cat(labels)


def row(label: str, model: torch.nn.Module, reference: torch.Tensor, test, errors: str = "-") -> str:
    """Test top-1, how often its top class is the original's, and ||logits - original's|| / ||original's||."""
    out, labels = logits(model, test)
    top1 = 100 * (out.argmax(1) == labels).float().mean()
    same = 100 * (out.argmax(1) == reference.argmax(1)).float().mean()
    error = (out - reference).norm() / reference.norm()
    return f"| {label} | {count_parameters(model):,} | {top1:.2f} | {same:.2f} | {error:.3f} | {errors} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--test", type=int, default=10000)
    args = parser.parse_args()
    source = source_model(args.checkpoint)
    spec = data_spec(TrainConfig(model=source.name, augment="none"), source)
    test = open_split(None, "val", spec).subset(args.test)
    images = calibration_images(open_split(None, "train", spec), args.images).double()
    size = {"num_classes": source.num_classes, "in_chans": source.in_chans}
    reference, _ = logits(source, test)
    print("| network | params | test top-1 (%) | same top class as the original (%) | logit error | "
          "kernel errors per unit (conv3; conv4) |\n|---|---:|---:|---:|---:|---|")
    print(row(f"{source.name} (the original)", source, reference, test), flush=True)
    print(row("crunet_small, its own init", create_model("crunet_small", **size), reference, test), flush=True)
    own_widths = {"stages": cru_design(source.cfg, [1, 2], None, 3).stages}
    for label, kwargs in (("crunet_small", {}), ("crunet_small at D' = D (crunet factorize's)", own_widths)):
        target = create_model("crunet_small", **size, **kwargs).double()
        groups = cru_from_resnext(source.double(), target, images)
        errors = "; ".join(", ".join(f"{e:.3f}" for e in g["unit_errors"]) for g in groups)
        print(row(f"{label}, cru", target, reference, test, errors), flush=True)
    for factor in THIN_FACTORS:
        target = create_model(source.name, **size, **size_overrides(source.name, factor)).double()
        thin(source.double(), target)
        calibrate_norms(target, images)
        print(row(f"{source.name} size={factor}, norm", target, reference, test), flush=True)


if __name__ == "__main__":
    main()
