"""``crunet compress CHECKPOINT --to MODEL --epochs K``: a trained network converted into a shared (DSFB from a
ResNet, CRU from a ResNeXt) or thinner design, then fine-tuned with the original as its teacher; a normal run
directory (``crunet.train.init_from``)."""

from __future__ import annotations

import argparse
import dataclasses

from crunet.cli.main import CliError
from crunet.cli.train_cmd import add_config_options
from crunet.train.config import TrainConfig
from crunet.train.init_from import COMPRESS_LR

OWN = ("model", "init_from", "init_method", "teacher")  # set by the command's own arguments


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compress", help="convert a trained network into a shared design and fine-tune it with the original as teacher",
        description="Convert a trained ResNet into its DSFB design, a trained pre-activation ResNeXt into its CRU "
                    "design, or either into a thinner copy of itself, and fine-tune the result "
                    "by distillation from the original; writes a normal run directory (RUN_DIR/init.json: the "
                    "conversion's errors and its accuracy before training). Resume it with crunet train --resume.",
        argument_default=argparse.SUPPRESS)
    p.add_argument("checkpoint", help="the trained network: a crunet training checkpoint (RUN_DIR/best.pt)")
    p.add_argument("--to", required=True, metavar="MODEL",
                   help="the design to convert into: the checkpoint's DSFB design (resnet32_cifar -> "
                        "dsfb_resnet32_s16u1) or CRU design (preresnext_small -> crunet_small), or its own model "
                        "narrowed with --model-kwargs (resnet32_cifar: '{\"widths\": [...]}')")
    p.add_argument("--method", help="svd or data (DSFB bases fitted to the weights, or to the outputs on "
                                    "--init-images training images; default svd), cru (the collective factorization "
                                    "into CRU stages; their default), norm (thinner copies: the filters of largest "
                                    "norm; their default)")
    p.add_argument("--no-teacher", action="store_true", help="fine-tune on the labels alone (no distillation)")
    add_config_options(p, skip=OWN, own_help={"lr": f"learning rate (default {COMPRESS_LR}: a converted network "
                                                      "fine-tunes, a quarter of the from-scratch rate)"})
    p.set_defaults(func=run, lr=COMPRESS_LR)


def run(args: argparse.Namespace) -> int:
    from crunet.train.init_from import compress_config
    from crunet.train.steps import NonFiniteLossError
    from crunet.train.trainer import train

    names = {f.name for f in dataclasses.fields(TrainConfig)} - set(OWN)
    options = {k: v for k, v in vars(args).items() if k in names}
    cfg = compress_config(args.checkpoint, args.to, getattr(args, "method", None),
                          not getattr(args, "no_teacher", False), **options)
    try:
        train(cfg)
    except NonFiniteLossError as err:
        raise CliError(str(err)) from None
    return 0
