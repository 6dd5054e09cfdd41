"""``crunet train``: read it top to bottom. Data, model, optimizer, the loop's state, then the epoch loop.

The loop's state (weights, optimizer, schedule, EMA, RNG, position, sums) is one object, ``TrainState``, saved and
restored whole. Checkpoints are written only at step boundaries, after the step counter has moved. SIGTERM, SIGINT
and SIGUSR1 stop the run at the next boundary with a resumable checkpoint; ``--checkpoint-every`` adds mid-epoch
checkpoints; ``--resume auto`` continues from the newest valid checkpoint of ``--out``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from crunet.data import StepSampler, check_labels, detect_kind, eval_shard, num_classes_of, open_split
from crunet.data.classes import class_names
from crunet.errors import ConfigError
from crunet.train.checkpoint import load_checkpoint, save_checkpoint
from crunet.train.config import TrainConfig
from crunet.train.dist import DistInfo, all_reduce_sum, any_rank, cleanup, from_main, setup_distributed
from crunet.train.ema import ModelEma
from crunet.train.inputs import data_spec
from crunet.train.loop_state import TrainState, newest_checkpoint
from crunet.train.optim import LrSchedule, build_optimizer, scaled_lr
from crunet.train.plot import plot_curves
from crunet.train.progress import Progress
from crunet.train.run_dir import RunDir, check_run_dir, default_run_dir
from crunet.train.save_policy import CheckpointEvery
from crunet.train.shared_grads import SharedGradProbe, orthogonality_of
from crunet.train.signals import StopRequests
from crunet.train.state import seed_everything
from crunet.train.steps import evaluate, finish_eval, train_step, unwrap


class TrainingInterrupted(KeyboardInterrupt):
    """A signal (or Ctrl-C) stopped the run; the message names the resumable checkpoint and how to continue."""


def train(cfg: TrainConfig, model: nn.Module | None = None) -> dict:
    """Train ``cfg.model`` (or the given model) and return the summary that summary.json also holds."""
    cfg.check()
    source, auto = resume_source(cfg), cfg.resume == "auto"
    resume = load_checkpoint(source) if source else None  # a bad checkpoint fails before any write
    cfg = cfg.merged_for_resume(resume["config"]) if resume else cfg.apply_preset()
    cfg.resume = str(source) if source else None
    cfg.check()
    info = setup_distributed(cfg.device)
    finished = False
    try:
        summary = _train(cfg, model, resume, info, auto)
        finished = True
        return summary
    finally:
        cleanup(info, finished)


def _train(cfg: TrainConfig, model: nn.Module | None, resume: dict | None, info: DistInfo, auto: bool) -> dict:
    seed_everything(cfg.seed)
    say = print if info.main else (lambda *a, **k: None)

    # data and model
    kind = detect_kind(cfg.data)
    probe = model or _create(cfg, 10 if kind == "fashion-mnist" else 1000, 1 if kind == "fashion-mnist" else 3)
    spec = data_spec(cfg, probe)
    train_data, val_data = open_split(cfg.data, "train", spec), open_split(cfg.data, "val", spec)
    if cfg.holdout:
        train_data, val_data = hold_out(train_data, val_data, cfg.holdout)
    num_classes = num_classes_of(train_data)
    check_labels(val_data, num_classes, "validation")
    if model is None:
        model = probe if probe.num_classes == num_classes else _create(cfg, num_classes, spec.in_chans)
    train_data = train_data.subset(cfg.subset) if cfg.subset else train_data
    val_data = val_data.subset(cfg.val_subset or cfg.subset) if (cfg.val_subset or cfg.subset) else val_data
    if info.device.type == "cuda":  # IDX images: on the GPU once; folders: pinned batches. The CPU path is as it was
        train_data, val_data = train_data.to(info.device), val_data.to(info.device)
        torch.backends.cudnn.benchmark = True
    for name in getattr(train_data, "empty_classes", []):
        say(f"warning: class folder {name!r} is empty (its label is kept; --strict-data makes this an error)")

    channels_last = cfg.channels_last if cfg.channels_last is not None else True
    if cfg.amp == "fp16" and info.device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA GPU (it needs a gradient scaler); use --amp bf16 on the CPU")
    if cfg.sync_bn and info.world > 1 and info.device.type == "cpu":
        raise ConfigError("--sync-bn needs GPUs: PyTorch's SyncBatchNorm does not run on the CPU")
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model = model.to(info.device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if cfg.sync_bn and info.world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay else None
    grad_probe = SharedGradProbe(model) if cfg.log_shared_grads else None

    # optimizer, schedule, and the loop's state (restored whole on resume)
    sampler = StepSampler(len(train_data), cfg.batch_size, info.world, info.rank, cfg.accum, True, cfg.seed)
    lr = scaled_lr(cfg, sampler.global_batch)
    optimizer = build_optimizer(model, cfg, lr)
    schedule = LrSchedule(optimizer, lr, cfg.schedule, sampler.steps_per_epoch, cfg.epochs, cfg.warmup_epochs,
                          cfg.step_epochs, cfg.gamma, cfg.plateau_patience)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    state = TrainState(model, optimizer, schedule, scaler, ema, sampler.global_batch, cfg.accum)
    if resume is not None:
        state.load_state_dict(resume, cfg.resume, info.main)

    # the run directory (rank 0 writes; every rank knows its path)
    run_path = from_main(str(run_dir_for(cfg, resume is not None)) if info.main else None, info)
    check_run_dir(run_path, resume is not None or auto)  # auto, nothing to resume: what is there is replaced
    run = RunDir(run_path, cfg.tensorboard) if info.main else None
    meta = {"config": cfg.to_dict(), "model_name": unwrap(model).name, "num_classes": num_classes,
            "in_chans": spec.in_chans, "classes": class_names(cfg.data, train_data),  # for crunet predict
            "img_size": spec.size}
    saver = Checkpointer(run_path, meta, state, info)
    if run:
        run.write_config({**cfg.to_dict(), "resolved": {"lr": lr, "global_batch": sampler.global_batch,
                          "world": info.world, "channels_last": channels_last, "num_classes": num_classes,
                          "in_chans": spec.in_chans, "img_size": spec.size, "train_images": len(train_data),
                          "val_images": len(val_data), "device": str(info.device),
                          "backend": info.backend}})
        run.keep_epochs(state.epoch)
        say(f"training {unwrap(model).name} ({sum(p.numel() for p in model.parameters()):,} params) on "
            f"{len(train_data)} images, {info.world} process(es), global batch {sampler.global_batch}, lr {lr:.4g}; "
            f"run directory {run.path}" + (f"; resumed at step {state.step} from {cfg.resume}" if resume else ""))
    ddp_model = nn.parallel.DistributedDataParallel(model) if info.world > 1 else model
    # the training forward only: evaluation, EMA and checkpoints use the eager module (same parameters)
    train_model = torch.compile(ddp_model) if cfg.compile else ddp_model
    agree = (lambda flag: any_rank([flag], info)[0]) if info.world > 1 else None
    every = CheckpointEvery(cfg.checkpoint_every)

    # the epoch loop: every decision (stop, checkpoint, skip an empty step) is taken by all ranks together
    val = {}
    with StopRequests() as stop:
        try:
            while state.epoch < cfg.epochs:
                epoch, t_epoch = state.epoch, time.perf_counter()
                train_model.train()
                batches = sampler.batches(epoch, state.epoch_step * cfg.accum)
                progress = Progress(sampler.steps_per_epoch - state.epoch_step, f"epoch {epoch + 1}/{cfg.epochs}",
                                    cfg.progress, cfg.log_every, info.main)
                for micro, skipped in steps_of(train_data.iterate(batches, epoch, train=True), cfg.accum):
                    stopping, saving, empty = any_rank([stop.requested, every.due(state.step), not micro], info)
                    if stopping:
                        raise saver.interrupted(stop.requested or "another process's signal")
                    if saving:
                        saver.save("last.pt")
                        every.written(state.step)
                    state.add({"skipped": skipped + (sum(len(y) for _, y in micro) if empty else 0)})
                    stats = None
                    if not empty:
                        schedule.set(state.step)
                        stats = train_step(train_model, optimizer, micro, device=info.device, amp=cfg.amp,
                                           channels_last=channels_last, label_smoothing=cfg.label_smoothing,
                                           clip_grad=cfg.clip_grad, scaler=scaler, ema=ema, step=state.step,
                                           grad_probe=grad_probe, agree=agree)
                        progress.update(int(stats["count"]) * info.world, loss=stats["loss"] / stats["count"],
                                        lr=optimizer.param_groups[0]["lr"])
                    state.finish_step(stats)  # the step boundary
                progress.close()
                if any_rank([stop.requested], info)[0]:  # before a validation pass that may take minutes
                    raise saver.interrupted(stop.requested or "another process's signal")
                train_time = time.perf_counter() - t_epoch

                val = validate(ddp_model, val_data, cfg, info, channels_last)
                ema_val = validate(ema.module, val_data, cfg, info, channels_last) if ema else None
                totals = dict(zip(state.sums, all_reduce_sum(list(state.sums.values()), info), strict=True))
                row = epoch_row(epoch, state.step, optimizer, totals, val, ema_val, train_time)
                if cfg.log_shared_grads and (penalty := orthogonality_of(unwrap(model))) is not None:
                    row["orth_penalty"] = penalty
                is_best = state.finish_epoch(val["top1"])
                if run:
                    run.append_row(row)
                saver.save("last.pt")
                every.written(state.step)
                if is_best:
                    saver.save("best.pt")
                if run and cfg.plot:
                    plot_curves(run.rows(), run.path / "curves.png")
                say(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} top-1 "
                    f"{row['train_top1']:.2f}% | val loss {val['loss']:.4f} top-1 {val['top1']:.2f}% top-5 "
                    f"{val['top5']:.2f}% | {row['images_per_s']:.0f} img/s, {train_time:.0f}s"
                    + (f" | skipped {row['skipped_images']} unreadable image(s)" if row["skipped_images"] else "")
                    + (f" | validation skipped {val['skipped']}" if val.get("skipped") else ""))
        except KeyboardInterrupt as err:  # a second Ctrl-C, mid-step: no checkpoint of a half-done step
            if isinstance(err, TrainingInterrupted):
                raise
            raise saver.interrupted("a second Ctrl-C", write=False) from None

    summary = {"model": unwrap(model).name, "params": sum(p.numel() for p in model.parameters()),
               "epochs": cfg.epochs, "steps": state.step, "best_val_top1": state.best_top1,
               "final_val": val, "wall_seconds": saver.elapsed(), "run_dir": run_path, "world": info.world}
    if run:
        run.write_summary(summary)
        say(f"done in {summary['wall_seconds']:.0f}s: best val top-1 {state.best_top1:.2f}%; {run.path}")
    return summary


class Checkpointer:
    """Writes the whole ``TrainState`` (plus what is needed to rebuild the model) at a step boundary."""

    def __init__(self, run_path: str, meta: dict, state: TrainState, info: DistInfo):
        self.path, self.meta, self.state, self.info = Path(run_path), meta, state, info
        self.t_start, self.last = time.perf_counter(), None

    def elapsed(self) -> float:
        return self.state.elapsed + time.perf_counter() - self.t_start

    def save(self, name: str) -> Path:
        """Every rank calls this (the epoch's sums are added over ranks); rank 0 writes."""
        sums = dict(zip(self.state.sums, all_reduce_sum(list(self.state.sums.values()), self.info), strict=True))
        if self.info.main:
            save_checkpoint({**self.meta, **self.state.state_dict(sums, self.elapsed())}, self.path / name)
        if name == "last.pt":
            s = self.state
            self.last = (self.path / name, f"step {s.step} (epoch {s.epoch + 1}, {s.epoch_step} steps into it)")
        return self.path / name

    def interrupted(self, why: str, write: bool = True) -> TrainingInterrupted:
        """Write the checkpoint of this step boundary (unless mid-step) and say how to continue."""
        if write:
            self.save("last.pt")
        if self.last is None:
            return TrainingInterrupted(f"stopped by {why} before the first checkpoint; start the run again")
        path, where = self.last
        return TrainingInterrupted(f"stopped by {why}; resumable checkpoint {path} at {where}; continue with "
                                   f"`crunet train --resume {path}` (or --resume auto --out {self.path})")


def steps_of(batches, accum: int):
    """Group micro-batches into steps: yields (the step's non-empty micro-batches, images skipped)."""
    micro, skipped, seen = [], 0, 0
    for x, y, bad in batches:
        skipped, seen = skipped + bad, seen + 1
        if len(y):
            micro.append((x, y))
        if seen == accum:
            yield micro, skipped
            micro, skipped, seen = [], 0, 0


def run_dir_for(cfg: TrainConfig, resuming: bool) -> Path:
    if cfg.out:
        return Path(cfg.out)
    if resuming:
        return Path(cfg.resume).parent
    return default_run_dir(cfg.model)


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


def _create(cfg: TrainConfig, num_classes: int, in_chans: int) -> nn.Module:
    from crunet.models import create_model

    return create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, **cfg.model_kwargs)


def hold_out(train_data, val_data, n: int):
    """Validate on ``n`` images of the training set (for choosing hyper-parameters without the test set)."""
    if not hasattr(train_data, "hold_out"):
        raise ConfigError("--holdout works with the in-memory IDX data sets (Fashion-MNIST, MNIST); with class "
                          "folders, move some training images into a folder of their own and pass that as val/")
    return train_data.hold_out(n, val_data)


def validate(model, val_data, cfg: TrainConfig, info: DistInfo, channels_last: bool) -> dict:
    batches = eval_shard(len(val_data), cfg.batch_size * 2, info.world, info.rank)
    sums = evaluate(model, val_data.iterate(batches, 0, train=False), device=info.device, amp=cfg.amp,
                    channels_last=channels_last)
    seconds = sums.pop("seconds")
    sums = dict(zip(sums, all_reduce_sum(list(sums.values()), info), strict=True))
    return finish_eval({**sums, "seconds": seconds})


def epoch_row(epoch, step, optimizer, totals, val, ema_val, train_time) -> dict:
    n = max(1.0, totals.get("count", 0.0))
    row = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
           "train_loss": totals.get("loss", math.nan) / n, "train_top1": 100 * totals.get("correct", 0.0) / n}
    row.update({k: v / n for k, v in totals.items() if k.startswith(("loss_", "grad_"))})
    row.update({"val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"]})
    if ema_val:
        row.update({"ema_val_loss": ema_val["loss"], "ema_val_top1": ema_val["top1"], "ema_val_top5": ema_val["top5"]})
    row.update({"images_per_s": n / max(1e-9, train_time), "epoch_seconds": train_time,
                "skipped_images": int(totals.get("skipped", 0)), "val_skipped_images": val.get("skipped", 0)})
    return row
