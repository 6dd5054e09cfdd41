"""One optimizer step: forward and backward over the step's micro-batches, then clip, step and EMA."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from crunet.train.config import TrainConfig
from crunet.train.dist import DistInfo, any_rank
from crunet.train.distill import Teacher, distill_terms

SINGLE = DistInfo()  # one process on the CPU


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


def unwrap(model: nn.Module) -> nn.Module:
    """The eager module under DDP and ``torch.compile`` wrappers (its state dict has no ``_orig_mod.`` prefix)."""
    model = getattr(model, "_orig_mod", model)
    model = model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    return getattr(model, "_orig_mod", model)


def uses_channels_last(cfg: TrainConfig) -> bool:
    """``--channels-last`` unset means on (CPU and CUDA alike)."""
    return cfg.channels_last is not False


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def extra_loss_terms(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's own already-weighted loss terms (e.g. DSFB's orthogonality), named ``loss_<name>``."""
    fn = getattr(unwrap(model), "extra_losses", None)
    if fn is None:
        return {}
    return {(k if k.startswith("loss_") else f"loss_{k}"): v for k, v in fn().items()}


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def train_step(model: nn.Module, optimizer, micro_batches, cfg: TrainConfig, info: DistInfo = SINGLE, *, step: int = 0,
               scaler=None, ema=None, grad_probe=None, teacher: Teacher | None = None) -> dict:
    """Forward/backward over the micro-batches (gradients synchronised once, on the last), clip, step, EMA; ``cfg``
    gives amp, channels-last, label smoothing, clipping and distillation, ``info`` the device; a ``teacher`` adds
    the soft term ``loss_kd`` (``crunet.train.distill``).

    Returns sums over the step: ``loss`` (data term), ``correct``, ``count``, each extra loss term and, with a
    ``grad_probe``, its gradient statistics (taken before clipping) weighted by the step's image count.

    A non-finite loss raises NonFiniteLossError before the optimizer step, so the weights stay those of the last
    good step. Collective when ``info.world > 1``: every rank calls it for every step, runs every backward (DDP's
    collectives stay in step), and the ranks agree on a non-finite loss with one all-reduce, so all raise together."""
    optimizer.zero_grad(set_to_none=True)
    stats, bad = _forward_backward(model, micro_batches, cfg, info, scaler, step, teacher)
    if any_rank([bad is not None], info)[0]:
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"{bad or f'the loss is not finite on another process at step {step}'}; training "
                                 f"stopped, the weights of that step were not applied")
    if scaler:
        scaler.unscale_(optimizer)
    if grad_probe:
        stats.update({k: v * stats["count"] for k, v in grad_probe().items()})
    if cfg.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if ema is not None:
        ema.update(unwrap(model))
    return stats


def _forward_backward(model, micro_batches, cfg: TrainConfig, info: DistInfo, scaler, step: int, teacher=None):
    """The step's sums, and what went wrong if a loss was not finite (None if all were). One process stops at the
    first bad micro-batch; several run every backward."""
    stats: dict[str, float] = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    n_micro, bad, device = len(micro_batches), None, info.device
    for i, (x, y) in enumerate(micro_batches):
        x, y = to_device(x, device, uses_channels_last(cfg)), y.to(device, non_blocking=True)
        sync = contextlib.nullcontext() if i == n_micro - 1 or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(device, cfg.amp):
                logits = model(x)
                data_loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                extras = extra_loss_terms(model)
                label_weight = 1.0
                if teacher is not None:
                    label_weight, soft = distill_terms(teacher, x, logits, cfg.kd_temperature, cfg.kd_weight)
                    extras.update(soft)
            loss = label_weight * data_loss + sum(extras.values()) if extras else data_loss
            if bad is None and not torch.isfinite(loss):
                bad = f"the loss is {loss.item()} at step {step} (micro-batch {i})"
                if info.world == 1:
                    break
            (scaler.scale(loss / n_micro) if scaler else loss / n_micro).backward()
        stats["loss"] += data_loss.item() * len(y)
        stats["correct"] += (logits.argmax(1) == y).sum().item()
        stats["count"] += len(y)
        for name, value in extras.items():
            stats[name] = stats.get(name, 0.0) + float(value.detach()) * len(y)
    return stats, bad
