"""The deploy path: an inference-only copy of a model with its BatchNorms folded, its activations fused and the
memory layout that measures fastest on the device.

``deploy(model)`` leaves the model untouched. It knows no block's insides: a module that can fold defines
``fuse(unshare=True) -> nn.Module`` (an inference-only module computing its eval-mode function), and ``deploy`` walks
the copy, replacing each such module by what its ``fuse`` returns. A plain ``nn.Sequential`` has its adjacent
(``nn.Conv2d``, ``nn.BatchNorm2d``) pairs folded here (torch structure, not anyone's attribute names).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import Tensor, nn

from crunet.errors import ConfigError
from crunet.layers.fused import FusedConv, fold_bn
from crunet.layers.fused_unit import DeployedUnit

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
DESCRIBES = ("pretrained_cfg", "default_cfg", "name", "in_chans", "num_classes", "min_input_size", "design_overrides")


class DeployedModel(nn.Module):
    """The folded network ``net`` and the layout it runs in; inputs are converted to that layout on the way in."""

    def __init__(self, net: nn.Module, layout: str = "contiguous", layout_times: dict[str, float] | None = None):
        super().__init__()
        self.net, self.layout, self.layout_times = net, layout, layout_times or {}
        self.training = False
        self.net.to(memory_format=LAYOUTS[layout])

    def __getattr__(self, name: str):
        """What describes the model (``pretrained_cfg``, ``name``, ``in_chans``...) is the wrapped network's, so
        exporters and the data pipeline take a deployed model where they take a model."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name not in DESCRIBES:
                raise
        return getattr(self.net, name)

    def _prepare(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=LAYOUTS[self.layout]) if x.dim() == 4 else x

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self._prepare(x))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.net.forward_features(self._prepare(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.net.forward_head(x, pre_logits=pre_logits)

    def set_layout(self, layout: str) -> DeployedModel:
        if layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
        self.layout = layout
        self.net.to(memory_format=LAYOUTS[layout])
        return self

    def train(self, mode: bool = True) -> DeployedModel:
        if mode:
            raise RuntimeError("a deployed model is inference-only (its BatchNorms are folded): train the original")
        return super().train(False)


def deploy(model: nn.Module, unshare: bool = True, layout: str = "auto", input_size: tuple[int, ...] | None = None,
           batch_size: int = 8, repeats: int = 3) -> DeployedModel:
    """An inference-only copy of ``model``. ``unshare`` folds BNs into shared weights too (a per-unit copy of each;
    see ``crunet.layers.fused_unit``); ``layout`` is "contiguous", "channels_last" or "auto" (time both on a random
    batch of ``input_size``, default the model's ``pretrained_cfg`` input size)."""
    if layout != "auto" and layout not in LAYOUTS:
        raise ConfigError(f"layout must be 'auto' or one of {sorted(LAYOUTS)}, got {layout!r}")
    net = copy.deepcopy(model).eval().requires_grad_(False)
    net = fuse_modules(net, unshare)
    if layout != "auto":
        return DeployedModel(net, layout)
    size = input_size or getattr(net, "pretrained_cfg", {}).get("input_size") or (3, 224, 224)
    fastest, times = choose_layout(net, tuple(size), batch_size, repeats)
    return DeployedModel(net, fastest, times)


def fuse_modules(module: nn.Module, unshare: bool = True) -> nn.Module:
    """``module`` with every submodule that defines ``fuse`` replaced by ``submodule.fuse(unshare)`` (not descended
    into); the others are descended into. Modifies ``module`` in place (``deploy`` passes a copy)."""
    if callable(getattr(module, "fuse", None)):
        return module.fuse(unshare)
    if type(module) is nn.Sequential:
        _fold_conv_bn_pairs(module)
    for name, child in list(module.named_children()):
        setattr(module, name, fuse_modules(child, unshare))
    return module


def _fold_conv_bn_pairs(seq: nn.Sequential) -> None:
    """Adjacent (Conv2d, BatchNorm2d) in a plain Sequential (a stem): one conv with a bias, then an Identity."""
    for i in range(len(seq) - 1):
        if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
            seq[i], seq[i + 1] = _conv_with_bn(seq[i], seq[i + 1]), nn.Identity()


def _new_conv(conv: nn.Conv2d, weight: Tensor, bias: Tensor) -> nn.Conv2d:
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, bias=True, padding_mode=conv.padding_mode, device=weight.device, dtype=weight.dtype)
    out.weight.data.copy_(weight)
    out.bias.data.copy_(bias)
    return out.requires_grad_(False).eval()


def _conv_with_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    return _new_conv(conv, *fold_bn(conv.weight, conv.bias, bn))


@torch.inference_mode()
def choose_layout(net: nn.Module, input_size: tuple[int, ...], batch_size: int = 8,
                  repeats: int = 3) -> tuple[str, dict[str, float]]:
    """Time the forward pass in each layout (interleaved, after one warm-up each); the fastest median wins."""
    device = next(net.parameters()).device
    x = torch.randn(batch_size, *input_size, device=device)
    times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for round_ in range(repeats + 1):
        for name, fmt in LAYOUTS.items():
            net.to(memory_format=fmt)
            xf = x.contiguous(memory_format=fmt)
            start = time.perf_counter()
            net(xf)
            if round_:  # round 0 is the warm-up
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return min(medians, key=medians.get), medians


__all__ = ["DeployedModel", "DeployedUnit", "FusedConv", "LAYOUTS", "choose_layout", "deploy", "fold_bn",
           "fuse_modules"]
