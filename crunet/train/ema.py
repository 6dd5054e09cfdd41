"""Exponential moving average of the weights, over ``state_dict()``: each shared tensor is listed (and updated)
exactly once per step, because a CRU sharing group owns its tensors once."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema = decay * ema + (1 - decay) * weights; integer buffers (BN batch counts) are copied."""
        ema_state = self.module.state_dict()
        for name, value in model.state_dict().items():
            ema = ema_state[name]
            if ema.is_floating_point():
                ema.lerp_(value.detach(), 1.0 - self.decay)
            else:
                ema.copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
