"""Deeply Shared Filter Bases on MobileNetV2, and the unshared MobileNetV2 it is compared with.

The network follows the source (ssregibility/Net_RL2, ``models/ilsvrc/mobilenetv2.py``): a biased 3x3/2 stem with
ReLU6, inverted residual blocks with ReLU (the first, t = 1, block also has its expansion 1x1), and a biased 1x1
320 -> 1280 with ReLU6 before the pool. "shared": in the stages of 32/64/96/160 channels, blocks 2..n use the
stage's shared expansion 1x1 (c -> 6c) with their own BNs. "shared++": they also share the projection 1x1 (6c -> c)
and gate their output with ECA channel attention (kernel 1 if c < 96, else 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from crunet.errors import ConfigError
from crunet.layers.complexity import Cx, conv_cx, module_cx, norm_cx
from crunet.layers.dsfb_blocks import DSFBStage
from crunet.layers.dsfb_fused import FusedBlock, conv_bn, fuse_shared
from crunet.layers.orthogonality import OrthogonalityLossMixin
from crunet.layers.shared_basis import ECA, SharedBasis
from crunet.models._registry import register_model
from crunet.models.base import StagedClassifier
from crunet.models.validation import check_choice, check_common, check_positive

# (expansion t, channels c, blocks n, stride s) of the source's stages 1-7
MOBILENETV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                      (6, 320, 1, 1))
SHARING = ("none", "shared", "shared++")


@dataclass(frozen=True)
class DSFBMobileNetV2Cfg:
    sharing: str = "none"
    shared_chs: tuple[int, ...] = (32, 64, 96, 160)  # the stages (by channels) whose blocks 2..n share
    eca: bool = False  # ECA after the projection of the sharing blocks (the source's Shared++)
    stem_chs: int = 32
    head_chs: int = 1280
    bn_eps: float = 1e-5
    drop_rate: float = 0.2
    orth_lambda: float = 10.0
    orth_unique: bool = False  # the shared-only regularizer, as the source's ImageNet script (no unique filters here)
    orth_separate: bool = False  # Shared++: each kind of shared tensor averaged alone (train_basis_double_separate)

    def __post_init__(self) -> None:
        name = "DSFBMobileNetV2Cfg"
        object.__setattr__(self, "shared_chs", tuple(self.shared_chs))
        check_choice(name, "sharing", self.sharing, SHARING)
        stage_chs = tuple(c for _, c, _, _ in MOBILENETV2_STAGES)
        for c in self.shared_chs:
            if c not in stage_chs:
                raise ConfigError(f"{name}.shared_chs: {c!r} is not the width of a stage (one of {stage_chs})")
        if not isinstance(self.eca, bool):
            raise ConfigError(f"{name}.eca must be True or False, got {self.eca!r}")
        if self.eca and self.sharing == "none":
            raise ConfigError(f"{name}.eca=True gates the sharing blocks, but sharing={self.sharing!r}")
        check_positive(name, stem_chs=self.stem_chs, head_chs=self.head_chs)
        check_common(name, self.bn_eps, self.drop_rate, self.orth_lambda)
        if not isinstance(self.orth_separate, bool):
            raise ConfigError(f"{name}.orth_separate must be True or False, got {self.orth_separate!r}")
        if self.orth_unique is not False:
            raise ConfigError(f"{name}.orth_unique must be False: MobileNetV2 shares whole 1x1 convolutions, with no "
                             f"unique filters for the CIFAR-10 form of the regularizer, got {self.orth_unique!r}")


class InvertedResidual(nn.Module):
    """1x1 expand -> BN -> ReLU -> depthwise 3x3 -> BN -> ReLU -> 1x1 project -> BN [-> ECA] (+ x if same shape).
    ``shared_expand``/``shared_project`` replace the two 1x1 by the stage's shared filters (referenced)."""

    def __init__(self, in_chs: int, out_chs: int, expansion: int, stride: int = 1,
                 shared_expand: SharedBasis | None = None, shared_project: SharedBasis | None = None,
                 eca_kernel: int = 0, bn_eps: float = 1e-5):
        super().__init__()
        mid = in_chs * expansion
        self.in_chs, self.out_chs, self.mid, self.stride = in_chs, out_chs, mid, stride
        self.__dict__["_shared_expand"] = shared_expand
        self.__dict__["_shared_project"] = shared_project
        self.conv1 = nn.Conv2d(in_chs, mid, 1, bias=False) if shared_expand is None else None
        self.bn1 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.conv3 = nn.Conv2d(mid, out_chs, 1, bias=False) if shared_project is None else None
        self.bn3 = nn.BatchNorm2d(out_chs, eps=bn_eps)
        self.eca = ECA(eca_kernel) if eca_kernel else None
        self.residual = stride == 1 and in_chs == out_chs

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x) if self.conv1 is not None else F.conv2d(x, self._shared_expand.weight())
        out = self.conv2(F.relu(self.bn1(out)))
        out = F.relu(self.bn2(out))
        out = self.conv3(out) if self.conv3 is not None else F.conv2d(out, self._shared_project.weight())
        out = self.bn3(out)
        if self.eca is not None:
            out = self.eca(out)
        return out + x if self.residual else out

    def fuse(self, unshare: bool = True) -> FusedBlock:
        """Each convolution with its BN folded (and its ReLU fused); a shared 1x1 is copied for it when
        ``unshare``, else kept shared with its BN after it. The residual add is fused into the projection."""
        expand = (conv_bn(self.conv1, self.bn1, relu=True) if self.conv1 is not None
                  else fuse_shared(self._shared_expand, self.bn1, unshare, relu=True))
        project = (conv_bn(self.conv3, self.bn3) if self.conv3 is not None
                   else fuse_shared(self._shared_project, self.bn3, unshare, relu=False))
        main = [expand, conv_bn(self.conv2, self.bn2, relu=True), project]
        return FusedBlock(main, residual=self.residual, gate=self.eca)

    def complexity(self, cx: Cx) -> Cx:
        out = norm_cx(conv_cx(cx.shape_only(), self.mid, 1, owns_weight=self.conv1 is not None))
        out = norm_cx(module_cx(self.conv2, out))
        out = norm_cx(conv_cx(out, self.out_chs, 1, owns_weight=self.conv3 is not None))
        if self.eca is not None:
            out = self.eca.complexity(out)
        return cx.then(out)


class DSFBMobileNetV2(OrthogonalityLossMixin, StagedClassifier):
    def __init__(self, cfg: DSFBMobileNetV2Cfg, num_classes: int = 1000, in_chans: int = 3,
                 name: str = "dsfb_mobilenetv2", pretrained_cfg: dict[str, Any] | None = None):
        super().__init__(name, in_chans)
        self.cfg, self.orth_lambda, self.orth_separate = cfg, float(cfg.orth_lambda), cfg.orth_separate
        stem = nn.Sequential(nn.Conv2d(in_chans, cfg.stem_chs, 3, 2, 1), nn.BatchNorm2d(cfg.stem_chs, cfg.bn_eps),
                             nn.ReLU6(inplace=True))
        stages, chs = [], cfg.stem_chs
        for i, (t, c, n, s) in enumerate(MOBILENETV2_STAGES):
            stage = _stage(cfg, chs, t, c, n, s)
            chs = c
            if i == len(MOBILENETV2_STAGES) - 1:  # the 1x1 to 1280 channels ends the last stage
                stage.blocks.append(nn.Sequential(nn.Conv2d(chs, cfg.head_chs, 1),
                                                  nn.BatchNorm2d(cfg.head_chs, cfg.bn_eps), nn.ReLU6(inplace=True)))
                chs = cfg.head_chs
            stages.append((stage, chs, s))
        self.assemble(stem, 2, stages, nn.Identity(), num_classes, cfg.drop_rate, 224, pretrained_cfg or {})


def _stage(cfg: DSFBMobileNetV2Cfg, in_chs: int, t: int, c: int, n: int, stride: int) -> DSFBStage:
    eps = cfg.bn_eps
    blocks: list[nn.Module] = [InvertedResidual(in_chs, c, t, stride, bn_eps=eps)]
    if cfg.sharing == "none" or c not in cfg.shared_chs or n == 1:
        blocks += [InvertedResidual(c, c, t, 1, bn_eps=eps) for _ in range(n - 1)]
        return DSFBStage(blocks)
    expand = SharedBasis(c, c * t, 1)
    project = SharedBasis(c * t, c, 1) if cfg.sharing == "shared++" else None
    eca_kernel = (1 if c < 96 else 3) if cfg.eca else 0
    blocks += [InvertedResidual(c, c, t, 1, expand, project, eca_kernel, eps) for _ in range(n - 1)]
    return DSFBStage(blocks, [m for m in (expand, project) if m is not None])


MOBILENETV2 = DSFBMobileNetV2Cfg()
DSFB_MOBILENETV2_SHARED = DSFBMobileNetV2Cfg("shared")
DSFB_MOBILENETV2_SHAREDPP = DSFBMobileNetV2Cfg("shared++", eca=True, orth_separate=True)  # train_ilsvrc.py:489


@register_model
def mobilenetv2(**kwargs):
    """MobileNetV2 as in the DSFB source (post-activation blocks, biased stem and 1280 conv)."""
    return DSFBMobileNetV2.create("mobilenetv2", MOBILENETV2, **kwargs)


@register_model
def dsfb_mobilenetv2_shared(**kwargs):
    """DSFB MobileNetV2-Shared: blocks 2..n of the 32/64/96/160 stages share their expansion 1x1."""
    return DSFBMobileNetV2.create("dsfb_mobilenetv2_shared", DSFB_MOBILENETV2_SHARED, **kwargs)


@register_model
def dsfb_mobilenetv2_sharedpp(**kwargs):
    """DSFB MobileNetV2-Shared++: also the projection 1x1 is shared, and ECA gates the sharing blocks."""
    return DSFBMobileNetV2.create("dsfb_mobilenetv2_sharedpp", DSFB_MOBILENETV2_SHAREDPP, **kwargs)
