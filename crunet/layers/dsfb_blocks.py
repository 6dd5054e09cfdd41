"""Post-activation residual blocks of the DSFB family and the stage that owns their shared filters.

- ``BasicBlock``: 3x3 -> BN -> ReLU -> 3x3 -> BN, + shortcut, ReLU (first block of a stage; ResNet-34/32/56).
- ``BasisBlock``: the same with both 3x3 rewritten as ``SharedBasisConv`` on the stage's shared basis.
- ``Bottleneck``: 1x1 -> 3x3 -> 1x1 (stride on the 3x3); "Shared" takes its 3x3 and "Shared++" also its last 1x1
  from the stage's owners, with per-block BNs.
- ``DSFBStage``: owns the shared filters (``shared``) and runs the blocks, which only reference them; it answers for
  its sharing groups in the orthogonality regularizer (with its convolutions' unique filters in the CIFAR-10 form).

Every block folds itself for inference (``fuse``, see ``crunet.layers.dsfb_fused``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crunet.errors import ConfigError
from crunet.layers.complexity import Cx, conv_cx, module_cx, norm_cx
from crunet.layers.dsfb_fused import FusedBlock, conv_bn, fold_sequential, fuse_shared
from crunet.layers.orthogonality import BasisGroup
from crunet.layers.shared_basis import SharedBasis, SharedBasisConv
from crunet.layers.stage import owners_then_units_cx, run_units

SHORTCUTS = ("A", "B")


class ZeroPadShortcut(nn.Module):
    """Option A of the ResNet paper (CIFAR): subsample, then pad the new channels with zeros. No parameters."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        if out_chs < in_chs:
            raise ConfigError(f"a zero-padding shortcut cannot reduce channels ({in_chs} -> {out_chs})")
        self.in_chs, self.out_chs, self.stride = in_chs, out_chs, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_chs - self.in_chs
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    def complexity(self, cx: Cx) -> Cx:
        s = self.stride
        return cx.add(c=self.out_chs, h=(cx.h - 1) // s + 1, w=(cx.w - 1) // s + 1)


def make_shortcut(in_chs: int, out_chs: int, stride: int, kind: str, bn_eps: float) -> nn.Module | None:
    if stride == 1 and in_chs == out_chs:
        return None
    if kind == "A":
        return ZeroPadShortcut(in_chs, out_chs, stride)
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs, eps=bn_eps))


def fuse_shortcut(shortcut: nn.Module | None) -> nn.Module | None:
    """A projection shortcut (1x1, BN) as one convolution with a bias; the zero-padding one stays as it is."""
    if isinstance(shortcut, nn.Sequential):
        return conv_bn(shortcut[0], shortcut[1])
    return shortcut


def _then_shortcut(cx: Cx, main: Cx, shortcut: nn.Module | None) -> Cx:
    short = module_cx(shortcut, cx.shape_only()) if shortcut is not None else cx.shape_only()
    return cx.then(short).then(main)


class BasicBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, shortcut: str = "B", bn_eps: float = 1e-5):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs, eps=bn_eps)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs, eps=bn_eps)
        self.shortcut = make_shortcut(in_chs, out_chs, stride, shortcut, bn_eps)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))

    def fuse(self, unshare: bool = True) -> FusedBlock:
        """Two convolutions with their BNs folded, the ReLU, and the add + ReLU fused in."""
        main = [conv_bn(self.conv1, self.bn1, relu=True), conv_bn(self.conv2, self.bn2, relu=True)]
        return FusedBlock(main, fuse_shortcut(self.shortcut))

    def complexity(self, cx: Cx) -> Cx:
        main = cx.shape_only()
        for module in (self.conv1, self.bn1, self.conv2, self.bn2):
            main = module_cx(module, main)
        return _then_shortcut(cx, main, self.shortcut)


class BasisBlock(nn.Module):
    """A BasicBlock whose two 3x3 use the stage's shared basis: bank ``indices[i]`` for conv i (Double: 0, 1)."""

    def __init__(self, chs: int, unique_rank: int, shared: SharedBasis, indices: tuple[int, int] = (0, 0),
                 bn_eps: float = 1e-5):
        super().__init__()
        self.conv1 = SharedBasisConv(chs, chs, unique_rank, shared, indices[0], bn_eps=bn_eps)
        self.conv2 = SharedBasisConv(chs, chs, unique_rank, shared, indices[1], bn_eps=bn_eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)

    def fuse(self, unshare: bool = True) -> FusedBlock:
        """Each shared-basis convolution collapsed (``unshare``) or with its BNs folded into its 1x1."""
        return FusedBlock([self.conv1.fuse(unshare, relu=True), self.conv2.fuse(unshare, relu=True)])

    def complexity(self, cx: Cx) -> Cx:
        return cx.then(self.conv2.complexity(self.conv1.complexity(cx.shape_only())))


class Bottleneck(nn.Module):
    """1x1 -> BN -> ReLU -> 3x3 -> BN -> ReLU -> 1x1 -> BN, + shortcut, ReLU. With ``shared_spatial`` the 3x3 and
    with ``shared_expand`` the last 1x1 are the stage's shared filters (referenced, not owned)."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int = 1, shared_spatial: SharedBasis | None = None,
                 shared_expand: SharedBasis | None = None, bn_eps: float = 1e-5):
        super().__init__()
        out_chs = planes * self.expansion
        if (shared_spatial is not None or shared_expand is not None) and (stride != 1 or in_chs != out_chs):
            raise ConfigError("a bottleneck using shared filters must keep its shape (stride 1, in_chs == out_chs)")
        self.planes, self.stride = planes, stride
        self.__dict__["_shared_spatial"] = shared_spatial
        self.__dict__["_shared_expand"] = shared_expand
        self.conv1 = nn.Conv2d(in_chs, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=bn_eps)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False) if shared_spatial is None else None
        self.bn2 = nn.BatchNorm2d(planes, eps=bn_eps)
        self.conv3 = nn.Conv2d(planes, out_chs, 1, bias=False) if shared_expand is None else None
        self.bn3 = nn.BatchNorm2d(out_chs, eps=bn_eps)
        self.shortcut = make_shortcut(in_chs, out_chs, stride, "B", bn_eps)

    def _spatial(self, x: Tensor) -> Tensor:
        if self.conv2 is not None:
            return self.conv2(x)
        return F.conv2d(x, self._shared_spatial.weight(), padding=self._shared_spatial.kernel_size // 2)

    def _expand(self, x: Tensor) -> Tensor:
        return self.conv3(x) if self.conv3 is not None else F.conv2d(x, self._shared_expand.weight())

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self._spatial(out)))
        out = self.bn3(self._expand(out))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))

    def fuse(self, unshare: bool = True) -> FusedBlock:
        """Each convolution with its BN folded; a shared one is copied for it when ``unshare``, else kept shared
        with its BN after it."""
        spatial = (conv_bn(self.conv2, self.bn2, relu=True) if self.conv2 is not None
                   else fuse_shared(self._shared_spatial, self.bn2, unshare, relu=True))
        expand = (conv_bn(self.conv3, self.bn3, relu=True) if self.conv3 is not None
                  else fuse_shared(self._shared_expand, self.bn3, unshare, relu=True))
        return FusedBlock([conv_bn(self.conv1, self.bn1, relu=True), spatial, expand], fuse_shortcut(self.shortcut))

    def complexity(self, cx: Cx) -> Cx:
        main = norm_cx(module_cx(self.conv1, cx.shape_only()))
        main = norm_cx(conv_cx(main, self.planes, 3, self.stride, owns_weight=self.conv2 is not None))
        main = norm_cx(conv_cx(main, self.planes * self.expansion, 1, owns_weight=self.conv3 is not None))
        return _then_shortcut(cx, main, self.shortcut)


class DSFBStage(nn.Module):
    """A run of blocks at one resolution; the single owner (``shared``) of the filters its blocks share."""

    def __init__(self, blocks: list[nn.Module], shared: list[nn.Module] | None = None):
        super().__init__()
        self.grad_checkpointing = False
        self.shared = nn.ModuleList(shared or [])
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        return run_units(self.blocks, x, self.grad_checkpointing)

    def orthogonality_groups(self, unique: bool = False) -> list[Tensor | BasisGroup]:
        """One group per owner (``crunet.layers.orthogonality``). ``unique``: the CIFAR-10 form, with the unique
        filters of every convolution using the owner, block by block, conv1 before conv2 (K, u, in * k * k)."""
        groups: list[Tensor | BasisGroup] = []
        for owner in self.shared:
            (shared,) = owner.orthogonality_groups()
            users = [m.unique.weight.flatten(1) for m in self.blocks.modules()
                     if isinstance(m, SharedBasisConv) and m.shared is owner and m.unique is not None] if unique else []
            groups.append(BasisGroup(shared, torch.stack(users)) if users else shared)
        return groups

    def complexity(self, cx: Cx) -> Cx:
        return owners_then_units_cx(self.shared, self.blocks, cx)

    def fuse(self, unshare: bool = True) -> DSFBStage:
        """This stage for inference: each block folded by its ``fuse`` (a plain Sequential by conv -> BN pairs).
        Unshared, every use of the shared filters has its own folded copy, so the owners are dropped."""
        self.blocks = nn.ModuleList(
            b.fuse(unshare) if callable(getattr(b, "fuse", None)) else fold_sequential(b)
            if type(b) is nn.Sequential else b for b in self.blocks)
        if unshare:
            self.shared = nn.ModuleList()
        return self
