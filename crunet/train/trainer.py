"""``crunet train``: read it top to bottom. Data, model, optimizer, then the epoch loop; helpers do the lifting."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from crunet.data import StepSampler, detect_kind, eval_shard, num_classes_of, open_split
from crunet.train.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from crunet.train.config import TrainConfig
from crunet.train.dist import DistInfo, all_reduce_sum, cleanup, setup_distributed
from crunet.train.ema import ModelEma
from crunet.train.inputs import data_spec
from crunet.train.optim import LrSchedule, build_optimizer, scaled_lr
from crunet.train.plot import plot_curves
from crunet.train.progress import Progress
from crunet.train.run_dir import RunDir, check_run_dir, default_run_dir
from crunet.train.shared_grads import SharedGradProbe, orthogonality_of
from crunet.train.state import rng_state, seed_everything, set_rng_state
from crunet.train.steps import evaluate, finish_eval, train_step, unwrap


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C: a resumable checkpoint was written; the message says where."""


def train(cfg: TrainConfig, model: nn.Module | None = None) -> dict:
    """Train ``cfg.model`` (or the given model) and return the summary that summary.json also holds."""
    resume = load_checkpoint(cfg.resume) if cfg.resume else None  # a bad checkpoint fails before any write
    cfg = cfg.merged_for_resume(resume["config"]) if resume else cfg.apply_preset()
    cfg.check()
    info = setup_distributed(cfg.device)
    try:
        return _train(cfg, model, resume, info)
    finally:
        cleanup(info)


def _train(cfg: TrainConfig, model: nn.Module | None, resume: dict | None, info: DistInfo) -> dict:
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
    if model is None:
        model = probe if probe.num_classes == num_classes else _create(cfg, num_classes, spec.in_chans)
    train_data = train_data.subset(cfg.subset) if cfg.subset else train_data
    val_data = val_data.subset(cfg.val_subset or cfg.subset) if (cfg.val_subset or cfg.subset) else val_data
    for name in getattr(train_data, "empty_classes", []):
        say(f"warning: class folder {name!r} is empty (its label is kept; --strict-data makes this an error)")

    channels_last = cfg.channels_last if cfg.channels_last is not None else True
    if cfg.amp == "fp16" and info.device.type != "cuda":
        raise ValueError("--amp fp16 needs a CUDA GPU (it needs a gradient scaler); use --amp bf16 on the CPU")
    if cfg.sync_bn and info.world > 1 and info.device.type == "cpu":
        raise ValueError("--sync-bn needs GPUs: PyTorch's SyncBatchNorm does not run on the CPU")
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model = model.to(info.device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if cfg.sync_bn and info.world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay else None
    grad_probe = SharedGradProbe(model) if cfg.log_shared_grads else None

    # optimizer and schedule
    sampler = StepSampler(len(train_data), cfg.batch_size, info.world, info.rank, cfg.accum, True, cfg.seed)
    lr = scaled_lr(cfg, sampler.global_batch)
    optimizer = build_optimizer(model, cfg, lr)
    schedule = LrSchedule(optimizer, lr, cfg.schedule, sampler.steps_per_epoch, cfg.epochs, cfg.warmup_epochs,
                          cfg.step_epochs, cfg.gamma, cfg.plateau_patience)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    generators: dict = {}  # augmentation draws are seeded per batch; only the global generators carry state

    # resume: weights, optimizer, schedule, EMA, RNG and the position in the epoch
    start_epoch, start_batch, step, best, epoch_stats, elapsed = 0, 0, 0, -math.inf, {}, 0.0
    if resume is not None:
        start_epoch, start_batch, step, best, epoch_stats, elapsed = restore(
            resume, cfg, model, optimizer, schedule, scaler, ema, generators, sampler)
        epoch_stats = epoch_stats if info.main else {}  # the partial epoch's sums are counted once, on rank 0
    run_path = check_run_dir(cfg.out or (Path(cfg.resume).parent if cfg.resume else default_run_dir(cfg.model)),
                             resume is not None)
    run = RunDir(run_path, cfg.tensorboard) if info.main else None
    if run:
        run.write_config({**cfg.to_dict(), "resolved": {"lr": lr, "global_batch": sampler.global_batch,
                          "world": info.world, "channels_last": channels_last, "num_classes": num_classes,
                          "in_chans": spec.in_chans, "img_size": spec.size, "train_images": len(train_data),
                          "val_images": len(val_data), "device": str(info.device)}})
        run.keep_epochs(start_epoch)
        say(f"training {unwrap(model).name} ({sum(p.numel() for p in model.parameters()):,} params) on "
            f"{len(train_data)} images, {info.world} process(es), global batch {sampler.global_batch}, lr {lr:.4g}; "
            f"run directory {run.path}")
    ddp_model = nn.parallel.DistributedDataParallel(model) if info.world > 1 else model

    def checkpoint(name: str, epoch: int, batch: int) -> Path | None:
        if not info.main:
            return None
        state = {"config": cfg.to_dict(), "model_name": unwrap(model).name, "num_classes": num_classes,
                 "in_chans": spec.in_chans, "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "schedule": schedule.state_dict(), "scaler": scaler.state_dict() if scaler else {},
                 "ema": ema.state_dict() if ema else {}, "epoch": epoch, "batch": batch, "step": step,
                 "global_batch": sampler.global_batch, "best_top1": best, "epoch_stats": epoch_stats,
                 "elapsed": elapsed + time.perf_counter() - t_start, "rng": rng}
        return save_checkpoint(state, run.path / name)

    # the epoch loop
    t_start, val, rng = time.perf_counter(), {}, rng_state(generators)
    for epoch in range(start_epoch, cfg.epochs):
        ddp_model.train()
        t_epoch, skipped = time.perf_counter(), 0
        batches = sampler.batches(epoch, start_batch)
        progress = Progress(len(batches) // cfg.accum, f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress,
                            cfg.log_every, info.main)
        micro, done = [], start_batch
        try:
            for x, y, bad in train_data.iterate(batches, epoch, train=True):
                skipped += bad
                micro.append((x, y))
                if len(micro) < cfg.accum:
                    continue
                micro = [(x, y) for x, y in micro if len(y)]
                if micro:
                    schedule.set(step)
                    stats = train_step(ddp_model, optimizer, micro, device=info.device, amp=cfg.amp,
                                       channels_last=channels_last, label_smoothing=cfg.label_smoothing,
                                       clip_grad=cfg.clip_grad, scaler=scaler, ema=ema, step=step,
                                       grad_probe=grad_probe)
                    step += 1
                    rng = rng_state(generators)  # as after the last whole step, for an interrupt's checkpoint
                    for k, v in stats.items():
                        epoch_stats[k] = epoch_stats.get(k, 0.0) + v
                    progress.update(int(stats["count"]) * info.world, loss=stats["loss"] / stats["count"],
                                    lr=optimizer.param_groups[0]["lr"])
                done += cfg.accum
                micro = []
        except KeyboardInterrupt:
            progress.close()
            path = checkpoint("last.pt", epoch, done)  # the batches done so far; the cut one is trained again
            raise TrainingInterrupted(f"interrupted at step {step}; resumable checkpoint {path}; continue with "
                                      f"`crunet train --resume {path}`") from None
        progress.close()
        start_batch, train_time = 0, time.perf_counter() - t_epoch

        val = validate(ddp_model, val_data, cfg, info, channels_last)
        ema_val = validate(ema.module, val_data, cfg, info, channels_last) if ema else None
        totals = dict(zip(epoch_stats, all_reduce_sum(list(epoch_stats.values()), info), strict=True))
        skipped = int(all_reduce_sum([float(skipped)], info)[0])
        row = epoch_row(epoch, step, optimizer, totals, val, ema_val, train_time, skipped)
        if cfg.log_shared_grads and (penalty := orthogonality_of(unwrap(model))) is not None:
            row["orth_penalty"] = penalty
        epoch_stats = {}
        schedule.epoch_end(val["top1"])
        is_best = val["top1"] > best
        best = max(best, val["top1"])
        if info.main:
            run.append_row(row)
            rng = rng_state(generators)
            checkpoint("last.pt", epoch + 1, 0)
            if is_best:
                checkpoint("best.pt", epoch + 1, 0)
            if cfg.plot:
                plot_curves(run.rows(), run.path / "curves.png")
            say(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.2f}% "
                f"| val loss {val['loss']:.4f} top-1 {val['top1']:.2f}% top-5 {val['top5']:.2f}% | "
                f"{row['images_per_s']:.0f} img/s, {train_time:.0f}s"
                + (f" | skipped {skipped} unreadable image(s)" if skipped else ""))

    summary = {"model": unwrap(model).name, "params": sum(p.numel() for p in model.parameters()),
               "epochs": cfg.epochs, "steps": step, "best_val_top1": best,
               "final_val": val, "wall_seconds": elapsed + time.perf_counter() - t_start,
               "run_dir": str(run.path) if run else None, "world": info.world}
    if run:
        run.write_summary(summary)
        say(f"done in {summary['wall_seconds']:.0f}s: best val top-1 {best:.2f}%; {run.path}")
    return summary


def _create(cfg: TrainConfig, num_classes: int, in_chans: int) -> nn.Module:
    from crunet.models import create_model

    return create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, **cfg.model_kwargs)


def hold_out(train_data, val_data, n: int):
    """Validate on ``n`` images of the training set (for choosing hyper-parameters without the test set)."""
    if not hasattr(train_data, "hold_out"):
        raise ValueError("--holdout works with the in-memory IDX data sets (Fashion-MNIST, MNIST); with class "
                         "folders, move some training images into a folder of their own and pass that as val/")
    return train_data.hold_out(n, val_data)


def validate(model, val_data, cfg: TrainConfig, info: DistInfo, channels_last: bool) -> dict:
    batches = eval_shard(len(val_data), cfg.batch_size * 2, info.world, info.rank)
    sums = evaluate(model, val_data.iterate(batches, 0, train=False), device=info.device, amp=cfg.amp,
                    channels_last=channels_last)
    seconds = sums.pop("seconds")
    sums = dict(zip(sums, all_reduce_sum(list(sums.values()), info), strict=True))
    return finish_eval({**sums, "seconds": seconds})


def epoch_row(epoch, step, optimizer, totals, val, ema_val, train_time, skipped) -> dict:
    n = max(1.0, totals.get("count", 0.0))
    row = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
           "train_loss": totals.get("loss", math.nan) / n, "train_top1": 100 * totals.get("correct", 0.0) / n}
    row.update({k: v / n for k, v in totals.items() if k.startswith(("loss_", "grad_"))})
    row.update({"val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"]})
    if ema_val:
        row.update({"ema_val_loss": ema_val["loss"], "ema_val_top1": ema_val["top1"], "ema_val_top5": ema_val["top5"]})
    row.update({"images_per_s": n / max(1e-9, train_time), "epoch_seconds": train_time, "skipped_images": skipped})
    return row


def restore(state, cfg, model, optimizer, schedule, scaler, ema, generators, sampler):
    """Load a checkpoint into the run's objects; returns (epoch, batch, step, best, epoch_stats, elapsed)."""
    load_model_state(unwrap(model), state["model"], cfg.resume, state.get("model_name"))
    if state["batch"] and state["global_batch"] != sampler.global_batch:
        raise ValueError(f"{cfg.resume} stopped mid-epoch with a global batch of {state['global_batch']}; resume it "
                         f"with the same global batch (now {sampler.global_batch})")
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    if scaler and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    if ema and state["ema"]:
        ema.load_state_dict(state["ema"])
    set_rng_state(state["rng"], generators)
    batch = state["batch"] - state["batch"] % cfg.accum
    return state["epoch"], batch, state["step"], state["best_top1"], state["epoch_stats"], state["elapsed"]
