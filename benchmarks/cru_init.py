"""A trained ResNeXt factorized into a CRU network (``factorize_model``, conv3 and conv4, R = D as CRU-Net): test
top-1 before any fine-tuning, with and without calibration images, beside the original with the middle ReLU of those
stages' units made the identity (the one a CRU unit cannot keep, whatever the factorization).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cru_init.py CHECKPOINT [--images 256] [--test 10000]

Run it with ``PYTHONPATH`` pointing at an older crunet (``git archive COMMIT crunet | tar -x -C DIR``) to measure that
version's initialization on the same network. Prints one markdown row per variant.
"""

from __future__ import annotations

import argparse
import copy

import torch

import crunet.gbtd.convert as convert
from crunet.data import eval_shard, open_split
from crunet.train.config import TrainConfig
from crunet.train.evaluate import evaluate, finish_eval
from crunet.train.init_from import calibration_images, source_model
from crunet.train.inputs import data_spec


def top1(model: torch.nn.Module, loader) -> float:
    sums = evaluate(model.eval(), loader.iterate(eval_shard(len(loader), 250), 0, train=False),
                    device=torch.device("cpu"))
    return finish_eval(sums)["top1"]


def linear_middle(model: torch.nn.Module, stages: list[str]) -> torch.nn.Module:
    """A copy of ``model`` whose units in ``stages`` skip the ReLU after their second BN: the one ReLU a CRU unit has
    no place for (its shared 1x1 and kxk run back to back). What losing it costs alone, with no factorization error."""
    model = copy.deepcopy(model)
    for i in (convert.stage_index(model, s) for s in stages):
        for unit in model.stages[i].units:
            unit.conv2.norm.act = torch.nn.Identity()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--stages", default="conv3,conv4")
    parser.add_argument("--weighted", action="store_true", help="only the factorization weighted by the inputs")
    args = parser.parse_args()
    source = source_model(args.checkpoint)
    spec = data_spec(TrainConfig(model=source.name, augment="none"), source)
    test = open_split(None, "val", spec).subset(args.test)
    images = calibration_images(open_split(None, "train", spec), args.images).double()
    print(f"| {source.name} (the original) | - | {top1(source, test):.2f} |", flush=True)
    stages = args.stages.split(",")
    print(f"| the original, its middle ReLU the identity in {', '.join(stages)} (no factorization) | - | "
          f"{top1(linear_middle(source, stages), test):.2f} |", flush=True)
    variants = [("as is", {}), ("calibrated", {"calibration": images})]
    if args.weighted:
        variants = [("calibrated, weighted by inputs", {"calibration": images, "weight_by_inputs": True})]
    for label, options in variants:
        new, report = convert.factorize_model(source.double(), stages, max_iter=30, **options)
        errors = torch.cat([g.errors for g in report.groups])
        print(f"| factorized ({convert.__file__}), {label} | "
              f"{float(errors.mean()):.3f} | {top1(new.float(), test):.2f} |", flush=True)


if __name__ == "__main__":
    main()
