"""Collective tensor factorization on Fashion-MNIST: a trained ResNeXt turned into a CRU network, vs CRU from scratch.

    .venv/bin/python benchmarks/gbtd_factorize.py [--epochs 2] [--stages conv3,conv4] [--subset 0]
                                                  [--out benchmarks/gbtd_factorize.md]

1. train ``preresnext_small`` for ``--epochs`` epochs (the original);
2. ``factorize_model`` its ``--stages`` into CRU stages (shared A3 and G per stage, R = D as CRU-Net);
3. evaluate the factorized model as it is, then after one epoch of fine-tuning (lr ``--finetune-lr``);
4. train the same CRU design from scratch for ``--epochs`` + 1 epochs (the same total number of epochs).
Everything runs through ``crunet.train`` with its defaults (cosine schedule, light augmentation); the table gives
the parameters and Fashion-MNIST test top-1 of each, and the reconstruction errors of the factorization.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

import crunet
from crunet.data import eval_shard, open_split
from crunet.gbtd.convert import factorize_model
from crunet.models.gbtd_net import GBTDNet
from crunet.train.config import TrainConfig
from crunet.train.steps import evaluate, finish_eval
from crunet.train.trainer import data_spec, train


def test_top1(model: torch.nn.Module, cfg: TrainConfig) -> float:
    loader = open_split(cfg.data, "val", data_spec(cfg, model))
    loader = loader.subset(cfg.val_subset) if cfg.val_subset else loader
    sums = evaluate(model.eval(), loader.iterate(eval_shard(len(loader), 256), 0, train=False),
                    device=torch.device("cpu"), channels_last=True)
    return finish_eval(sums)["top1"]


def run(cfg: TrainConfig, model: torch.nn.Module, out: Path, name: str, epochs: int, **changes) -> float:
    summary = train(dataclasses.replace(cfg, out=str(out / name), epochs=epochs, **changes), model=model)
    return summary["final_val"]["top1"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--stages", default="conv3,conv4")
    p.add_argument("--subset", type=int, default=0, help="train on the first N images (0: all 60,000)")
    p.add_argument("--val-subset", type=int, default=0)
    p.add_argument("--iterations", type=int, default=30, help="ALS sweeps per sharing group")
    p.add_argument("--finetune-lr", type=float, default=0.05)
    p.add_argument("--runs", default="runs/gbtd_factorize")
    p.add_argument("--out", default="benchmarks/gbtd_factorize.md")
    args = p.parse_args()
    torch.manual_seed(0)
    runs = Path(args.runs)
    cfg = TrainConfig(model="preresnext_small", subset=args.subset, val_subset=args.val_subset, progress="lines",
                      tensorboard=False, plot=False, workers=0)
    t0 = time.perf_counter()
    original = crunet.create_model("preresnext_small", num_classes=10, in_chans=1)
    top1_original = run(cfg, original, runs, "original", args.epochs)
    t1 = time.perf_counter()
    cru, report = factorize_model(original.float(), args.stages.split(","), max_iter=args.iterations, restarts=0)
    t_factorize = time.perf_counter() - t1
    top1_factorized = test_top1(cru, cfg)
    top1_finetuned = run(cfg, cru, runs, "finetuned", 1, lr=args.finetune_lr, warmup_epochs=0.0)
    torch.manual_seed(0)
    scratch = GBTDNet(cru.cfg, 10, 1, "cru_scratch", dict(cru.pretrained_cfg))
    top1_scratch = run(cfg, scratch, runs, "scratch", args.epochs + 1)
    rows = [
        ("original preresnext_small", report.params_before, f"{args.epochs}", top1_original),
        ("factorized, before fine-tuning", report.params_after, f"{args.epochs} + 0", top1_factorized),
        ("factorized, after 1 epoch of fine-tuning", report.params_after, f"{args.epochs} + 1", top1_finetuned),
        ("same CRU design from scratch", sum(q.numel() for q in scratch.parameters()), f"{args.epochs + 1}",
         top1_scratch),
    ]
    errors = "; ".join(f"{g.stage}: " + ", ".join(f"{e:.2f}" for e in g.errors.tolist()) for g in report.groups)
    lines = [f"Fashion-MNIST test top-1, {args.subset or 60000} training images, factorized stages {args.stages} "
             f"(R = D, {args.iterations} ALS sweeps, {t_factorize:.0f} s); total {time.perf_counter() - t0:.0f} s.",
             "", "| model | params | epochs | top-1 (%) |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {p:,} | {e} | {t:.2f} |" for n, p, e, t in rows]
    lines += ["", f"Relative reconstruction error of each unit's kernel (linear view): {errors}."]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"rows": rows, "errors": errors}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
