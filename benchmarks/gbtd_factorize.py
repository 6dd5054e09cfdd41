"""Collective tensor factorization on Fashion-MNIST: a trained ResNeXt turned into a CRU network, vs CRU from scratch.

    .venv/bin/python benchmarks/gbtd_factorize.py [--epochs 2] [--stages conv3,conv4] [--subset 0]
                                                  [--out benchmarks/gbtd_factorize.md]

1. train ``preresnext_small`` for ``--epochs`` epochs (the original);
2. ``factorize_model`` its ``--stages`` into CRU stages (shared A3 and G per stage, R = D as CRU-Net);
3. evaluate the factorized model as it is, then after one epoch of fine-tuning (lr ``--finetune-lr``), with and
   without calibrating its BNs on ``--calib`` training images first (``factorize_model(calibration=...)``);
4. train the same CRU design from scratch for ``--epochs`` + 1 epochs (the same total number of epochs).
Everything runs through ``crunet.train`` with its defaults (cosine schedule, light augmentation); the table gives
the parameters and Fashion-MNIST test top-1 of each, and the reconstruction errors of the factorization. Top-1 is
given twice: with the BN running statistics as training left them, and with them re-estimated on ``--calib``
training images (train-mode forward passes, no gradient, no augmentation), since a factorized model's first
fine-tuning steps leave stale statistics behind. ``--reuse`` takes the runs already in ``--runs`` instead of training
(waiting for one that another process is still writing).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import torch

import crunet
from crunet.data import eval_shard, open_split
from crunet.gbtd.convert import factorize_model
from crunet.models.preact_resnet import PreActResNet
from crunet.train.config import TrainConfig
from crunet.train.evaluate import evaluate, finish_eval
from crunet.train.inputs import data_spec
from crunet.train.trainer import train


def test_top1(model: torch.nn.Module, cfg: TrainConfig) -> float:
    loader = open_split(cfg.data, "val", data_spec(cfg, model))
    loader = loader.subset(cfg.val_subset) if cfg.val_subset else loader
    sums = evaluate(model.eval(), loader.iterate(eval_shard(len(loader), 256), 0, train=False),
                    device=torch.device("cpu"), channels_last=True)
    return finish_eval(sums)["top1"]


def recalibrated(model: torch.nn.Module, cfg: TrainConfig, images: int) -> torch.nn.Module:
    """A copy whose BN running statistics are the plain average over ``images`` training images."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    loader = open_split(cfg.data, "train", data_spec(dataclasses.replace(cfg, augment="none"), model))
    model.train()
    with torch.no_grad():
        for x, _, _ in loader.iterate(eval_shard(len(loader), 128)[: max(1, images // 128)], 0, train=False):
            model(x)
    return model.eval()


def run(cfg: TrainConfig, model: torch.nn.Module, out: Path, name: str, epochs: int, reuse: bool,
        **changes) -> torch.nn.Module:
    if reuse and (out / name).is_dir():
        while not (out / name / "summary.json").is_file():  # another process is still training it
            time.sleep(20)
        state = torch.load(out / name / "last.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
    else:
        train(dataclasses.replace(cfg, out=str(out / name), epochs=epochs, **changes), model=model)
    return model.eval()


def calibration_images(cfg: TrainConfig, model: torch.nn.Module, images: int) -> torch.Tensor:
    loader = open_split(cfg.data, "train", data_spec(dataclasses.replace(cfg, augment="none"), model))
    return torch.cat([x for x, _, _ in loader.iterate(eval_shard(len(loader), images)[:1], 0, train=False)])


def both_top1(model: torch.nn.Module, cfg: TrainConfig, calib: int) -> tuple[float, float]:
    return test_top1(model, cfg), test_top1(recalibrated(model, cfg, calib), cfg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--stages", default="conv3,conv4")
    p.add_argument("--subset", type=int, default=0, help="train on the first N images (0: all 60,000)")
    p.add_argument("--val-subset", type=int, default=0)
    p.add_argument("--iterations", type=int, default=30, help="ALS sweeps per sharing group")
    p.add_argument("--finetune-lr", type=float, default=0.05)
    p.add_argument("--calib", type=int, default=2560, help="training images to re-estimate BN statistics on")
    p.add_argument("--reuse", action="store_true", help="load the runs already in --runs instead of training")
    p.add_argument("--runs", default="runs/gbtd_factorize")
    p.add_argument("--out", default="benchmarks/gbtd_factorize.md")
    args = p.parse_args()
    torch.manual_seed(0)
    runs = Path(args.runs)
    cfg = TrainConfig(model="preresnext_small", subset=args.subset, val_subset=args.val_subset, progress="lines",
                      tensorboard=False, plot=False, workers=0)
    t0 = time.perf_counter()
    original = run(cfg, crunet.create_model("preresnext_small", num_classes=10, in_chans=1), runs, "original",
                   args.epochs, args.reuse)
    t1 = time.perf_counter()
    cru, report = factorize_model(original.float(), args.stages.split(","), max_iter=args.iterations, restarts=0)
    t_factorize = time.perf_counter() - t1
    top1_factorized = both_top1(cru, cfg, args.calib)
    calibrated, _ = factorize_model(original, args.stages.split(","), max_iter=args.iterations, restarts=0,
                                    calibration=calibration_images(cfg, original, args.calib))
    finetune = {"lr": args.finetune_lr, "warmup_epochs": 0.0}
    finetuned = run(cfg, cru, runs, "finetuned", 1, args.reuse, **finetune)
    finetuned_calibrated = run(cfg, calibrated, runs, "finetuned-calibrated", 1, args.reuse, **finetune)
    torch.manual_seed(0)
    scratch = PreActResNet(cru.cfg, 10, 1, "cru_scratch", dict(cru.pretrained_cfg))
    scratch = run(cfg, scratch, runs, "scratch", args.epochs + 1, args.reuse)
    e = args.epochs
    rows = [
        ("original preresnext_small", report.params_before, f"{e}", *both_top1(original, cfg, args.calib)),
        ("factorized, before fine-tuning", report.params_after, f"{e} + 0", *top1_factorized),
        ("factorized, after 1 epoch of fine-tuning", report.params_after, f"{e} + 1",
         *both_top1(finetuned, cfg, args.calib)),
        ("factorized with BNs calibrated, after 1 epoch of fine-tuning", report.params_after, f"{e} + 1",
         *both_top1(finetuned_calibrated, cfg, args.calib)),
        ("same CRU design from scratch", sum(q.numel() for q in scratch.parameters()), f"{e + 1}",
         *both_top1(scratch, cfg, args.calib)),
    ]
    errors = "; ".join(f"{g.stage}: " + ", ".join(f"{e:.2f}" for e in g.errors.tolist()) for g in report.groups)
    lines = [f"Fashion-MNIST test top-1 on {args.val_subset or 10000} test images, {args.subset or 60000} training "
             f"images, factorized stages {args.stages} "
             f"(R = D, {args.iterations} ALS sweeps, {t_factorize:.0f} s); total {time.perf_counter() - t0:.0f} s.",
             "",
             f"| model | params | epochs | top-1 (%) | top-1 (%), BN statistics re-estimated ({args.calib} images) |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {p:,} | {e} | {t:.2f} | {r:.2f} |" for n, p, e, t, r in rows]
    lines += ["", f"Relative reconstruction error of each unit's kernel (linear view): {errors}."]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"rows": rows, "errors": errors}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
