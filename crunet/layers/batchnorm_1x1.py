"""A training-mode BatchNorm followed by a 1x1 convolution, as ONE 1x1 convolution whose weight and bias depend on
the batch statistics.

In training, ``coeff(BN(b))`` equals ``conv1x1(b, W diag(a)) + W c`` with ``a = gamma / sqrt(var + eps)`` and
``c = beta - a * mean`` (the batch's mean and biased variance per channel). Computing it this way skips the BN's
normalized output (a full pass over ``b`` forward, and a BN backward over it): the statistics take two reductions,
and the backward reuses the 1x1's own gradient products (``dz^T b`` is both the weight gradient and what the BN's
gamma gradient needs), leaving one fused multiply-add pass over ``b``. It pays most where the BN's channel count is
not a multiple of the vector width (a DSFB basis of 16 shared + 1 unique filters: 17 channels, which the channels-last
BatchNorm kernels handle at half their speed).

Same function and gradients as ``conv1x1(batch_norm(b))`` to rounding (tested in float64); the BN's running
statistics are updated as ``nn.BatchNorm2d`` updates them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

_DIMS = (0, 2, 3)


class _BatchNormThen1x1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, b: Tensor, weight: Tensor, gamma: Tensor, beta: Tensor, eps: float):  # type: ignore[override]
        m = b.numel() // b.shape[1]
        mean = b.mean(_DIMS)
        var = (b - mean.view(1, -1, 1, 1)).square_().sum(_DIMS) / m  # two-pass: no cancellation
        r = torch.rsqrt(var + eps)
        a = gamma * r
        c = beta - a * mean
        w2 = weight.flatten(1)
        w_eff = (w2 * a).view_as(weight)
        z = F.conv2d(b, w_eff, w2 @ c)
        ctx.save_for_backward(b, weight, w_eff, mean, r, a, c)
        ctx.m = m
        ctx.mark_non_differentiable(mean, var)
        return z, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, dz: Tensor, _mean: Tensor, _var: Tensor):  # type: ignore[override]
        b, weight, w_eff, mean, r, a, c = ctx.saved_tensors
        fmt = torch.channels_last if b.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        dz = dz.contiguous(memory_format=fmt)
        db, p, _ = torch.ops.aten.convolution_backward(dz, b, w_eff, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                                                      [True, True, False])
        w2, p = weight.flatten(1), p.flatten(1)  # p = dz^T b, (out, in)
        dz_sum = dz.sum(_DIMS)
        dbeta = w2.t() @ dz_sum  # the sum of the BN output's gradient
        dgamma = r * ((w2 * p).sum(0) - mean * dbeta)  # sum(dy * xhat), without forming xhat
        dweight = (p * a + dz_sum[:, None] * c[None, :]).view_as(weight)
        # BN backward: a * (dy - mean(dy) - xhat * mean(dy * xhat)); dy's part is the 1x1's input gradient (db)
        slope = -a * r * dgamma / ctx.m
        offset = -a * dbeta / ctx.m - slope * mean
        db.addcmul_(b, slope.view(1, -1, 1, 1)).add_(offset.view(1, -1, 1, 1))
        return db, dweight, dgamma, dbeta, None


def applies(bn: nn.BatchNorm2d, conv: nn.Conv2d, b: Tensor) -> bool:
    """Whether ``bn_then_1x1`` serves this call: a training-mode affine BN, a bias-free ungrouped 1x1, a float32 or
    float64 input (under bf16 autocast the statistics are left to the BN kernel, which accumulates in float32); not
    while FX traces (``b`` is a Proxy: the plain BN and 1x1 trace) nor on the meta device (shapes only)."""
    return (bn.training and not isinstance(b, torch.fx.Proxy) and b.device.type != "meta" and bn.affine
            and conv.bias is None
            and conv.groups == 1 and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and b.dtype in (torch.float32, torch.float64) and b.dtype == conv.weight.dtype
            and b.numel() > b.shape[1] and not torch.is_autocast_enabled(b.device.type))


def bn_then_1x1(b: Tensor, bn: nn.BatchNorm2d, conv: nn.Conv2d) -> Tensor:
    """``conv(bn(b))`` for a training-mode ``bn`` (see the module docstring); updates ``bn``'s running statistics."""
    z, mean, var = _BatchNormThen1x1.apply(b, conv.weight, bn.weight, bn.bias, bn.eps)
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            m = b.numel() // b.shape[1]
            bn.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
            bn.running_var.mul_(1 - factor).add_(var * (m / (m - 1)), alpha=factor)
    return z
