"""``--init-from CHECKPOINT``: a run that starts from a trained network converted into ``--model`` (``crunet
compress``), instead of from a random init.

Which conversion is the pair's: into the trained ResNet's DSFB design (``--init-method svd`` or ``data``:
``crunet.gbtd.dsfb_convert``), or into a thinner copy of it (``norm``: the filters of largest norm,
``crunet.gbtd.thin``). The conversion reads ``--init-images`` training images (the first of a fixed shuffle, without
augmentation) for the BN calibration and the data-aware bases. It runs once, at a fresh start (a resumed run has
its weights in its checkpoint), identically on every process, and without drawing from the run's RNG. What it
measured (each sharing group's relative errors, and the converted network's validation accuracy before any step,
in float32) goes to ``RUN_DIR/init.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from crunet.data import eval_shard
from crunet.errors import ConfigError, MissingFileError
from crunet.io.atomic import atomic_open
from crunet.io.checkpoint import checkpoint_weights, load_checkpoint, load_model_state, model_kwargs
from crunet.train.config import TrainConfig
from crunet.train.dist import DistInfo
from crunet.train.evaluate import validate

INIT_FILE = "init.json"
METHODS = ("svd", "data", "norm")


def source_model(path: str) -> nn.Module:
    """The trained network of a crunet checkpoint, in eval mode, built without drawing from the global RNG."""
    from crunet.models import create_model

    if not Path(path).is_file():
        raise MissingFileError(f"--init-from {path} does not exist: give a trained crunet checkpoint (RUN_DIR/last.pt)")
    ckpt = load_checkpoint(path)
    with torch.random.fork_rng(devices=[]):
        model = create_model(ckpt["model_name"], **model_kwargs(ckpt))
    load_model_state(model, checkpoint_weights(ckpt, path), path, ckpt["model_name"])
    return model.eval()


def calibration_images(train_data, n: int) -> torch.Tensor:
    """The first ``n`` training images of the fixed shuffle, normalized, not augmented, on the CPU."""
    data = train_data.subset(min(n, len(train_data)))
    return torch.cat([x.float().cpu() for x, _, _ in data.iterate(eval_shard(len(data), 256), 0, train=False)])


def initialize(cfg: TrainConfig, model: nn.Module, train_data) -> dict:
    """Write into ``model`` the conversion of ``cfg.init_from``; returns what it measured (errors per group)."""
    from crunet.gbtd.convert import calibrate_norms
    from crunet.gbtd.dsfb_convert import dsfb_from_resnet
    from crunet.gbtd.thin import thin_from_resnet

    source = source_model(cfg.init_from)
    if source.num_classes != model.num_classes:
        raise ConfigError(f"--init-from {cfg.init_from} predicts {source.num_classes} classes but the data has "
                          f"{model.num_classes}: convert a network trained on the same classes")
    images = calibration_images(train_data, cfg.init_images)
    dtype = next(model.parameters()).dtype
    model.to(torch.float64)  # the least-squares fits and the calibration in float64, then back
    source.to(torch.float64)
    try:
        if cfg.init_method == "norm":
            thin_from_resnet(source, model)
            groups = []
            calibrate_norms(model, images.double())
        else:
            groups = [dataclasses.asdict(g) for g in dsfb_from_resnet(source, model, cfg.init_method,
                                                                      images.double())]
    finally:
        model.to(dtype)
    model.train()
    return {"init_from": cfg.init_from, "init_method": cfg.init_method, "images": len(images),
            "source_model": source.name, "groups": groups}


def convert_if_fresh(cfg: TrainConfig, model: nn.Module, train_data, resume: dict | None) -> dict | None:
    """``initialize`` at a fresh start with ``--init-from``; None otherwise (a resumed run has its weights)."""
    return initialize(cfg, model, train_data) if cfg.init_from and resume is None else None


def record_start(report: dict, model: nn.Module, val_data, cfg: TrainConfig, info: DistInfo, run_path: str) -> str:
    """The converted network's validation before any step (float32; collective), written with ``report`` to
    ``RUN_DIR/init.json`` by the main process; returns the line to print."""
    val = validate(model, val_data, dataclasses.replace(cfg, amp="none"), info)
    report = {**report, "val_before": val}
    if info.main:
        with atomic_open(Path(run_path) / INIT_FILE, "w") as f:
            json.dump(report, f, indent=1)
    return (f"converted from {cfg.init_from} ({cfg.init_method}): val top-1 {val['top1']:.2f}% before training; "
            f"{Path(run_path) / INIT_FILE}")


def compress_config(checkpoint: str, to: str, method: str | None = None, teacher: bool = True,
                    **options) -> TrainConfig:
    """The run of ``crunet compress``: ``checkpoint``'s network converted into ``to`` (``method``: svd for a DSFB
    design, norm for a thinner copy, by default) and fine-tuned on the checkpoint's data and normalization, with it as
    teacher unless ``teacher`` is False. ``options``: any other TrainConfig field, given (``lr`` defaults to
    ``COMPRESS_LR``: fine-tuning, not training from scratch)."""
    from crunet.models import create_model

    saved = load_checkpoint(checkpoint)
    if method is None:
        with torch.device("meta"):
            shares = getattr(getattr(create_model(to, **options.get("model_kwargs", {})), "cfg", None), "sharing",
                             "none") != "none"
        method = "svd" if shares else "norm"
    trained = saved.get("config", {})
    same_input = {k: trained[k] for k in ("mean", "std") if trained.get(k)}  # the converted weights expect them
    values = {"data": trained.get("data"), "lr": COMPRESS_LR, **same_input, **options, "model": to,
              "init_from": str(checkpoint), "init_method": method, "teacher": str(checkpoint) if teacher else None}
    return TrainConfig.given(**values)


COMPRESS_LR = 0.05  # a converted network fine-tunes, it does not restart: a quarter of the from-scratch rate
