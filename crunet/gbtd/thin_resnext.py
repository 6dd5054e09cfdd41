"""Thinning a trained pre-activation ResNeXt (``PreActResNet``, no shared stage) to narrower widths by keeping the
channels of largest norm, as ``crunet.gbtd.thin`` does for BasicBlock ResNets (Li et al. 2017, "Pruning Filters for
Efficient ConvNets": each filter's L1 norm, here times the eval-mode scale of the BN its output goes through).

A unit is BN1-ReLU-1x1, BN2-ReLU-kxk (R groups), BN3-ReLU-1x1: a BN sits before each convolution, so the BN a filter's
output goes through is the next convolution's (the 1x1's filters are scored with BN2, the kxk's with BN3), and each BN
keeps the entries of the channels it reads.

Grouped convolutions. A channel of group g of the bottleneck is read only by the kxk filters of group g, so the
structured unit is a channel within its group: each group keeps its D'/R largest (the same count in every group, the
target's R groups of D'/R channels) and the grouping stays valid. Dropping whole groups instead would change R, which
the narrower designs keep (``NetCfg.width_overrides`` scales each group's width).

Residual streams. Every unit of a stage adds into the same channels, so a stage keeps one channel set, chosen by the
summed L1 norms of every filter writing into it: its first unit's projection shortcut and every unit's last 1x1.
Those have no BN between them and the sum, so their raw norm is what they add. The projection reads the previous
stream's kept channels through its own BN, as the first unit's BN1 does. A stage whose first unit has an identity
shortcut adds into the previous stage's stream and keeps its set. The stem's stream (conv, BN-ReLU) is scored by
the stem's filters times its BN's scale; the final BN and the classifier keep the last stream's channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from crunet.errors import ConfigError
from crunet.gbtd.thin import copy_bn, copy_conv, filter_scores, largest
from crunet.layers import ResidualUnit, Stage
from crunet.models.preact_resnet import PreActResNet


def thin_from_preact(source: PreActResNet, target: PreActResNet) -> None:
    """Write into ``target`` (the trained ``source``'s design at smaller or equal widths) the channels of largest
    norm; at equal widths it is a copy of ``source``."""
    _check_pair(source, target)
    with torch.no_grad():
        stem_conv, stem_bn = source.stem[0], source.stem[1].bn
        stream = largest(filter_scores(stem_conv, stem_bn), target.stem[0].out_channels)
        copy_conv(stem_conv, target.stem[0], stream, torch.arange(stem_conv.in_channels))
        copy_bn(stem_bn, target.stem[1].bn, stream)
        for old_stage, new_stage in zip(source.stages, target.stages, strict=True):
            into, stream = stream, _stage_stream(old_stage, new_stage, stream)
            for i, (old, new) in enumerate(zip(old_stage.units, new_stage.units, strict=True)):
                _copy_unit(old, new, into if i == 0 else stream, stream)
        copy_bn(source.final_norm.bn, target.final_norm.bn, stream)
        target.head.fc.weight.copy_(source.head.fc.weight[:, stream])
        target.head.fc.bias.copy_(source.head.fc.bias)


def _check_pair(source: nn.Module, target: nn.Module) -> None:
    problem = _mismatch(source, target) if isinstance(source, PreActResNet) and isinstance(target, PreActResNet) \
        else "both must be pre-activation networks, PreActResNet"
    if problem:
        raise ConfigError(f"{getattr(target, 'name', 'the target')} is not a thinner copy of "
                          f"{getattr(source, 'name', 'the source')} ({problem}): thinning keeps an unshared "
                          "pre-activation ResNeXt's stem, depths, strides and groups and narrows its widths (its "
                          "model with the study's size=F overrides, F <= 1)")


def _mismatch(source: PreActResNet, target: PreActResNet) -> str:
    """What keeps ``target`` from being a thinner copy of ``source``; empty if nothing."""
    a, b = source.cfg, target.cfg
    if (a.stem, len(a.stages), source.in_chans, source.num_classes) != \
            (b.stem, len(b.stages), target.in_chans, target.num_classes):
        return "another stem, number of stages, input channels or classes"
    if b.stem_chs > a.stem_chs:
        return f"the stem is wider, {b.stem_chs} > {a.stem_chs}"
    for i, (s, t) in enumerate(zip(a.stages, b.stages, strict=True)):
        name = f"stage conv{i + 2}"
        if s.shared or t.shared:
            return f"{name} shares its factors"
        if (s.depth, s.stride, s.num_groups) != (t.depth, t.stride, t.num_groups):
            return f"{name} has another depth, stride or number of groups"
        if t.out_chs > s.out_chs or t.width > s.width:
            return f"{name} is wider"
        if (source.stages[i].units[0].shortcut is None) != (target.stages[i].units[0].shortcut is None):
            return f"{name}'s first unit projects in one and not in the other"
    return ""


def _stage_stream(old_stage: Stage, new_stage: Stage, previous: Tensor) -> Tensor:
    """The kept channels of the stream ``old_stage`` adds into, ascending."""
    first = old_stage.units[0]
    if first.shortcut is None:
        return previous
    scores = filter_scores(first.shortcut.conv) + sum(filter_scores(u.conv3.conv) for u in old_stage.units)
    return largest(scores, new_stage.units[0].out_chs)


def _copy_unit(old: ResidualUnit, new: ResidualUnit, into: Tensor, out: Tensor) -> None:
    """``new`` = ``old`` on the stream channels ``into``, adding into ``out``, its bottleneck thinned group by group."""
    inner = _largest_in_groups(filter_scores(old.conv1.conv, old.conv2.norm.bn), old.groups, new.width)
    mid = _largest_in_groups(filter_scores(old.conv2.conv, old.conv3.norm.bn), old.groups, new.width)
    copy_bn(old.conv1.norm.bn, new.conv1.norm.bn, into)
    copy_conv(old.conv1.conv, new.conv1.conv, inner, into)
    copy_bn(old.conv2.norm.bn, new.conv2.norm.bn, inner)
    _copy_grouped(old.conv2.conv, new.conv2.conv, mid, inner, old.groups)
    copy_bn(old.conv3.norm.bn, new.conv3.norm.bn, mid)
    copy_conv(old.conv3.conv, new.conv3.conv, out, mid)
    if old.shortcut is not None:
        copy_bn(old.shortcut.norm.bn, new.shortcut.norm.bn, into)
        copy_conv(old.shortcut.conv, new.shortcut.conv, out, into)


def _largest_in_groups(scores: Tensor, groups: int, width: int) -> Tensor:
    """The ``width // groups`` largest ``scores`` of each of ``groups`` consecutive groups, ascending."""
    per_group = len(scores) // groups
    kept = scores.view(groups, per_group).topk(width // groups, dim=1).indices.sort(dim=1).values
    return (kept + per_group * torch.arange(groups)[:, None]).flatten()


def _copy_grouped(old: nn.Conv2d, new: nn.Conv2d, out: Tensor, into: Tensor, groups: int) -> None:
    """``new`` = ``old``'s filters ``out`` on its input channels ``into``, both kept group by group: each filter reads
    its own group's kept inputs, at their place within the group."""
    per_group = old.weight.shape[1]
    within = (into % per_group).view(groups, -1)
    weight = old.weight[out].view(groups, -1, *old.weight.shape[1:])
    new.weight.copy_(torch.cat([w[:, i] for w, i in zip(weight, within, strict=True)]))
