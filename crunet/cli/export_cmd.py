"""``crunet export --checkpoint C --format safetensors|onnx|torchscript --out F``: weights for other tools.

C is a ``crunet train`` checkpoint (read with ``weights_only=True``) or a safetensors file (``--model NAME`` when
crunet did not write it). Nothing in either is executed. ONNX: the small graph (sharing kept) or the fast one
(sharing unrolled), float32 or int8 (``--int8``: calibrated on training images).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from crunet.cli.main import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a checkpoint as safetensors, ONNX (float32 or int8) or "
                                             "TorchScript")
    p.add_argument("--checkpoint", required=True, help="a crunet train checkpoint (last.pt, best.pt) or .safetensors")
    p.add_argument("--format", required=True, choices=("safetensors", "onnx", "torchscript"))
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--model", default=None, help="registered model name, for a safetensors file crunet did not write")
    p.add_argument("--ema", action="store_true", help="export the checkpoint's EMA weights")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="input size for onnx/torchscript (default: the size the checkpoint trained at, else the "
                        "model's pretrained_cfg input_size); an ONNX file runs at this size only")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (17 or newer)")
    p.add_argument("--graph", default="small", choices=("small", "fast"),
                   help="onnx: small keeps each shared tensor once (BNs folded where that keeps it so); fast unrolls "
                        "sharing as crunet.deploy does (every BN folded, a copy of the shared tensors per use)")
    p.add_argument("--int8", action="store_true",
                   help="onnx: write an int8 file (onnxruntime static quantization, QDQ, int8 weights per channel), "
                        "calibrated on training images")
    p.add_argument("--calibration-data", default=None,
                   help="--int8: the training data to calibrate on (default: the data the checkpoint trained on)")
    p.add_argument("--calibration-images", type=int, default=256,
                   help="--int8: how many training images calibrate the activation ranges (a fixed draw)")
    p.add_argument("--no-check", action="store_true", help="skip comparing the ONNX file with PyTorch in onnxruntime")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crunet.interop.export import export_torchscript
    from crunet.interop.weights import read_weights, save_weights

    if args.int8 and args.format != "onnx":
        raise CliError("--int8 applies to --format onnx")
    if args.calibration_images < 1:
        raise CliError(f"--calibration-images must be 1 or more, got {args.calibration_images}")
    weights = read_weights(args.checkpoint, args.model, use_ema=args.ema)
    model = weights.build()
    trained = (weights.img_size, weights.img_size) if weights.img_size else None
    size = tuple(args.input_size) if args.input_size else trained
    params = sum(p.numel() for p in model.parameters())
    try:
        if args.format == "onnx":
            return _export_onnx(args, weights, model, size, params)
        out = (save_weights(model, args.out, extra=weights.provenance()) if args.format == "safetensors"
               else export_torchscript(model, args.out, size))
    except ImportError as err:
        raise CliError(str(err)) from err
    print(f"{model.name} ({params:,} parameters) -> {out} ({args.format})")
    return 0


def _export_onnx(args: argparse.Namespace, weights, model, size, params: int) -> int:
    from crunet.interop.export import GRAPHS, export_onnx

    metadata = _metadata(weights)
    calibration = _calibration_data(args, weights) if args.int8 else None
    if args.int8:  # before the export: a wrong kind of data is refused at once
        from crunet.interop.quantize import check_calibration_kind

        check_calibration_kind(calibration, metadata.get("data_kind"), model.name, model.in_chans)
    with tempfile.TemporaryDirectory(prefix="crunet-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx" if args.int8 else Path(args.out)
        export_onnx(model, fp32, size, args.opset, args.graph, metadata, weights.normalization)
        if not args.no_check:
            _check(model, fp32, size)
        out = Path(args.out)
        if args.int8:
            from crunet.interop.quantize import quantize_file

            fp32_bytes = fp32.stat().st_size
            quantize_file(fp32, out, calibration, args.calibration_images)
    nbytes = out.stat().st_size
    print(f"{model.name} ({params:,} parameters) -> {out}: ONNX, {args.graph} graph ({GRAPHS[args.graph]})")
    if args.int8:
        print(f"int8, calibrated on {args.calibration_images} images of {calibration or 'the default data'}: "
              f"{nbytes:,} bytes = {nbytes / params:.2f} x 1 byte per parameter (float32: {fp32_bytes:,} bytes)")
    else:
        print(f"float32: {nbytes:,} bytes = {nbytes / (4 * params):.2f} x 4 bytes per parameter")
    return 0


def _calibration_data(args: argparse.Namespace, weights) -> str | None:
    """--calibration-data, else the data the checkpoint trained on (None: the default Fashion-MNIST)."""
    if args.calibration_data:
        return args.calibration_data
    if weights.config is None:
        raise CliError(f"--int8 needs training images to calibrate on and {args.checkpoint} does not say what the "
                       f"model trained on: pass --calibration-data DATA")
    return weights.config.get("data")


def _metadata(weights) -> dict[str, str]:
    """What the ONNX file keeps of the run: class names, the data it trained on and its kind."""
    import json

    from crunet.data import detect_kind
    from crunet.errors import CrunetError

    meta = {"classes": json.dumps(list(weights.classes))} if weights.classes else {}
    if weights.config is not None:
        data = weights.config.get("data")
        meta["data"] = data or ""
        try:
            meta["data_kind"] = detect_kind(data)
        except CrunetError:  # trained on data this machine does not have: the kind stays unknown
            pass
    return meta


def _check(model, path: Path, size) -> None:
    from crunet.interop.export import onnx_difference

    try:
        diff, scale = onnx_difference(model, path, input_size=size)
    except ImportError as err:
        raise CliError(f"{err}; or pass --no-check") from err
    print(f"onnxruntime vs PyTorch on a random batch of 3: max |difference| = {diff:.2e} (outputs up to {scale:.3g})")
    tolerance = 1e-4 * max(1.0, scale)  # 1e-4, relative for outputs beyond 1 (float32 rounding grows with them)
    if diff > tolerance:
        raise CliError(f"the ONNX file differs from PyTorch by {diff:.2e} (> {tolerance:.1e})")
