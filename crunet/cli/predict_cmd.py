"""``crunet predict SOURCE IMAGES...``: top-k class names and probabilities of image files, to CSV or JSON."""

from __future__ import annotations

import argparse
import sys

from crunet.cli.main import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="classify image files with a checkpoint or weights file: top-k "
                              "classes and probabilities to CSV or JSON")
    p.add_argument("source", help="a crunet checkpoint (last.pt, best.pt) or a weights file (.safetensors)")
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--model", default=None, help="model name, for a safetensors file crunet did not write")
    p.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--crops", type=int, default=1, choices=(1, 10), help="1 centre crop or 10 crops, as crunet eval")
    p.add_argument("--resize", type=int, default=None, help="short side before cropping (default: size / the "
                   "model's crop_pct)")
    p.add_argument("--classes", default=None, help="a file of class names, one per line in label order (default: "
                   "those of the data the checkpoint was trained on, else the label numbers)")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="image-decoding processes (0: in this process)")
    p.add_argument("--out", default="predictions.csv", help="output file, .csv or .json (default predictions.csv)")
    p.add_argument("--format", default=None, choices=("csv", "json"), help="default: from --out's extension")
    p.add_argument("--progress", default="auto", choices=("auto", "bar", "lines", "none"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crunet.interop.predict import (
        batches_of,
        find_images,
        load_predictor,
        predict,
        read_class_file,
        write_predictions,
    )
    from crunet.train.progress import Progress

    if args.topk < 1 or args.batch_size < 1:
        raise CliError("--topk and --batch-size must be at least 1")
    classes = read_class_file(args.classes) if args.classes else None
    predictor = load_predictor(args.source, args.model, crops=args.crops, resize=args.resize, classes=classes,
                               use_ema=args.ema)
    files = find_images(args.images)
    bar = Progress(batches_of(files, args.batch_size), "predict", args.progress)
    try:
        results, skipped = predict(predictor, files, topk=args.topk, batch_size=args.batch_size,
                                   workers=args.workers, on_batch=lambda n, bad: bar.update(n, skipped=bad))
    finally:
        bar.close()
    path = write_predictions(results, skipped, args.out, args.format, {"source": predictor.source, **predictor.info})
    for _, reason in skipped:
        print(f"skipped: {reason}", file=sys.stderr)  # reason: "bad image FILE: why"
    print(f"{len(results)} images predicted, {len(skipped)} skipped; written to {path}")
    return 0 if results else 1
