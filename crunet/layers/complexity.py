"""Analytic complexity, counted per module (the pycls idea).

Each of our modules has a ``complexity(cx)`` method that mirrors its ``__init__``/``forward`` and returns the
running count after it. Parameters are counted by the module that owns them (a shared tensor once); MACs and
activations by every module that uses a weight (a shared tensor once per use). Only convolutions and linear layers
count MACs, which is what ``torch.utils.flop_counter.FlopCounterMode`` reports (as 2 x MACs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from crunet.errors import ConfigError


@dataclass(frozen=True)
class Cx:
    """A running count: the current feature map shape (c, h, w) and the totals so far."""

    c: int
    h: int
    w: int
    params: int = 0
    macs: int = 0
    acts: int = 0

    def add(self, params: int = 0, macs: int = 0, acts: int = 0, **shape: int) -> Cx:
        return replace(self, params=self.params + params, macs=self.macs + macs, acts=self.acts + acts, **shape)

    def then(self, branch: Cx) -> Cx:
        """Append the totals of ``branch`` (counted from zero) and take its output shape."""
        return self.add(branch.params, branch.macs, branch.acts, c=branch.c, h=branch.h, w=branch.w)

    def shape_only(self) -> Cx:
        """The same feature map with zero totals: the start of a branch."""
        return Cx(self.c, self.h, self.w)


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv_cx(cx: Cx, out_chs: int, kernel: int, stride: int = 1, groups: int = 1, padding: int | None = None,
            bias: bool = False, owns_weight: bool = True) -> Cx:
    """A 2-d convolution; ``owns_weight=False`` for a use of a weight that another module owns."""
    padding = kernel // 2 if padding is None else padding
    h, w = _out_size(cx.h, kernel, stride, padding), _out_size(cx.w, kernel, stride, padding)
    weight = out_chs * (cx.c // groups) * kernel * kernel
    params = (weight if owns_weight else 0) + (out_chs if bias and owns_weight else 0)
    return cx.add(params=params, macs=weight * h * w, acts=out_chs * h * w, c=out_chs, h=h, w=w)


def norm_cx(cx: Cx) -> Cx:
    """A BatchNorm: an affine weight and bias per channel, no MACs (it folds into a convolution)."""
    return cx.add(params=2 * cx.c)


def pool_cx(cx: Cx, kernel: int, stride: int, padding: int = 0) -> Cx:
    return cx.add(h=_out_size(cx.h, kernel, stride, padding), w=_out_size(cx.w, kernel, stride, padding))


def global_pool_cx(cx: Cx) -> Cx:
    return cx.add(h=1, w=1)


def linear_cx(cx: Cx, out_features: int, bias: bool = True) -> Cx:
    in_features = cx.c * cx.h * cx.w
    params = in_features * out_features + (out_features if bias else 0)
    return cx.add(params=params, macs=in_features * out_features, acts=out_features, c=out_features, h=1, w=1)


def module_cx(module: nn.Module, cx: Cx) -> Cx:
    """Dispatch: our modules count themselves; a few standard ones are counted here."""
    if hasattr(module, "complexity"):
        return module.complexity(cx)
    if isinstance(module, nn.Conv2d):
        return conv_cx(cx, module.out_channels, module.kernel_size[0], module.stride[0], module.groups,
                       module.padding[0], bias=module.bias is not None)
    if isinstance(module, nn.BatchNorm2d):
        return norm_cx(cx)
    if isinstance(module, nn.Linear):
        return linear_cx(cx, module.out_features, bias=module.bias is not None)
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.Identity, nn.Dropout, nn.Flatten)):
        return cx
    if isinstance(module, nn.MaxPool2d):
        k, s, p = (module.kernel_size, module.stride, module.padding)
        return pool_cx(cx, k if isinstance(k, int) else k[0], s if isinstance(s, int) else s[0],
                       p if isinstance(p, int) else p[0])
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return global_pool_cx(cx)
    if isinstance(module, nn.Sequential):
        for child in module:
            cx = module_cx(child, cx)
        return cx
    raise TypeError(f"complexity: no analytic count for {type(module).__name__}; give it a complexity(cx) method")


def complexity(model: nn.Module, input_size: tuple[int, int, int] = (3, 224, 224)) -> dict[str, int]:
    """Parameters (each shared tensor once), MACs (each use) and activations of one image of ``input_size``."""
    if len(input_size) != 3 or any(int(s) <= 0 for s in input_size):
        raise ConfigError(f"input_size must be (channels, height, width) with positive sizes, got {input_size!r}")
    c, h, w = (int(s) for s in input_size)
    expected = getattr(model, "in_chans", c)
    if c != expected:
        raise ConfigError(f"input_size has {c} channels but the model expects in_chans={expected}")
    cx = module_cx(model, Cx(c=c, h=h, w=w))
    return {"params": cx.params, "macs": cx.macs, "acts": cx.acts}


def count_parameters(model: nn.Module) -> int:
    """Trainable tensors as PyTorch sees them: ``parameters()`` yields each shared tensor once."""
    return sum(p.numel() for p in model.parameters())


def measured_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """MACs of one image as ``FlopCounterMode`` counts them (it reports 2 x MACs)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(1, *input_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops() // 2
