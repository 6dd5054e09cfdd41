"""``crunet train``: arguments -> TrainConfig -> crunet.train.train. Works under ``torchrun -m crunet train``."""

from __future__ import annotations

import argparse
import dataclasses
import json

from crunet.cli.main import CliError
from crunet.data.sources import AUGMENTS, DECODES
from crunet.train.config import PRESETS, UNSET_DEFAULTS, TrainConfig
from crunet.train.recipes import names as recipe_names

HELP = {
    "model": "registered model name (crunet models lists them)",
    "data": "data folder: the 4 IDX files of Fashion-MNIST or MNIST, CIFAR-10 or CIFAR-100 (either published format: "
            "the .tar.gz as downloaded or its folder), train/ + val/ class folders, or Places365 file lists "
            "(default: /usr/share/datasets/fashion-mnist)",
    "out": "run directory (default runs/<model>-<date>; with --resume, the checkpoint's folder)",
    "batch_size": "images per process per micro-batch",
    "accum": "micro-batches per optimizer step (gradient accumulation)",
    "lr_ref_batch": "linear lr scaling: lr * global_batch / this (0: off)",
    "preset": "the paper's optimizer settings, for the options not given: " + "; ".join(
        f"{name}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        for name, values in PRESETS.items()),
    "recipe": "a paper's training recipe, for the options not given: " + ", ".join(recipe_names())
              + ", or an edited copy (a .toml file); crunet recipe show NAME prints its knobs and their sources",
    "mean": "input normalization mean, one value per channel (default: the recipe's, else the model's)",
    "std": "input normalization std, one value per channel (default: the recipe's, else the model's)",
    "crop_pct": "evaluation: short side = input size / this, then the centre crop (default: the model's)",
    "step_gammas": "with --schedule step: one lr factor per --step-epochs milestone (default: --gamma at each)",
    "lr": f"learning rate (default: the --preset's, else {UNSET_DEFAULTS['lr']})",
    "weight_decay": f"weight decay (default: the --preset's, else {UNSET_DEFAULTS['weight_decay']})",
    "schedule": f"cosine, step, plateau or constant (default: the --preset's, else {UNSET_DEFAULTS['schedule']})",
    "warmup_epochs": "linear warm-up length in epochs",
    "step_epochs": "epochs at which the step schedule multiplies the lr by --gamma",
    "amp": "mixed precision: bf16 (CPU or GPU) or fp16 (CUDA only)",
    "channels_last": "channels_last memory format (default on: faster on this CPU)",
    "ema_decay": "keep an EMA of the weights with this decay (0: off)",
    "clip_grad": "clip the gradient norm to this (0: off)",
    "subset": "train on the first N images of a fixed shuffle (quick runs)",
    "val_subset": "evaluate on N images (default: --subset's N if given, else all)",
    "augment": "; ".join(f"{name}: {what}" for name, what in AUGMENTS.items()) + " (default auto)",
    "img_size": "input size for training and evaluation alike (default: IDX images keep their own 28x28 when the "
                "model takes it, else the model config's size)",
    "pad": "with --augment light on IDX data: random shifts of up to N pixels (default 0: flips only)",
    "crops": "evaluation crops per image: 1 or 10",
    "in_chans": "the model's input channels (default: the data's); 3 on grey in-memory data (Fashion-MNIST, MNIST) "
                "repeats the grey channel, as a CIFAR look-alike of it holds it",
    "cifar100_labels": "CIFAR-100's labels: fine (100 classes, the default) or coarse (20 superclasses)",
    "decode": "where image files are decoded: " + "; ".join(f"{name}: {what}" for name, what in DECODES.items())
              + " (default cpu)",
    "strict_data": "fail on an unreadable image or an empty class folder instead of skipping and counting it",
    "model_kwargs": 'design overrides for create_model, as JSON: \'{"orth_lambda": 0}\'',
    "holdout": "validate on N images held out of the training set instead of the test set (hyper-parameter search)",
    "log_shared_grads": "log the mean gradient norm of each shared tensor and the orthogonality penalty per epoch",
    "resume": "continue a run: a checkpoint (last.pt), a run directory (its newest valid checkpoint), or auto "
              "(the newest valid checkpoint of --out; a fresh start if there is none: for pre-emptible jobs)",
    "checkpoint_every": "mid-epoch checkpoints every N steps (500), M minutes (30m), or both (500,30m); 0: epoch "
                        "ends only. SIGTERM/SIGINT/SIGUSR1 always write one at the next step boundary",
    "epochs": "training epochs",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum",
    "decay_norm_and_bias": "apply weight decay to BatchNorm weights and biases too",
    "gamma": "the step schedule's lr factor at each --step-epochs milestone",
    "plateau_patience": "with --schedule plateau: epochs without a better validation top-1 before the lr drops",
    "label_smoothing": "label smoothing of the cross-entropy",
    "workers": "data loading processes for image folders (in-memory data sets need none)",
    "seed": "random seed of the init, the shuffles and the augmentation",
    "sync_bn": "synchronize BatchNorm statistics across processes (torchrun)",
    "grad_checkpointing": "recompute activations in the backward pass (less memory, slower steps)",
    "log_every": "with --progress lines: a line every N steps",
    "tensorboard": "write TensorBoard logs to RUN_DIR/tb (when tensorboard is installed)",
    "plot": "draw the training curves, RUN_DIR/curves.png (when matplotlib is installed)",
    "device": "auto (CUDA when available, else the CPU), cpu, cuda or cuda:N",
    "progress": "auto (a bar on a terminal, lines otherwise), bar, lines, none",
    "compile": "torch.compile the model for the training steps (GPU: faster after the first, slow, step); "
               "checkpoints, EMA and evaluation use the eager module",
    "teacher": "distil from this teacher: a crunet checkpoint (RUN_DIR/best.pt) or safetensors file of the same "
               "classes; it runs frozen, in eval mode, on the same batches (default: none)",
    "kd_temperature": "distillation temperature T: the soft term is KL(teacher/T || student/T) * T^2",
    "kd_weight": "the soft term's weight w: loss = (1 - w) * label loss + w * soft term",
    "init_from": "start from this trained crunet checkpoint converted into --model (its DSFB or CRU design, or a "
                 "thinner copy): crunet compress",
    "init_method": "with --init-from: svd or data (a ResNet into its DSFB design: the bases fitted to the weights, or "
                   "to the outputs on --init-images images), cru (a pre-activation ResNeXt into its CRU design, "
                   "preresnext_small -> crunet_small: the collective factorization), norm (a thinner copy: the "
                   "filters of largest norm)",
    "init_images": "with --init-from: training images for the BN calibration and the data-aware bases",
}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model (default: crunet_small on Fashion-MNIST)",
                              description="Train a model. With no arguments: crunet_small on Fashion-MNIST. "
                                          "A --recipe fills the options not given; the defaults below apply to "
                                          "the options neither names.",
                              argument_default=argparse.SUPPRESS)  # only the options given reach TrainConfig.given
    add_config_options(p)
    p.set_defaults(func=run)


def add_config_options(p: argparse.ArgumentParser, skip: tuple[str, ...] = (),
                       own_help: dict[str, str] | None = None) -> None:
    """Every TrainConfig field as an option (``crunet compress`` takes them too, less ``skip``, with ``own_help``
    where its default differs)."""
    helps = {**HELP, **(own_help or {})}
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text = with_default(helps.get(f.name), default)
        if isinstance(default, bool) or f.name == "channels_last":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        elif f.name in ("step_epochs", "step_gammas", "mean", "std"):
            p.add_argument(flag, type=int if f.name == "step_epochs" else float, nargs="+", help=text)
        elif f.name == "model_kwargs":
            p.add_argument(flag, type=_json_object, metavar="JSON", help=text)
        else:
            kind = {"lr": float, "momentum": float, "weight_decay": float, "warmup_epochs": float, "gamma": float,
                    "label_smoothing": float, "ema_decay": float, "clip_grad": float, "kd_temperature": float,
                    "kd_weight": float, "crop_pct": float}.get(f.name)
            kind = kind or (int if isinstance(default, int) or f.name in ("img_size", "in_chans") else str)
            p.add_argument(flag, type=kind, help=text)


def with_default(text: str | None, default) -> str | None:
    """``text`` with the option's default appended, unless the text already says it or there is none to say
    (options are parsed with ``argparse.SUPPRESS``, so argparse cannot show them)."""
    if "default" in (text or "") or default is None or default in ({}, []):
        return text
    shown = ("on" if default else "off") if isinstance(default, bool) else \
        " ".join(map(str, default)) if isinstance(default, list) else default
    return f"{text} (default {shown})" if text else f"default {shown}"


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"orth_lambda\": 0}}', got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from crunet.train.steps import NonFiniteLossError
    from crunet.train.trainer import train

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig.given(**{k: v for k, v in vars(args).items() if k in names})
    try:
        train(cfg)
    except NonFiniteLossError as err:
        raise CliError(str(err)) from None
    return 0
