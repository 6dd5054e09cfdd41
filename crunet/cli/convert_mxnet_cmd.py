"""``crunet convert-mxnet PREFIX --model crunet56|crunet116 --out W.safetensors``: the authors' released MXNet
checkpoint (``PREFIX-symbol.json`` + ``PREFIX-0000.params``) as a crunet weights file, read with numpy alone."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("convert-mxnet", help="convert the released MXNet CRU-Net weights to safetensors")
    p.add_argument("prefix", help="checkpoint prefix: reads PREFIX-symbol.json and PREFIX-0000.params")
    p.add_argument("--model", required=True, choices=("crunet56", "crunet116", "crunet56_136x1d"),
                   help="the model the checkpoint holds")
    p.add_argument("--out", required=True, help="the safetensors file to write")
    p.add_argument("--epoch", type=int, default=0, help="the epoch number in the .params name (default 0: -0000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crunet.interop.mxnet_weights import convert_checkpoint
    from crunet.interop.weights import save_weights

    model = convert_checkpoint(args.prefix, args.model, args.epoch)
    cfg = model.pretrained_cfg
    out = save_weights(model, args.out, extra={"source": f"mxnet:{args.prefix}", "mean": repr(cfg["mean"]),
                                               "std": repr(cfg["std"])})
    print(f"{args.model} ({model.num_classes} classes, {sum(p.numel() for p in model.parameters()):,} parameters) "
          f"-> {out}\nload it with crunet.interop.weights.load_weights({str(out)!r}); its input is RGB in [0, 1] "
          f"normalized with mean {tuple(round(m, 4) for m in cfg['mean'])}, std {round(cfg['std'][0], 4)} "
          f"(= (RGB*255 - [124, 117, 104]) * 0.0167, the released preprocessing)")
    return 0
