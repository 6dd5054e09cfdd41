"""SGD with Nesterov momentum, linear lr scaling, and one lr schedule object: warm-up x (cosine | step | plateau)."""

from __future__ import annotations

import math

import torch
from torch import nn

from crunet.train.config import TrainConfig


def scaled_lr(cfg: TrainConfig, global_batch: int) -> float:
    """The linear scaling rule: lr grows with the global batch when a reference batch is given."""
    return cfg.lr * global_batch / cfg.lr_ref_batch if cfg.lr_ref_batch else cfg.lr


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.SGD:
    """No weight decay on norm weights and biases (1-D tensors) unless asked; each shared tensor appears once."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 or cfg.decay_norm_and_bias else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0)


class LrSchedule:
    """lr(step) = base * warm-up ramp * shape(step) * plateau factor; call ``step`` per optimizer step and
    ``epoch_end(val_top1)`` after each evaluation."""

    def __init__(self, optimizer, base_lr: float, kind: str, steps_per_epoch: int, epochs: int,
                 warmup_epochs: float = 0.0, step_epochs=(30, 60, 80), gamma: float = 0.1, patience: int = 2,
                 step_gammas=None):
        self.optimizer, self.base_lr, self.kind = optimizer, base_lr, kind
        self.steps_per_epoch, self.total = steps_per_epoch, steps_per_epoch * epochs
        self.warmup = int(round(warmup_epochs * steps_per_epoch))
        self.step_epochs, self.gamma, self.patience = list(step_epochs), gamma, patience
        self.step_gammas = list(step_gammas) if step_gammas else [gamma] * len(self.step_epochs)  # one per step
        self.plateau_factor, self.best, self.bad_epochs = 1.0, -math.inf, 0
        self.set(0)

    @classmethod
    def for_run(cls, optimizer, base_lr: float, cfg: TrainConfig, steps_per_epoch: int) -> LrSchedule:
        """The schedule ``cfg`` asks for (kind, epochs, warm-up, step epochs and gammas, plateau patience)."""
        return cls(optimizer, base_lr, cfg.schedule, steps_per_epoch, cfg.epochs, cfg.warmup_epochs, cfg.step_epochs,
                   cfg.gamma, cfg.plateau_patience, cfg.step_gammas)

    def lr_at(self, step: int) -> float:
        ramp = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.kind == "cosine":
            t = min(1.0, max(0, step - self.warmup) / max(1, self.total - self.warmup))
            shape = 0.5 * (1 + math.cos(math.pi * t))
        elif self.kind == "step":
            shape = math.prod(g for e, g in zip(self.step_epochs, self.step_gammas, strict=True)
                              if step >= e * self.steps_per_epoch)
        else:
            shape = 1.0
        return self.base_lr * ramp * shape * self.plateau_factor

    def set(self, step: int) -> float:
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def epoch_end(self, metric: float) -> None:
        """Reduce-on-plateau: x gamma after ``patience`` epochs without a better validation accuracy."""
        if self.kind != "plateau":
            return
        if metric > self.best:
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.plateau_factor *= self.gamma
            self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"plateau_factor": self.plateau_factor, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_factor, self.best, self.bad_epochs = state["plateau_factor"], state["best"], state["bad_epochs"]
