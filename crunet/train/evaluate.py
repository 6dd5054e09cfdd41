"""Evaluation: one pass over batches (``evaluate``), the trainer's validation over every rank (``validate``), and
``crunet eval`` of a checkpoint with one or ten crops (``evaluate_checkpoint``, metrics written as JSON)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from crunet.data import eval_shard, open_split
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


def evaluate_checkpoint(checkpoint: str, data: str | None = None, crops: int = 1, resize: int | None = None,
                        batch_size: int = 256, subset: int = 0, use_ema: bool = False, amp: str = "none",
                        workers: int = 2, strict: bool = False, out: str | None = None) -> dict:
    """``crunet eval``: the checkpoint's model (or its EMA) on ``data``'s evaluation split (default: the data it
    trained on) with its training input size and normalization; the metrics also go to ``out`` (JSON)."""
    from crunet.models import create_model

    state = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    model = create_model(state["model_name"], **model_kwargs(state))
    load_model_state(model, checkpoint_weights(state, checkpoint, use_ema), checkpoint, state["model_name"])
    cfg.data, cfg.crops, cfg.workers, cfg.strict_data = data or cfg.data, crops, workers, strict
    cfg.decode = "cpu"  # this runs on the CPU, where Pillow in the workers decodes faster than the main process
    spec = data_spec(cfg, model)
    spec.resize = resize
    loader = open_split(cfg.data, "val", spec)
    loader = loader.subset(subset) if subset else loader
    sums = evaluate(model, loader.iterate(eval_shard(len(loader), batch_size), 0, train=False),
                    device=torch.device("cpu"), amp=amp, channels_last=uses_channels_last(cfg))
    result = {"checkpoint": str(checkpoint), "model": state["model_name"], "data": cfg.data or "fashion-mnist",
              "crops": crops, "ema": use_ema, **finish_eval(sums)}
    path = Path(out) if out else Path(checkpoint).with_name(f"eval-{crops}crop.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    result["json"] = str(path)
    return result
