"""``crunet export --checkpoint C --format safetensors|onnx|torchscript --out F``: weights for other tools.

C is a ``crunet train`` checkpoint (read with ``weights_only=True``) or a safetensors file (``--model NAME`` when
crunet did not write it). Nothing in either is executed.
"""

from __future__ import annotations

import argparse

from crunet.cli.main import CliError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a checkpoint as safetensors, ONNX or TorchScript")
    p.add_argument("--checkpoint", required=True, help="a crunet train checkpoint (last.pt, best.pt) or .safetensors")
    p.add_argument("--format", required=True, choices=("safetensors", "onnx", "torchscript"))
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--model", default=None, help="registered model name, for a safetensors file crunet did not write")
    p.add_argument("--ema", action="store_true", help="export the checkpoint's EMA weights")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="example input size for onnx/torchscript (default: the model's pretrained_cfg input_size)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (17 or newer)")
    p.add_argument("--no-check", action="store_true", help="skip comparing the ONNX file with PyTorch in onnxruntime")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crunet.interop.export import export_onnx, export_torchscript, onnx_difference
    from crunet.interop.weights import read_weights, save_weights

    weights = read_weights(args.checkpoint, args.model, use_ema=args.ema)
    model = weights.build()
    size = tuple(args.input_size) if args.input_size else None
    try:
        if args.format == "safetensors":
            out = save_weights(model, args.out, extra=weights.provenance())
        elif args.format == "onnx":
            out = export_onnx(model, args.out, size, args.opset)
        else:
            out = export_torchscript(model, args.out, size)
    except ImportError as err:
        raise CliError(str(err)) from err
    print(f"{model.name} ({sum(p.numel() for p in model.parameters()):,} parameters) -> {out} ({args.format})")
    if args.format == "onnx" and not args.no_check:
        try:
            diff, scale = onnx_difference(model, out, input_size=size)
        except ImportError as err:
            raise CliError(f"{err}; or pass --no-check") from err
        print(f"onnxruntime vs PyTorch on a random batch of 3: max |difference| = {diff:.2e} "
              f"(outputs up to {scale:.3g})")
        tolerance = 1e-4 * max(1.0, scale)  # 1e-4, relative for outputs beyond 1 (float32 rounding grows with them)
        if diff > tolerance:
            raise CliError(f"the ONNX file differs from PyTorch by {diff:.2e} (> {tolerance:.1e})")
    return 0
