"""``--init-from CHECKPOINT``: a run that starts from a trained network converted into ``--model`` (``crunet
compress``), instead of from a random init.

Which conversion is the pair's: a trained BasicBlock ResNet into its DSFB design (``--init-method svd`` or ``data``:
``crunet.gbtd.dsfb_convert``); a trained pre-activation ResNeXt into its CRU design (``cru``: the collective
factorization of ``crunet.gbtd.convert``, weighted by the inputs, e.g. preresnext_small -> crunet_small); or either
into a thinner copy of itself (``norm``: the filters of largest norm, ``crunet.gbtd.thin`` for a BasicBlock ResNet,
``crunet.gbtd.thin_resnext`` for a pre-activation network). The conversion reads ``--init-images`` training images
(the first of a fixed shuffle, without augmentation) for the BN calibration and the data-aware fits. It runs once,
at a fresh start (a resumed run has its weights in its checkpoint), identically on every process, and without
drawing from the run's RNG. What it measured (each sharing group's relative errors, and the converted network's
validation accuracy before any step, in float32) goes to ``RUN_DIR/init.json``.
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
from crunet.io.normalization import config_normalization
from crunet.train.config import TrainConfig
from crunet.train.dist import DistInfo
from crunet.train.evaluate import validate

INIT_FILE = "init.json"
METHODS = ("svd", "data", "norm", "cru")
CRU_SWEEPS = 30  # ALS sweeps: at 100, a trained preresnext_small's unit errors in crunet_small fell by < 0.01 more


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
            thin(source, model)
            groups = []
            calibrate_norms(model, images.double())
        elif cfg.init_method == "cru":
            groups = cru_from_resnext(source, model, images.double())
        else:
            from crunet.gbtd.dsfb_convert import dsfb_from_resnet

            groups = [dataclasses.asdict(g) for g in dsfb_from_resnet(source, model, cfg.init_method,
                                                                      images.double())]
    finally:
        model.to(dtype)
    model.train()
    return {"init_from": cfg.init_from, "init_method": cfg.init_method, "images": len(images),
            "source_model": source.name, "groups": groups}


def thin(source: nn.Module, model: nn.Module) -> None:
    """``model`` = the filters of largest norm of ``source``, by its design's thinning (pre-activation or
    BasicBlock)."""
    from crunet.models.preact_resnet import PreActResNet

    if isinstance(source, PreActResNet):
        from crunet.gbtd.thin_resnext import thin_from_preact

        thin_from_preact(source, model)
    else:
        from crunet.gbtd.thin import thin_from_resnet

        thin_from_resnet(source, model)


def cru_from_resnext(source: nn.Module, model: nn.Module, images: torch.Tensor) -> list[dict]:
    """``model`` = the collective factorization of ``source``'s stages that it shares, fitted in the inputs' metric
    and calibrated on ``images``; per sharing group, each unit's relative kernel error ||K - K^|| / ||K|| in that
    metric (the first unit of a stage, which reads through its projection, in the weights'), and the group's."""
    from crunet.gbtd.convert import factorize_into

    report = factorize_into(source, model, CRU_SWEEPS, calibration=images, weight_by_inputs=True)
    return [{"stage": g.stage, "units": list(g.units), "unit_errors": g.errors.tolist(),
             "error": float(g.factors.total_errors[-1])} for g in report.groups]


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
    """The run of ``crunet compress``: ``checkpoint``'s network converted into ``to`` (``method``: by default
    ``default_method``'s) and fine-tuned on the checkpoint's data and normalization (mean, std, crop_pct), with it as
    teacher unless ``teacher`` is False. ``options``: any other TrainConfig field, given (``lr`` defaults to
    ``COMPRESS_LR``: fine-tuning, not training from scratch)."""
    from crunet.models import create_model

    saved = load_checkpoint(checkpoint)
    if method is None:
        with torch.device("meta"):
            cfg = getattr(create_model(to, **options.get("model_kwargs", {})), "cfg", None)
        method = default_method(cfg)
    trained = saved.get("config", {})
    same_input = config_normalization(trained)  # the converted weights expect the input the original saw
    values = {"data": trained.get("data"), "lr": COMPRESS_LR, **same_input, **options, "model": to,
              "init_from": str(checkpoint), "init_method": method, "teacher": str(checkpoint) if teacher else None}
    return TrainConfig.given(**values)


def default_method(cfg: object) -> str:
    """svd into a DSFB design, cru into a design with CRU stages, norm into any other (a thinner copy)."""
    if getattr(cfg, "sharing", "none") != "none":
        return "svd"
    return "cru" if any(getattr(s, "shared", False) for s in getattr(cfg, "stages", ())) else "norm"


COMPRESS_LR = 0.05  # a converted network fine-tunes, it does not restart: a quarter of the from-scratch rate
