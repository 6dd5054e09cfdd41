"""One optimizer step and one evaluation pass: the heavy lifting the trainer and ``crunet eval`` share."""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from torch import nn


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


def unwrap(model: nn.Module) -> nn.Module:
    """The eager module under DDP and ``torch.compile`` wrappers (its state dict has no ``_orig_mod.`` prefix)."""
    model = getattr(model, "_orig_mod", model)
    model = model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    return getattr(model, "_orig_mod", model)


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


def train_step(model, optimizer, micro_batches, *, device, amp="none", channels_last=False, label_smoothing=0.0,
               clip_grad=0.0, scaler=None, ema=None, step=0, grad_probe=None, agree=None) -> dict:
    """Forward/backward over the micro-batches (gradients synchronised once, on the last), clip, step, EMA.

    Returns sums over the step: ``loss`` (data term), ``correct``, ``count``, each extra loss term and, with a
    ``grad_probe``, its gradient statistics (taken before clipping) weighted by the step's image count.

    A non-finite loss raises NonFiniteLossError before the optimizer step, so the weights stay those of the last
    good step. Under DDP every rank still runs its backward (the collectives stay in step) and ``agree(flag)``
    (true if any rank's flag is) makes all ranks raise together."""
    optimizer.zero_grad(set_to_none=True)
    stats: dict[str, float] = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    n_micro, bad = len(micro_batches), None
    for i, (x, y) in enumerate(micro_batches):
        x, y = to_device(x, device, channels_last), y.to(device, non_blocking=True)
        sync = contextlib.nullcontext() if i == n_micro - 1 or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(device, amp):
                logits = model(x)
                data_loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
                extras = extra_loss_terms(model)
            loss = data_loss + sum(extras.values()) if extras else data_loss
            if bad is None and not torch.isfinite(loss):
                bad = f"the loss is {loss.item()} at step {step} (micro-batch {i})"
                if agree is None:
                    break
            (scaler.scale(loss / n_micro) if scaler else loss / n_micro).backward()
        stats["loss"] += data_loss.item() * len(y)
        stats["correct"] += (logits.argmax(1) == y).sum().item()
        stats["count"] += len(y)
        for name, value in extras.items():
            stats[name] = stats.get(name, 0.0) + float(value.detach()) * len(y)
    if (agree(bad is not None) if agree is not None else bad is not None):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"{bad or f'the loss is not finite on another process at step {step}'}; training "
                                 f"stopped, the weights of that step were not applied")
    if scaler:
        scaler.unscale_(optimizer)
    if grad_probe:
        stats.update({k: v * stats["count"] for k, v in grad_probe().items()})
    if clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if ema is not None:
        ema.update(unwrap(model))
    return stats


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
