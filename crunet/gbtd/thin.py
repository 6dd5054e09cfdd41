"""Thinning a trained ResNet (BasicBlock) to narrower widths by keeping the filters of largest norm (structured
pruning, as Li et al. 2017 "Pruning Filters for Efficient ConvNets": each filter's L1 norm; here the norm of the
filter with its BN's scale folded in, what the filter adds to its output).

Inside a block, conv1's kept filters are its largest. A stage's residual stream is one set of channels for all its
blocks (the identity shortcuts add them together), chosen by the summed norms of every filter writing into it (the
stem or the first block's shortcut, and each block's conv2). A zero-padding shortcut (option A) ties a stage's stream
to the previous one's: it carries channel c of stage g to channel c + (w_{g+1} - w_g) // 2, so the kept channels of
stage g, shifted, are kept in stage g+1, and the padding channels around them are chosen from the original's
padding channels, below and above.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from crunet.errors import ConfigError
from crunet.layers.dsfb_blocks import BasicBlock


def thin_from_resnet(source: nn.Module, target: nn.Module) -> None:
    """Write into ``target`` (the design of the trained ``source`` at smaller widths) the filters of largest norm."""
    _check_pair(source, target)
    a, b = source.cfg, target.cfg
    with torch.no_grad():
        stem_scores = filter_scores(source.stem[0], source.stem[1])
        streams, previous = [], None
        for g, (old_stage, new_stage) in enumerate(zip(source.stages, target.stages, strict=True)):
            scores = sum(filter_scores(block.conv2, block.bn2) for block in old_stage.blocks)
            if g == 0:
                scores = scores + stem_scores
            kept = _stream(scores, b.widths[g], previous, a.widths[g - 1] if g else 0, b.widths[g - 1] if g else 0,
                           a.shortcut == "A" and g > 0)
            for block_old, block_new in zip(old_stage.blocks, new_stage.blocks, strict=True):
                into = previous if block_old is old_stage.blocks[0] and previous is not None else kept
                _copy_block(block_old, block_new, into, kept)
            streams.append(kept)
            previous = kept
        copy_conv(source.stem[0], target.stem[0], streams[0], torch.arange(source.stem[0].in_channels))
        copy_bn(source.stem[1], target.stem[1], streams[0])
        target.head.fc.weight.copy_(source.head.fc.weight[:, streams[-1]])
        target.head.fc.bias.copy_(source.head.fc.bias)


def _check_pair(source: nn.Module, target: nn.Module) -> None:
    a, b = getattr(source, "cfg", None), getattr(target, "cfg", None)
    same = ("depths", "stem", "shortcut", "block", "sharing")
    fits = a is not None and b is not None and hasattr(a, "shortcut") and a.block == "basic" and a.sharing == "none"
    if not fits or any(getattr(a, f) != getattr(b, f) for f in same) or any(
            w > v for w, v in zip(b.widths, a.widths, strict=True)):
        raise ConfigError(f"{getattr(target, 'name', 'the target')} is not a thinner copy of "
                          f"{getattr(source, 'name', 'the source')}: thinning keeps an unshared BasicBlock ResNet's "
                          "depths and shortcuts and narrows its widths (--model-kwargs '{\"widths\": [10, 21, 42]}')")


def filter_scores(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> Tensor:
    """Each output filter's L1 norm, times the eval-mode scale of ``bn`` (the BN its output goes through, if any)."""
    norms = conv.weight.detach().abs().flatten(1).sum(1)
    return norms if bn is None else norms * bn.weight.abs() * torch.rsqrt(bn.running_var + bn.eps)


def largest(scores: Tensor, k: int) -> Tensor:
    """The indices of the ``k`` largest ``scores``, ascending."""
    return scores.topk(k).indices.sort().values


def _stream(scores: Tensor, width: int, previous: Tensor | None, old_prev: int, new_prev: int,
            zero_padded: bool) -> Tensor:
    """The kept channels of a stage's stream, ascending: the largest, or under a zero-padding shortcut the previous
    stage's kept channels shifted, with the largest padding channels below and above them."""
    if not zero_padded:
        return largest(scores, width)
    low, new_low = (len(scores) - old_prev) // 2, (width - new_prev) // 2
    below = largest(scores[:low], new_low)
    above = largest(scores[low + old_prev:], width - new_prev - new_low) + low + old_prev
    return torch.cat((below, previous + low, above))


def _copy_block(old: BasicBlock, new: BasicBlock, into: Tensor, out: Tensor) -> None:
    inner = largest(filter_scores(old.conv1, old.bn1), new.conv1.out_channels)
    copy_conv(old.conv1, new.conv1, inner, into)
    copy_bn(old.bn1, new.bn1, inner)
    copy_conv(old.conv2, new.conv2, out, inner)
    copy_bn(old.bn2, new.bn2, out)
    if isinstance(old.shortcut, nn.Sequential):
        copy_conv(old.shortcut[0], new.shortcut[0], out, into)
        copy_bn(old.shortcut[1], new.shortcut[1], out)


def copy_conv(old: nn.Conv2d, new: nn.Conv2d, out: Tensor, into: Tensor) -> None:
    """``new`` = ``old``'s filters ``out`` on its input channels ``into`` (an ungrouped convolution)."""
    new.weight.copy_(old.weight[out][:, into])


def copy_bn(old: nn.BatchNorm2d, new: nn.BatchNorm2d, keep: Tensor) -> None:
    """``new`` = ``old``'s entries for the channels ``keep``."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).copy_(getattr(old, name)[keep])
