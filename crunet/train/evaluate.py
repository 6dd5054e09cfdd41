"""Evaluate a checkpoint on a data set with one or ten crops; write the metrics as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from crunet.data import eval_shard, open_split
from crunet.io.checkpoint import CheckpointError, load_checkpoint, load_model_state, model_kwargs
from crunet.train.config import TrainConfig
from crunet.train.inputs import data_spec
from crunet.train.steps import evaluate, finish_eval


def evaluate_checkpoint(checkpoint: str, data: str | None = None, crops: int = 1, resize: int | None = None,
                        batch_size: int = 256, subset: int = 0, use_ema: bool = False, amp: str = "none",
                        workers: int = 2, strict: bool = False, out: str | None = None) -> dict:
    from crunet.models import create_model

    state = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    model = create_model(state["model_name"], **model_kwargs(state))
    weights = state["ema"] if use_ema else state["model"]
    if use_ema and not weights:
        raise CheckpointError(f"{checkpoint} holds no EMA weights (train with --ema-decay)")
    load_model_state(model, weights, checkpoint, state["model_name"])
    cfg.data, cfg.crops, cfg.workers, cfg.strict_data = data or cfg.data, crops, workers, strict
    spec = data_spec(cfg, model)
    spec.resize = resize
    loader = open_split(cfg.data, "val", spec)
    loader = loader.subset(subset) if subset else loader
    sums = evaluate(model, loader.iterate(eval_shard(len(loader), batch_size), 0, train=False), device=model_device(),
                    amp=amp, channels_last=cfg.channels_last is not False)
    result = {"checkpoint": str(checkpoint), "model": state["model_name"], "data": cfg.data or "fashion-mnist",
              "crops": crops, "ema": use_ema, **finish_eval(sums)}
    path = Path(out) if out else Path(checkpoint).with_name(f"eval-{crops}crop.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    result["json"] = str(path)
    return result


def model_device():
    import torch

    return torch.device("cpu")
