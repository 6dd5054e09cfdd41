"""The training loop's state in one object, saved and restored whole (as Lightning's and torchtitan's loops do).

Everything the loop changes lives in ``TrainState``: weights, optimizer, schedule, gradient scaler, EMA, the RNG, the
position (epochs finished, steps of the current epoch done, optimizer steps applied), the best validation top-1, and
the current epoch's training sums. A checkpoint is ``state_dict()`` taken at a step boundary, after the step counter
has moved, so a resumed run never applies a batch twice nor skips one. The RNG states are stored as tensors, so
``weights_only=True`` can read them.
"""

from __future__ import annotations

import math
import os
import random

import numpy as np
import torch
from torch import nn

from crunet.io.checkpoint import CheckpointError, load_model_state
from crunet.train.steps import unwrap


class TrainState:
    def __init__(self, model: nn.Module, optimizer, schedule, scaler, ema, global_batch: int):
        self.model, self.optimizer, self.schedule, self.scaler, self.ema = model, optimizer, schedule, scaler, ema
        self.global_batch = global_batch
        self.epoch = 0  # epochs finished (validated)
        self.epoch_step = 0  # steps of the current epoch done, skipped ones included: the sampler's position
        self.step = 0  # optimizer steps applied: the schedule's clock
        self.best_top1 = -math.inf
        self.sums: dict[str, float] = {}  # this epoch's training sums on this process (loss, correct, count, ...)
        self.elapsed = 0.0  # training seconds of the processes before this one

    def add(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def finish_step(self, stats: dict[str, float] | None) -> None:
        """The step boundary: a step's batches are consumed (and applied unless the step was skipped)."""
        if stats is not None:
            self.add(stats)
            self.step += 1
        self.epoch_step += 1

    def finish_epoch(self, val_top1: float) -> bool:
        """After validation: the schedule sees the result; returns whether it is the best so far."""
        self.schedule.epoch_end(val_top1)
        best = val_top1 > self.best_top1
        self.best_top1 = max(self.best_top1, val_top1)
        self.epoch, self.epoch_step, self.sums = self.epoch + 1, 0, {}
        return best

    def state_dict(self, sums: dict[str, float], elapsed: float) -> dict:
        """``sums``: the epoch's sums over all processes (the caller reduces them)."""
        return {"model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else {},
                "ema": self.ema.state_dict() if self.ema else {}, "rng": rng_state({}),
                "epoch": self.epoch, "epoch_step": self.epoch_step, "step": self.step,
                "global_batch": self.global_batch, "best_top1": self.best_top1, "epoch_stats": dict(sums),
                "elapsed": elapsed}

    def load_state_dict(self, state: dict, source: str | os.PathLike, main: bool = True) -> None:
        """Restore everything; the epoch's sums go to the main process only (they are already summed over ranks),
        the others hold zeros under the same names, so that every rank reduces the same list."""
        load_model_state(unwrap(self.model), state["model"], str(source), state.get("model_name"))
        if state["epoch_step"] and state["global_batch"] != self.global_batch:
            raise CheckpointError(f"{source} stopped mid-epoch with a global batch of {state['global_batch']}; "
                                  f"resume it with the same global batch (now {self.global_batch})")
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"], {})
        self.epoch, self.epoch_step, self.step = state["epoch"], state["epoch_step"], state["step"]
        self.best_top1, self.elapsed = state["best_top1"], state["elapsed"]
        self.sums = {k: (v if main else 0.0) for k, v in state["epoch_stats"].items()}  # same keys on every rank


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }


def set_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for name, g in generators.items():
        g.set_state(state["generators"][name])
