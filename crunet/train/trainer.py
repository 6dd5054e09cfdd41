"""``crunet train``: read it top to bottom. ``train`` resolves the config and the checkpoint to resume, claims the
run directory, ``setup`` builds the run, then per epoch ``train_epoch`` and ``end_epoch`` (validate, record, save).

The loop's state (weights, optimizer, schedule, EMA, RNG, position, sums) is one object, ``TrainState``, saved and
restored whole. Checkpoints are written only at step boundaries, after the step counter has moved. SIGTERM, SIGINT
and SIGUSR1 stop the run at the next boundary with a resumable checkpoint; ``--checkpoint-every`` adds mid-epoch
checkpoints; ``--resume auto`` continues from the newest valid checkpoint of ``--out``. One process at a time
writes a run directory: a second one is refused at once, naming the holder.

Under torchrun every decision (stop, checkpoint, skip an empty step, a non-finite loss) is taken by all ranks
together, with one small all-reduce; the functions below are collective unless they say otherwise.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Iterator

from torch import nn

from crunet.train.checkpoint import resolve_resume
from crunet.train.config import TrainConfig
from crunet.train.dist import all_reduce_sum, any_rank, cleanup, setup_distributed
from crunet.train.evaluate import validate
from crunet.train.plot import plot_curves
from crunet.train.progress import Progress
from crunet.train.run_dir import check_run_dir, claim_run_dir
from crunet.train.setup import Run, check_device_options, setup
from crunet.train.shared_grads import orthogonality_of
from crunet.train.signals import StopRequests, TrainingInterrupted
from crunet.train.steps import train_step

__all__ = ["TrainingInterrupted", "train"]


def train(cfg: TrainConfig, model: nn.Module | None = None) -> dict:
    """Train ``cfg.model`` (or the given model) and return the summary that summary.json also holds."""
    auto = cfg.resume == "auto"
    cfg, resume = resolve_resume(cfg)  # a bad checkpoint fails before any write
    info = setup_distributed(cfg.device)
    finished, lock = False, None
    try:
        check_device_options(cfg, info)
        run_path, lock = claim_run_dir(cfg, resume is not None, info)  # a second writer is refused here
        check_run_dir(run_path, resume is not None or auto)  # auto, nothing to resume: what is there is replaced
        summary = fit(setup(cfg, model, resume, info, run_path))
        finished = True
        return summary
    finally:
        if lock is not None:
            lock.release(failed=not finished)
        # torch.optim.SGD's constructor leaves its callers' frames in a reference cycle, so the Run (and its DDP
        # wrapper, which holds the process group) would outlive this call until the cyclic collector runs: at exit,
        # after the group is destroyed, where Gloo then aborts the process. Free it here, before the group goes.
        gc.collect()
        cleanup(info, finished)


def fit(run: Run) -> dict:
    """The epoch loop, then the summary. A signal stops it at the next step boundary with a checkpoint."""
    val = {}
    with StopRequests() as stop, second_ctrl_c(run):
        while run.state.epoch < run.cfg.epochs:
            t_epoch = time.perf_counter()
            train_epoch(run, stop)
            val = end_epoch(run, time.perf_counter() - t_epoch)
    return finish(run, val)


@contextlib.contextmanager
def second_ctrl_c(run: Run) -> Iterator[None]:
    """A second Ctrl-C raises mid-step: no checkpoint of a half-done step, a message naming the last one."""
    try:
        yield
    except KeyboardInterrupt as err:
        if isinstance(err, TrainingInterrupted):
            raise
        raise run.saver.interrupted("a second Ctrl-C", write=False) from None


def train_epoch(run: Run, stop: StopRequests) -> None:
    """The epoch's remaining steps; before each, the ranks agree whether to stop, save, or skip an empty step."""
    cfg, info, state = run.cfg, run.info, run.state
    run.train_model.train()
    batches = run.sampler.batches(state.epoch, state.epoch_step * cfg.accum)
    progress = Progress(run.sampler.steps_per_epoch - state.epoch_step, f"epoch {state.epoch + 1}/{cfg.epochs}",
                        cfg.progress, cfg.log_every, info.main)
    for micro, skipped in steps_of(run.train_data.iterate(batches, state.epoch, train=True), cfg.accum):
        stopping, saving, empty = any_rank([stop.requested, run.policy.due(state.step), not micro], info)
        if stopping:
            raise run.saver.interrupted(stop.requested or "another process's signal")
        if saving:
            save_last(run)
        state.add({"skipped": skipped + (sum(len(y) for _, y in micro) if empty else 0)})
        state.finish_step(None if empty else step(run, micro, progress))  # the step boundary
    progress.close()
    if any_rank([stop.requested], info)[0]:  # before a validation pass that may take minutes
        raise run.saver.interrupted(stop.requested or "another process's signal")


def step(run: Run, micro: list, progress: Progress) -> dict:
    """One optimizer step at the schedule's learning rate; returns its sums."""
    state, optimizer = run.state, run.state.optimizer
    state.schedule.set(state.step)
    stats = train_step(run.train_model, optimizer, micro, run.cfg, run.info, step=state.step, scaler=state.scaler,
                       ema=state.ema, grad_probe=run.grad_probe, teacher=run.teacher)
    progress.update(int(stats["count"]) * run.info.world, loss=stats["loss"] / stats["count"],
                    lr=optimizer.param_groups[0]["lr"])
    return stats


def end_epoch(run: Run, train_time: float) -> dict:
    """Validate (and the EMA), append the epoch's row, save last.pt (and best.pt), plot; returns the validation."""
    cfg, info, state = run.cfg, run.info, run.state
    epoch = state.epoch
    val = validate(run.ddp_model, run.val_data, cfg, info)
    ema_val = validate(state.ema.module, run.val_data, cfg, info) if state.ema else None
    totals = dict(zip(state.sums, all_reduce_sum(list(state.sums.values()), info), strict=True))
    row = epoch_row(epoch, state.step, state.optimizer, totals, val, ema_val, train_time)
    if cfg.log_shared_grads and (penalty := orthogonality_of(run.model)) is not None:
        row["orth_penalty"] = penalty
    is_best = state.finish_epoch(val["top1"])
    if run.records:
        run.records.append_row(row)
    save_last(run)
    if is_best:
        run.saver.save("best.pt")
    if run.records and cfg.plot:
        plot_curves(run.records.rows(), run.records.path / "curves.png")
    run.say(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.2f}% | "
            f"val loss {val['loss']:.4f} top-1 {val['top1']:.2f}% top-5 {val['top5']:.2f}% | "
            f"{row['images_per_s']:.0f} img/s, {train_time:.0f}s"
            + (f" | skipped {row['skipped_images']} unreadable image(s)" if row["skipped_images"] else "")
            + (f" | validation skipped {val['skipped']}" if val.get("skipped") else ""))
    return val


def save_last(run: Run) -> None:
    run.saver.save("last.pt")
    run.policy.written(run.state.step)


def finish(run: Run, val: dict) -> dict:
    """The summary (rank 0 writes summary.json)."""
    state = run.state
    summary = {"model": run.model.name, "params": sum(p.numel() for p in run.model.parameters()),
               "epochs": run.cfg.epochs, "steps": state.step, "best_val_top1": state.best_top1, "final_val": val,
               "wall_seconds": run.saver.elapsed(), "run_dir": run.path, "world": run.info.world}
    if run.records:
        run.records.write_summary(summary)
        run.say(f"done in {summary['wall_seconds']:.0f}s: best val top-1 {state.best_top1:.2f}%; {run.records.path}")
    return summary


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
