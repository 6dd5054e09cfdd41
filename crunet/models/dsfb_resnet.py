"""Deeply Shared Filter Bases on post-activation ResNets (Kang & Kim, NeurIPS 2021), and their unshared baselines.

BasicBlock nets (CIFAR ResNet-32/56, ImageNet ResNet-34): within a stage every block except the first rewrites both
3x3 on a basis of ``u_g`` unique and ``s_g`` shared filters, s_g = s * 2^g and u_g = u * 2^g (stage g = 0, 1, ...).
"single" shares one basis per stage, "double" (the source's ``*``) one per convolution position. Bottleneck nets
(ImageNet ResNet-50/101): "shared" shares the 3x3 of blocks 2..n of a stage, "shared++" also their last 1x1.
Name pattern: ``s48u1`` is S48U1, ``_double`` the ``*`` variant. The source's CIFAR-100 ResNet-34s
(``dsfb_resnet34_cifar100_*``) are ResNet-34 on a 3x3 stem without max-pool: planes 64-512, projection shortcuts.

The orthogonality regularizer follows the source's scripts: the CIFAR-10 DSFB nets default to the form of its
CIFAR-10 script (``orth_unique=True``: the unique filters of blocks 2..n too), the ImageNet and CIFAR-100 ones to the
shared-only form (``crunet.layers.orthogonality``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from crunet.errors import ConfigError
from crunet.layers.dsfb_blocks import SHORTCUTS, BasicBlock, BasisBlock, Bottleneck, DSFBStage
from crunet.layers.orthogonality import OrthogonalityLossMixin
from crunet.layers.shared_basis import SharedBasis
from crunet.models._registry import register_model
from crunet.models.base import IMAGENET_MEAN, IMAGENET_STD, StagedClassifier
from crunet.models.design import scale_width
from crunet.models.validation import check_choice, check_common, check_int

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")
SHARING = {"basic": ("none", "single", "double"), "bottleneck": ("none", "shared", "shared++")}


@dataclass(frozen=True)
class DSFBResNetCfg:
    depths: tuple[int, ...]
    block: str = "basic"
    sharing: str = "none"
    shared_rank: int = 0  # s of S<s>U<u>: shared filters in the first stage, doubled every stage
    unique_rank: int = 0  # u of S<s>U<u>
    stem: str = "imagenet"
    widths: tuple[int, ...] = (64, 128, 256, 512)  # planes of each stage
    shortcut: str = "B"  # "A": zero-padding (CIFAR), "B": 1x1 projection
    bn_eps: float = 1e-5
    drop_rate: float = 0.0
    orth_lambda: float = 10.0
    orth_unique: bool = False  # the regularizer of the source's CIFAR-10 script: the unique filters too
    orth_separate: bool = False  # Shared++: each kind of shared tensor averaged alone (train_basis_double_separate)

    def __post_init__(self) -> None:
        name = "DSFBResNetCfg"
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "widths", tuple(self.widths))
        if not self.depths or len(self.depths) != len(self.widths):
            raise ConfigError(f"{name}.depths={self.depths!r} and {name}.widths={self.widths!r} must be non-empty "
                             "and of equal length")
        for d in self.depths:
            check_int(name, "depths", d, 1)
        for w in self.widths:
            check_int(name, "widths", w, 1)
        check_choice(name, "block", self.block, BLOCKS)
        check_choice(name, "sharing", self.sharing, SHARING[self.block])
        check_choice(name, "stem", self.stem, STEMS)
        check_choice(name, "shortcut", self.shortcut, SHORTCUTS)
        if self.shortcut == "A" and self.block != "basic":
            raise ConfigError(f"{name}.shortcut='A' (zero padding) needs block='basic', got block={self.block!r}")
        check_int(name, "shared_rank", self.shared_rank, 1 if self.sharing in ("single", "double") else 0)
        check_int(name, "unique_rank", self.unique_rank, 0)
        check_common(name, self.bn_eps, self.drop_rate, self.orth_lambda)
        for key in ("orth_unique", "orth_separate"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{name}.{key} must be True or False, got {getattr(self, key)!r}")
        if self.orth_unique and self.block == "bottleneck":
            raise ConfigError(f"{name}.orth_unique=True regularizes the unique filters of shared-basis convolutions, "
                             "but block='bottleneck' shares whole convolutions and has none: use orth_unique=False")

    @property
    def stem_chs(self) -> int:
        return self.widths[0]

    def width_overrides(self, k: float) -> dict[str, Any]:
        """The overrides that scale every width by ``k`` (about ``k**2`` times the parameters): the planes of every
        stage and the shared basis (whose rank grows with the planes; the unique rank stays)."""
        return {"widths": tuple(scale_width(w, k) for w in self.widths),
                "shared_rank": scale_width(self.shared_rank, k) if self.shared_rank else 0}

    def scaled(self, k: float) -> DSFBResNetCfg:
        """This design with every width times ``k``."""
        return replace(self, **self.width_overrides(k))


class DSFBResNet(OrthogonalityLossMixin, StagedClassifier):
    def __init__(self, cfg: DSFBResNetCfg, num_classes: int = 1000, in_chans: int = 3, name: str = "dsfb_resnet",
                 pretrained_cfg: dict[str, Any] | None = None):
        super().__init__(name, in_chans)
        self.cfg, self.orth_lambda, self.orth_unique = cfg, float(cfg.orth_lambda), cfg.orth_unique
        self.orth_separate = cfg.orth_separate
        stem = _stem(cfg.stem, in_chans, cfg.stem_chs, cfg.bn_eps)
        stages, chs = [], cfg.stem_chs
        make_stage = _basic_stage if cfg.block == "basic" else _bottleneck_stage
        for g, planes in enumerate(cfg.widths):
            stride = 1 if g == 0 else 2
            out_chs = planes * (Bottleneck.expansion if cfg.block == "bottleneck" else 1)
            stages.append((make_stage(cfg, g, chs, stride), out_chs, stride))
            chs = out_chs
        imagenet = cfg.stem == "imagenet"
        defaults = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD} if imagenet else {
            "mean": CIFAR10_MEAN, "std": CIFAR10_STD, "crop_pct": 1.0}
        # post-activation: every block ends in a ReLU, so there is no final norm
        self.assemble(stem, 4 if imagenet else 1, stages, nn.Identity(), num_classes, cfg.drop_rate,
                      224 if imagenet else 32, {**defaults, **(pretrained_cfg or {})})


def _stem(kind: str, in_chans: int, chs: int, bn_eps: float) -> nn.Sequential:
    if kind == "imagenet":
        return nn.Sequential(nn.Conv2d(in_chans, chs, 7, 2, 3, bias=False), nn.BatchNorm2d(chs, eps=bn_eps),
                             nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(nn.Conv2d(in_chans, chs, 3, 1, 1, bias=False), nn.BatchNorm2d(chs, eps=bn_eps),
                         nn.ReLU(inplace=True))


def _basic_stage(cfg: DSFBResNetCfg, g: int, in_chs: int, stride: int) -> DSFBStage:
    planes, depth = cfg.widths[g], cfg.depths[g]
    blocks: list[nn.Module] = [BasicBlock(in_chs, planes, stride, cfg.shortcut, cfg.bn_eps)]
    if cfg.sharing == "none" or depth == 1:
        blocks += [BasicBlock(planes, planes, 1, cfg.shortcut, cfg.bn_eps) for _ in range(depth - 1)]
        return DSFBStage(blocks)
    double = cfg.sharing == "double"
    basis = SharedBasis(planes, cfg.shared_rank * 2**g, 3, count=2 if double else 1)
    indices = (0, 1) if double else (0, 0)
    blocks += [BasisBlock(planes, cfg.unique_rank * 2**g, basis, indices, cfg.bn_eps) for _ in range(depth - 1)]
    return DSFBStage(blocks, [basis])


def _bottleneck_stage(cfg: DSFBResNetCfg, g: int, in_chs: int, stride: int) -> DSFBStage:
    planes, depth, eps = cfg.widths[g], cfg.depths[g], cfg.bn_eps
    out_chs = planes * Bottleneck.expansion
    blocks: list[nn.Module] = [Bottleneck(in_chs, planes, stride, bn_eps=eps)]
    if cfg.sharing == "none" or depth == 1:
        blocks += [Bottleneck(out_chs, planes, bn_eps=eps) for _ in range(depth - 1)]
        return DSFBStage(blocks)
    spatial = SharedBasis(planes, planes, 3)
    expand = SharedBasis(planes, out_chs, 1) if cfg.sharing == "shared++" else None
    blocks += [Bottleneck(out_chs, planes, 1, spatial, expand, eps) for _ in range(depth - 1)]
    return DSFBStage(blocks, [m for m in (spatial, expand) if m is not None])


D34, D50, D101, D32, D56 = (3, 4, 6, 3), (3, 4, 6, 3), (3, 4, 23, 3), (5, 5, 5), (9, 9, 9)
CIFAR = {"stem": "cifar", "widths": (16, 32, 64), "shortcut": "A"}
CIFAR_DSFB = {**CIFAR, "orth_unique": True}  # regularized as by the source's CIFAR-10 script
# The source's CIFAR-100 ResNet-34 (models/cifar100/resnet.py): ImageNet planes and projection shortcuts on the 3x3
# stem, no max-pool; its script (train_cifar100.py) regularizes the shared bases only, and normalizes with these.
CIFAR100_MEAN, CIFAR100_STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)
CIFAR100 = {"stem": "cifar"}

RESNET34 = DSFBResNetCfg(D34)
RESNET50 = DSFBResNetCfg(D50, "bottleneck")
RESNET101 = DSFBResNetCfg(D101, "bottleneck")
RESNET32_CIFAR = DSFBResNetCfg(D32, **CIFAR)
RESNET56_CIFAR = DSFBResNetCfg(D56, **CIFAR)
DSFB_RESNET34_S48U1_DOUBLE = DSFBResNetCfg(D34, "basic", "double", 48, 1)
DSFB_RESNET50_SHARED = DSFBResNetCfg(D50, "bottleneck", "shared")
DSFB_RESNET50_SHAREDPP = DSFBResNetCfg(D50, "bottleneck", "shared++", orth_separate=True)  # as train_ilsvrc.py:473
DSFB_RESNET101_SHARED = DSFBResNetCfg(D101, "bottleneck", "shared")
DSFB_RESNET32_S8U1 = DSFBResNetCfg(D32, "basic", "single", 8, 1, **CIFAR_DSFB)
DSFB_RESNET32_S16U1 = DSFBResNetCfg(D32, "basic", "single", 16, 1, **CIFAR_DSFB)
DSFB_RESNET32_S16U1_DOUBLE = DSFBResNetCfg(D32, "basic", "double", 16, 1, **CIFAR_DSFB)
DSFB_RESNET56_S8U1 = DSFBResNetCfg(D56, "basic", "single", 8, 1, **CIFAR_DSFB)
DSFB_RESNET56_S16U1 = DSFBResNetCfg(D56, "basic", "single", 16, 1, **CIFAR_DSFB)
DSFB_RESNET56_S16U1_DOUBLE = DSFBResNetCfg(D56, "basic", "double", 16, 1, **CIFAR_DSFB)
DSFB_RESNET34_CIFAR100 = {s: DSFBResNetCfg(D34, "basic", "single", s, 1, **CIFAR100) for s in (8, 16, 32)}


@register_model
def resnet34(**kwargs):
    """ResNet-34 (post-activation, projection shortcuts): the baseline of DSFB ResNet34-S48U1*."""
    return DSFBResNet.create("resnet34", RESNET34, **kwargs)


@register_model
def resnet50(**kwargs):
    """ResNet-50 (post-activation, stride on the 3x3): the baseline of DSFB ResNet50-Shared/Shared++."""
    return DSFBResNet.create("resnet50", RESNET50, **kwargs)


@register_model
def resnet101(**kwargs):
    """ResNet-101 (post-activation, stride on the 3x3): the baseline of DSFB ResNet101-Shared."""
    return DSFBResNet.create("resnet101", RESNET101, **kwargs)


@register_model
def resnet32_cifar(**kwargs):
    """CIFAR ResNet-32 (3x3/16 stem, planes 16/32/64, zero-padding shortcuts)."""
    return DSFBResNet.create("resnet32_cifar", RESNET32_CIFAR, **kwargs)


@register_model
def resnet56_cifar(**kwargs):
    """CIFAR ResNet-56 (3x3/16 stem, planes 16/32/64, zero-padding shortcuts)."""
    return DSFBResNet.create("resnet56_cifar", RESNET56_CIFAR, **kwargs)


@register_model
def dsfb_resnet34_s48u1_double(**kwargs):
    """DSFB ResNet34-S48U1*: two shared bases per stage, s = 48/96/192/384, u = 1/2/4/8."""
    return DSFBResNet.create("dsfb_resnet34_s48u1_double", DSFB_RESNET34_S48U1_DOUBLE, **kwargs)


@register_model
def dsfb_resnet50_shared(**kwargs):
    """DSFB ResNet50-Shared: the 3x3 of blocks 2..n of each stage is shared."""
    return DSFBResNet.create("dsfb_resnet50_shared", DSFB_RESNET50_SHARED, **kwargs)


@register_model
def dsfb_resnet50_sharedpp(**kwargs):
    """DSFB ResNet50-Shared++: the 3x3 and the last 1x1 of blocks 2..n of each stage are shared."""
    return DSFBResNet.create("dsfb_resnet50_sharedpp", DSFB_RESNET50_SHAREDPP, **kwargs)


@register_model
def dsfb_resnet101_shared(**kwargs):
    """DSFB ResNet101-Shared: the 3x3 of blocks 2..n of each stage is shared."""
    return DSFBResNet.create("dsfb_resnet101_shared", DSFB_RESNET101_SHARED, **kwargs)


@register_model
def dsfb_resnet32_s8u1(**kwargs):
    """DSFB CIFAR ResNet32-S8U1 (one shared basis per stage)."""
    return DSFBResNet.create("dsfb_resnet32_s8u1", DSFB_RESNET32_S8U1, **kwargs)


@register_model
def dsfb_resnet32_s16u1(**kwargs):
    """DSFB CIFAR ResNet32-S16U1 (one shared basis per stage)."""
    return DSFBResNet.create("dsfb_resnet32_s16u1", DSFB_RESNET32_S16U1, **kwargs)


@register_model
def dsfb_resnet32_s16u1_double(**kwargs):
    """DSFB CIFAR ResNet32-S16U1* (two shared bases per stage)."""
    return DSFBResNet.create("dsfb_resnet32_s16u1_double", DSFB_RESNET32_S16U1_DOUBLE, **kwargs)


@register_model
def dsfb_resnet56_s8u1(**kwargs):
    """DSFB CIFAR ResNet56-S8U1 (one shared basis per stage)."""
    return DSFBResNet.create("dsfb_resnet56_s8u1", DSFB_RESNET56_S8U1, **kwargs)


@register_model
def dsfb_resnet56_s16u1(**kwargs):
    """DSFB CIFAR ResNet56-S16U1 (one shared basis per stage; 0.271 M by definition, 0.22 M in the source table)."""
    return DSFBResNet.create("dsfb_resnet56_s16u1", DSFB_RESNET56_S16U1, **kwargs)


@register_model
def dsfb_resnet56_s16u1_double(**kwargs):
    """DSFB CIFAR ResNet56-S16U1* (two shared bases per stage)."""
    return DSFBResNet.create("dsfb_resnet56_s16u1_double", DSFB_RESNET56_S16U1_DOUBLE, **kwargs)


def _cifar100(name: str, cfg: DSFBResNetCfg, kwargs: dict[str, Any]):
    kwargs["pretrained_cfg"] = {"mean": CIFAR100_MEAN, "std": CIFAR100_STD, **(kwargs.get("pretrained_cfg") or {})}
    return DSFBResNet.create(name, cfg, **kwargs)


@register_model
def dsfb_resnet34_cifar100_s8u1(**kwargs):
    """DSFB CIFAR-100 ResNet34-S8U1 (3x3 stem, planes 64-512, one shared basis per stage; 5.87 M)."""
    return _cifar100("dsfb_resnet34_cifar100_s8u1", DSFB_RESNET34_CIFAR100[8], kwargs)


@register_model
def dsfb_resnet34_cifar100_s16u1(**kwargs):
    """DSFB CIFAR-100 ResNet34-S16U1 (3x3 stem, planes 64-512, one shared basis per stage; 6.49 M)."""
    return _cifar100("dsfb_resnet34_cifar100_s16u1", DSFB_RESNET34_CIFAR100[16], kwargs)


@register_model
def dsfb_resnet34_cifar100_s32u1(**kwargs):
    """DSFB CIFAR-100 ResNet34-S32U1 (3x3 stem, planes 64-512, one shared basis per stage; 7.73 M)."""
    return _cifar100("dsfb_resnet34_cifar100_s32u1", DSFB_RESNET34_CIFAR100[32], kwargs)
