"""``crunet eval CHECKPOINT``: top-1, top-5, loss, image count and images/s with 1 or 10 crops, printed and JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the trainer's imports stay lazy: crunet eval of an ONNX file does not need them
    from crunet.train.evaluate import EvalOptions


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint: top-1/top-5/loss with 1 or 10 crops")
    p.add_argument("checkpoint", help="a crunet checkpoint (last.pt, best.pt), a safetensors weights file (crunet "
                   "export, crunet factorize), or an ONNX file crunet export wrote (float32 or int8; run in "
                   "onnxruntime); each is fed at the input size and with the normalization it records")
    p.add_argument("--data", default=None, help="data folder (default: the one the checkpoint was trained on; a "
                   "weights file records none: Fashion-MNIST if its classes are Fashion-MNIST's, else give it)")
    p.add_argument("--crops", type=int, default=1, choices=(1, 10), help="1 centre crop or 10 crops")
    p.add_argument("--resize", type=int, default=None, help="short side before cropping (default: size / the "
                   "model's crop_pct, 256 for 224 at 0.875; Fashion-MNIST: the native 28)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--subset", type=int, default=0, help="evaluate the first N images of a fixed shuffle")
    p.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    p.add_argument("--amp", default="none", choices=("none", "bf16"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--strict-data", action="store_true")
    p.add_argument("--out", default=None, help="JSON file (default: eval-<crops>crop.json beside the checkpoint)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crunet.errors import ConfigError
    from crunet.train.evaluate import EvalOptions, evaluate_checkpoint

    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--subset", args.subset, 0),
                             ("--workers", args.workers, 0), ("--resize", args.resize, 8)):
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be an integer >= {low}, got {value}")

    if args.checkpoint.endswith(".onnx"):
        result = evaluate_onnx_file(args)
        print(json.dumps(result, indent=2))
        return 0
    from crunet.io.safetensors_file import is_safetensors

    options = EvalOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(EvalOptions)})
    if is_safetensors(args.checkpoint):
        print(json.dumps(evaluate_weights_file(args.checkpoint, options), indent=2))
        return 0
    result = evaluate_checkpoint(args.checkpoint, options)
    print(json.dumps(result, indent=2))
    return 0


def evaluate_weights_file(path: str, options: EvalOptions) -> dict:
    """A safetensors weights file on the evaluation split of ``--data``, fed at the input size and with the
    normalization its metadata records (the model's own where it records none); JSON beside it."""
    from pathlib import Path

    from crunet.cli.main import CliError
    from crunet.data.classes import FASHION_MNIST_CLASSES
    from crunet.interop.weights import read_weights
    from crunet.train.config import TrainConfig
    from crunet.train.evaluate import evaluate_as_trained

    if options.ema:
        raise CliError("--ema applies to training checkpoints; a weights file holds one set of weights")
    weights = read_weights(path)
    if options.data is None and weights.classes != list(FASHION_MNIST_CLASSES):
        raise CliError(f"{path} does not record the data it trained on: give it with --data")
    cfg = TrainConfig(model=weights.model_name, data=options.data, img_size=weights.img_size, **weights.normalization)
    out = Path(path).with_name(f"{Path(path).stem}-eval-{options.crops}crop.json")
    return evaluate_as_trained(weights.build(), cfg, options, {"weights": path, "model": weights.model_name}, out)


def evaluate_onnx_file(args: argparse.Namespace) -> dict:
    """An ONNX file on the evaluation split of ``--data`` (default: the data it trained on, from its metadata), fed
    by the data pipeline with the file's channels, size and normalization, as a checkpoint is; JSON beside it."""
    from pathlib import Path

    import torch

    from crunet.cli.main import CliError
    from crunet.data import check_labels, eval_shard, open_split
    from crunet.interop.onnx_file import OnnxClassifier
    from crunet.io.atomic import write_text_atomic
    from crunet.train.evaluate import evaluate, finish_eval

    if args.ema or args.amp != "none":
        raise CliError("--ema and --amp apply to checkpoints; an ONNX file holds one set of weights, in its own "
                       "precision")
    try:
        model = OnnxClassifier(args.checkpoint)
    except ImportError as err:
        raise CliError(str(err)) from err
    info = model.info
    spec = info.data_spec(crops=args.crops, workers=args.workers, strict=args.strict_data)
    spec.resize = args.resize
    data = args.data or info.data
    loader = open_split(data, "val", spec)
    loader = loader.subset(args.subset) if args.subset else loader
    first = next(loader.iterate([torch.arange(1)], 0, train=False))[0]
    info.check_batch(first, f"--data {data or '(default)'}")  # the images first: the more basic mistake
    classes = model.session.get_outputs()[0].shape[-1]
    if isinstance(classes, int):
        check_labels(loader, classes, "evaluation")
    sums = evaluate(model, loader.iterate(eval_shard(len(loader), args.batch_size), 0, train=False),
                    device=torch.device("cpu"))
    result = {"onnx": str(args.checkpoint), "model": info.model, "graph": info.graph,
              "precision": info.quantization or "float32", "data": data or "fashion-mnist", "crops": args.crops,
              **finish_eval(sums)}
    path = Path(args.out) if args.out else Path(args.checkpoint).with_name(
        f"{Path(args.checkpoint).stem}-eval-{args.crops}crop.json")
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
    result["json"] = str(path)
    return result
