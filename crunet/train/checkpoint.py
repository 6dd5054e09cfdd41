"""Checkpointing in one place: when to write (``CheckpointPolicy``), writing (``save_checkpoint``, ``Checkpointer``),
finding (``newest_checkpoint``) and what to resume from (``resume_source``, ``run_dir_for``). Reading is
``crunet.io.checkpoint``'s (evaluation and interop read checkpoints too), re-exported here.

Writes are atomic (``crunet.io.atomic``): a kill at any moment leaves either the old or the new file, never a torn
one; a failed write (disk full) leaves the previous checkpoint as it was.

Collective calls: ``Checkpointer.save`` and ``Checkpointer.interrupted`` (unless ``write=False``) all-reduce the
epoch's sums, so under torchrun every rank must call them at the same point (one rank alone hangs); rank 0 writes.
Everything else here is local.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from crunet.errors import ConfigError
from crunet.io.atomic import atomic_open
from crunet.io.checkpoint import FORMAT, CheckpointError, load_checkpoint, load_model_state
from crunet.train.config import TrainConfig
from crunet.train.dist import DistInfo, all_reduce_sum
from crunet.train.signals import TrainingInterrupted
from crunet.train.state import TrainState

__all__ = ["CheckpointError", "CheckpointPolicy", "Checkpointer", "load_checkpoint", "load_model_state",
           "newest_checkpoint", "parse_every", "resolve_resume", "resume_source", "save_checkpoint"]


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    try:
        with atomic_open(path, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
    except (OSError, RuntimeError) as err:
        raise CheckpointError(f"could not write checkpoint {path}: {err}"
                              f"{' (disk full)' if getattr(err, 'errno', None) == 28 else ''}; "
                              f"the previous checkpoint, if any, is intact") from err
    return path


class Checkpointer:
    """Writes the whole ``TrainState`` (plus ``meta``: what rebuilds the model) at a step boundary. Collective."""

    def __init__(self, run_path: str | os.PathLike, meta: dict, state: TrainState, info: DistInfo):
        self.path, self.meta, self.state, self.info = Path(run_path), meta, state, info
        self.t_start, self.last = time.perf_counter(), None

    def elapsed(self) -> float:
        return self.state.elapsed + time.perf_counter() - self.t_start

    def save(self, name: str) -> Path:
        """Collective: every rank calls this (the epoch's sums are added over ranks); rank 0 writes."""
        sums = dict(zip(self.state.sums, all_reduce_sum(list(self.state.sums.values()), self.info), strict=True))
        if self.info.main:
            save_checkpoint({**self.meta, **self.state.state_dict(sums, self.elapsed())}, self.path / name)
        if name == "last.pt":
            s = self.state
            self.last = (self.path / name, f"step {s.step} (epoch {s.epoch + 1}, {s.epoch_step} steps into it)")
        return self.path / name

    def interrupted(self, why: str, write: bool = True) -> TrainingInterrupted:
        """Write the checkpoint of this step boundary (collective; not mid-step: ``write=False``) and say how to
        continue."""
        if write:
            self.save("last.pt")
        if self.last is None:
            return TrainingInterrupted(f"stopped by {why} before the first checkpoint; start the run again")
        path, where = self.last
        return TrainingInterrupted(f"stopped by {why}; resumable checkpoint {path} at {where}; continue with "
                                   f"`crunet train --resume {path}` (or --resume auto --out {self.path})")


def parse_every(spec: str) -> tuple[int, float]:
    """'500' -> (500, 0); '30m' -> (0, 30.0); '500,30m' -> (500, 30.0); '' or '0' -> (0, 0) (epoch ends only)."""
    steps, minutes = 0, 0.0
    for part in (p.strip() for p in str(spec).split(",") if p.strip()):
        try:
            if part.endswith("m"):
                minutes = float(part[:-1])
                ok = math.isfinite(minutes) and minutes >= 0
            else:
                steps = int(part)
                ok = steps >= 0
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"--checkpoint-every {spec!r}: expected steps (500), minutes (30m) or both "
                              f"(500,30m), each >= 0")
    return steps, minutes


class CheckpointPolicy:
    """When the loop writes a mid-epoch checkpoint: ``--checkpoint-every 500`` (steps), ``30m`` (minutes) or both;
    every epoch end writes one regardless."""

    def __init__(self, spec: str):
        self.steps, self.minutes = parse_every(spec)
        self.last, self.saved_step = time.monotonic(), -1

    def due(self, step: int) -> bool:
        by_steps = self.steps > 0 and step > 0 and step % self.steps == 0 and step != self.saved_step
        by_time = self.minutes > 0 and time.monotonic() - self.last >= 60 * self.minutes
        return by_steps or by_time

    def written(self, step: int) -> None:
        self.last, self.saved_step = time.monotonic(), step


def newest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The valid checkpoint of ``run_dir`` furthest along (most optimizer steps, then positions); None if none."""
    best, best_key = None, None
    for path in sorted(Path(run_dir).glob("*.pt")):
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            continue
        key = (state.get("epoch", 0), state.get("epoch_step", 0), state.get("step", 0))
        if best_key is None or key > best_key:
            best, best_key = path, key
    return best


def resume_source(cfg: TrainConfig) -> Path | None:
    """The checkpoint to continue from: ``--resume FILE``, or with ``auto`` / a folder the newest valid checkpoint
    of that run directory (``auto``: of ``--out``; none there yet: a fresh start)."""
    if not cfg.resume:
        return None
    if cfg.resume != "auto" and not Path(cfg.resume).is_dir():
        return Path(cfg.resume)
    if cfg.resume == "auto" and not cfg.out:
        raise ConfigError("--resume auto needs --out RUN_DIR (the run directory to continue)")
    folder = Path(cfg.out if cfg.resume == "auto" else cfg.resume)
    found = newest_checkpoint(folder) if folder.is_dir() else None
    if found is None and cfg.resume != "auto":
        raise ConfigError(f"--resume {cfg.resume}: no valid checkpoint (*.pt) in that folder")
    return found


def resolve_resume(cfg: TrainConfig) -> tuple[TrainConfig, dict | None]:
    """The run's config and the checkpoint it continues (None: a fresh start); a bad checkpoint fails here, before
    anything is written."""
    cfg.check()
    source = resume_source(cfg)
    resume = load_checkpoint(source) if source else None
    cfg = cfg.merged_for_resume(resume["config"]) if resume else cfg.apply_preset()
    cfg.resume = str(source) if source else None
    cfg.check()
    return cfg, resume
