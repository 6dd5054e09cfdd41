"""Evaluation: one pass over batches (``evaluate``), the trainer's validation over every rank (``validate``), and
``crunet eval`` of a checkpoint with one or ten crops (``evaluate_checkpoint`` with ``EvalOptions``, metrics written
as JSON)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from crunet.data import check_labels, eval_shard, open_split
from crunet.io.checkpoint import checkpoint_weights, load_checkpoint, load_model_state, model_kwargs
from crunet.train.config import TrainConfig
from crunet.train.dist import DistInfo, all_reduce_sum
from crunet.train.inputs import data_spec
from crunet.train.steps import autocast, to_device, uses_channels_last


@torch.no_grad()
def evaluate(model: nn.Module, batches, *, device, amp="none", channels_last=False) -> dict:
    """Top-1, top-5 (percent), loss, image count, images/s and skipped images over the batches on this process.
    A batch of crops (B, K, C, H, W) is scored by the softmax averaged over the K crops."""
    model.eval()
    sums = {"loss": 0.0, "top1": 0.0, "top5": 0.0, "count": 0.0, "skipped": 0.0}
    t0 = time.perf_counter()
    for x, y, skipped in batches:
        sums["skipped"] += skipped
        if len(y) == 0:
            continue
        crops = x.shape[1] if x.dim() == 5 else 1
        x, y = to_device(x.flatten(0, 1) if crops > 1 else x, device, channels_last), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x).float()
        probs = logits.softmax(1).view(len(y), crops, -1).mean(1)
        sums["loss"] += F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum").item()
        top5 = probs.topk(min(5, probs.shape[1]), 1).indices
        sums["top1"] += (top5[:, 0] == y).sum().item()
        sums["top5"] += (top5 == y[:, None]).any(1).sum().item()
        sums["count"] += len(y)
    sums["seconds"] = time.perf_counter() - t0
    return sums


def finish_eval(sums: dict) -> dict:
    """Sums (possibly added over processes) -> the reported metrics."""
    n = max(1.0, sums["count"])
    return {"top1": 100 * sums["top1"] / n, "top5": 100 * sums["top5"] / n, "loss": sums["loss"] / n,
            "count": int(sums["count"]), "images_per_s": sums["count"] / max(1e-9, sums["seconds"]),
            "skipped": int(sums["skipped"])}


def validate(model: nn.Module, val_data, cfg: TrainConfig, info: DistInfo) -> dict:
    """The metrics of ``model`` on the validation set, each rank scoring its shard. Collective under torchrun."""
    batches = eval_shard(len(val_data), cfg.batch_size * 2, info.world, info.rank)
    sums = evaluate(model, val_data.iterate(batches, 0, train=False), device=info.device, amp=cfg.amp,
                    channels_last=uses_channels_last(cfg))
    seconds = sums.pop("seconds")
    sums = dict(zip(sums, all_reduce_sum(list(sums.values()), info), strict=True))
    return finish_eval({**sums, "seconds": seconds})


@dataclass
class EvalOptions:
    """How ``evaluate_checkpoint`` evaluates (the fields are ``crunet eval``'s options); the defaults: the data the
    checkpoint trained on, one centre crop at its training input size, all images, the model's own weights."""

    data: str | None = None  # a data folder; None: the one the checkpoint trained on
    crops: int = 1  # 1 (centre crop) or 10 (corners, centre and their flips; softmax averaged)
    resize: int | None = None  # short side before cropping; None: size / the model's crop_pct
    batch_size: int = 256
    subset: int = 0  # >0: the first N images of a fixed shuffle
    ema: bool = False  # the EMA weights instead of the model's
    amp: str = "none"  # none or bf16
    workers: int = 2
    strict_data: bool = False
    out: str | None = None  # the JSON file; None: eval-<crops>crop.json beside the checkpoint


def evaluate_checkpoint(checkpoint: str, options: EvalOptions | None = None) -> dict:
    """``crunet eval``: the checkpoint's model (or its EMA) on the evaluation split of its data (or of
    ``options.data``) with its training input size and normalization; the metrics also go to a JSON file."""
    from crunet.models import create_model

    opt = options or EvalOptions()
    state = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    model = create_model(state["model_name"], **model_kwargs(state))
    load_model_state(model, checkpoint_weights(state, checkpoint, opt.ema), checkpoint, state["model_name"])
    about = {"checkpoint": str(checkpoint), "model": state["model_name"]}
    return evaluate_as_trained(model, cfg, opt, about, Path(checkpoint).with_name(f"eval-{opt.crops}crop.json"))


def evaluate_as_trained(model: nn.Module, cfg: TrainConfig, opt: EvalOptions, about: dict, out: Path) -> dict:
    """``model`` on the evaluation split of ``opt.data`` (else ``cfg.data``), fed at the input size and with the
    normalization of its run ``cfg``; the metrics, after ``about``, also go to ``opt.out`` (else ``out``) as JSON."""
    cfg.data, cfg.crops, cfg.workers, cfg.strict_data = opt.data or cfg.data, opt.crops, opt.workers, opt.strict_data
    cfg.decode = "cpu"  # this runs on the CPU, where Pillow in the workers decodes faster than the main process
    spec = data_spec(cfg, model)
    spec.resize = opt.resize
    loader = open_split(cfg.data, "val", spec)
    loader = loader.subset(opt.subset) if opt.subset else loader
    check_labels(loader, model.num_classes, "evaluation")
    sums = evaluate(model, loader.iterate(eval_shard(len(loader), opt.batch_size), 0, train=False),
                    device=torch.device("cpu"), amp=opt.amp, channels_last=uses_channels_last(cfg))
    result = {**about, "data": cfg.data or "fashion-mnist", "crops": opt.crops, "ema": opt.ema, **finish_eval(sums)}
    path = Path(opt.out) if opt.out else out
    path.write_text(json.dumps(result, indent=2) + "\n")
    result["json"] = str(path)
    return result
