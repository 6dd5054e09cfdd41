"""What a trained ResNet-32 keeps when converted, before any training: each sharing group's
relative errors and the converted network's test top-1, for the DSFB designs at their published ranks (svd and
data-aware bases) and for the thinned ResNet-32 at DSFB S16U1's parameters (filters of largest norm).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compress_conversion.py CHECKPOINT [--images 256] [--test 10000]
                                                                          [--out results/compress_conversion.md]

Everything is measured in float32 on Fashion-MNIST's test set (its first ``--test`` images); the calibration and the
data-aware bases use the first ``--images`` training images of the fixed shuffle, as ``crunet compress`` does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from crunet.data import eval_shard, open_split
from crunet.gbtd.convert import calibrate_norms
from crunet.gbtd.dsfb_convert import dsfb_from_resnet
from crunet.gbtd.thin import thin_from_resnet
from crunet.layers.complexity import count_parameters
from crunet.models import create_model
from crunet.train.config import TrainConfig
from crunet.train.evaluate import evaluate, finish_eval
from crunet.train.init_from import calibration_images, source_model
from crunet.train.inputs import data_spec

TARGETS = (("dsfb_resnet32_s16u1", "svd"), ("dsfb_resnet32_s16u1", "data"), ("dsfb_resnet32_s16u1_double", "svd"),
           ("dsfb_resnet32_s16u1_double", "data"), ("dsfb_resnet32_s8u1", "data"))
THIN = {"widths": (10, 21, 42)}  # the compress grid's thin ResNet-32 (size=0.425)


def top1(model: torch.nn.Module, loader) -> float:
    sums = evaluate(model.eval(), loader.iterate(eval_shard(len(loader), 250), 0, train=False),
                    device=torch.device("cpu"))
    return finish_eval(sums)["top1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--out", default="results/compress_conversion.md")
    args = parser.parse_args()
    source = source_model(args.checkpoint)
    cfg = TrainConfig(model=source.name, augment="none")
    spec = data_spec(cfg, source)
    test = open_split(None, "val", spec).subset(args.test)
    images = calibration_images(open_split(None, "train", spec), args.images).double()
    lines = ["# Converting a trained ResNet-32, before any training\n",
             f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compress_conversion.py {args.checkpoint} --images "
             f"{args.images} --test {args.test}` ({time.strftime('%Y-%m-%d')}; float32, Fashion-MNIST test set, "
             f"first {len(test)} images; {len(images)} calibration images).\n",
             "| network | method | params | test top-1 (%) | relative weight error per stage (bank) | "
             "relative output error per stage (bank) |", "|---|---|---:|---:|---|---|"]
    original = top1(source, test)
    lines.append(f"| {source.name} (the original) | - | {count_parameters(source):,} | {original:.2f} | - | - |")
    source.double()
    for name, method in TARGETS:
        target = create_model(name, num_classes=source.num_classes, in_chans=source.in_chans).double()
        groups = dsfb_from_resnet(source, target, method, images)
        weight = ", ".join(f"{g.weight_error:.3f}" for g in groups)
        output = ", ".join(f"{g.output_error:.3f}" for g in groups)
        lines.append(f"| {name} | {method} | {count_parameters(target):,} | {top1(target.float(), test):.2f} | "
                     f"{weight} | {output} |")
        print(lines[-1], flush=True)
    thin = create_model(source.name, num_classes=source.num_classes, in_chans=source.in_chans, **THIN).double()
    thin_from_resnet(source, thin)
    calibrate_norms(thin, images)
    lines.append(f"| {source.name} widths {THIN['widths']} | norm | {count_parameters(thin):,} | "
                 f"{top1(thin.float(), test):.2f} | - | - |")
    print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
