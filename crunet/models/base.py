"""The model contract users know from timm, shared by every model family in crunet, and the one construction path.

A family's ``__init__`` calls ``super().__init__(name, in_chans)``, builds its stem and stages from its design, and
hands them to ``assemble``, which sets ``stem``, ``stages`` (an ``nn.Sequential``), ``final_norm``, ``head``,
``feature_info``, ``num_features``, ``min_input_size`` and ``pretrained_cfg`` and initializes the weights. Registered
models are built with ``Family.create(name, design, **overrides)``. Shared tensors live inside the stages, never as
top-level children, so timm's feature wrappers can replay the children in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from crunet.errors import ConfigError, UnsupportedError
from crunet.layers.complexity import Cx, module_cx
from crunet.models.validation import apply_overrides, check_in_chans

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def init_conv_bn(model: nn.Module) -> None:
    """Kaiming normal (fan_out) convolutions with zero biases, BN weight 1 and bias 0; other parameters (shared
    factors, bases) keep the initialization their owners gave them."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def make_pretrained_cfg(in_chans: int, num_classes: int, size: int, reduction: int,
                        overrides: dict[str, Any] | None = None, crop_pct: float = 0.875) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` for a model whose features are ``reduction`` times smaller than its input."""
    out = {"input_size": (in_chans, size, size), "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_pct": crop_pct,
           "interpolation": "bilinear", "num_classes": num_classes,
           "pool_size": (-(-size // reduction),) * 2,  # padded convolutions round up
           "first_conv": "stem.0", "classifier": "head.fc"}
    out.update(overrides or {})
    if len(out["mean"]) != in_chans:  # one value per channel: average them for other channel counts
        out["mean"] = (sum(out["mean"]) / len(out["mean"]),) * in_chans
        out["std"] = (sum(out["std"]) / len(out["std"]),) * in_chans
    return out


class ClassifierHead(nn.Module):
    """Global average pool -> dropout -> linear; ``num_classes=0`` leaves the pooled features."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.in_features, self.drop_rate = in_features, drop_rate
        self.global_pool = "avg"
        self.drop = nn.Dropout(drop_rate)
        self.reset(num_classes)

    def reset(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for ``num_classes`` (0: none); ``global_pool`` "avg", or "" for no pooling (timm's way
        to get the unpooled features; only without a classifier); None keeps the pooling."""
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ConfigError(f"num_classes must be a non-negative integer (0 removes the classifier), "
                             f"got {num_classes!r}")
        if global_pool not in (None, "", "avg"):
            raise ConfigError(f"global_pool must be 'avg' or '' (no pooling), got {global_pool!r}")
        pool = self.global_pool if global_pool is None else global_pool
        if num_classes and not pool:
            raise ConfigError(f"global_pool='' (no pooling) needs num_classes=0, got num_classes={num_classes}")
        self.global_pool = pool
        self.pool = nn.AdaptiveAvgPool2d(1) if pool else nn.Identity()
        self.flatten = nn.Flatten(1) if pool else nn.Identity()
        self.num_classes = num_classes
        if num_classes:
            self.fc = nn.Linear(self.in_features, num_classes)
            nn.init.normal_(self.fc.weight, std=0.01)
            nn.init.zeros_(self.fc.bias)
        else:
            self.fc = nn.Identity()

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.drop(self.flatten(self.pool(x)))
        return x if pre_logits else self.fc(x)

    def complexity(self, cx: Cx) -> Cx:
        return module_cx(self.fc, cx.add(h=1, w=1))


class StagedClassifier(nn.Module):
    """A stem, a sequence of stages, a final norm and a classifier head, with timm's model API."""

    stem: nn.Module
    stages: nn.Sequential
    final_norm: nn.Module
    head: ClassifierHead
    feature_info: list[dict[str, Any]]
    num_features: int
    in_chans: int
    min_input_size: int
    pretrained_cfg: dict[str, Any]
    name: str

    def __init__(self, name: str, in_chans: int):
        super().__init__()
        self.name, self.in_chans = name, check_in_chans(in_chans)

    @classmethod
    def create(cls, name: str, cfg: Any, num_classes: int = 1000, in_chans: int = 3,
               pretrained_cfg: dict[str, Any] | None = None, **overrides: Any) -> StagedClassifier:
        """The registered model ``name``: its design ``cfg`` with keyword ``overrides`` applied (unknown names are a
        TypeError listing the valid ones), then built."""
        return cls(apply_overrides(cfg, overrides, name), num_classes, in_chans, name, pretrained_cfg)

    def assemble(self, stem: nn.Module, stem_reduction: int, stages: Sequence[tuple[nn.Module, int, int]],
                 final_norm: nn.Module, num_classes: int, drop_rate: float, image_size: int,
                 pretrained_cfg: dict[str, Any]) -> None:
        """Set the parts and the metadata from ``stages`` given as (stage, output channels, stride), then
        initialize convolutions and BNs (``init_conv_bn``)."""
        self.stem = stem
        reduction, chs = stem_reduction, 0
        self.feature_info = []
        for i, (_, out_chs, stride) in enumerate(stages):
            reduction, chs = reduction * stride, out_chs
            self.feature_info.append({"num_chs": chs, "reduction": reduction, "module": f"stages.{i}"})
        self.stages = nn.Sequential(*(stage for stage, _, _ in stages))
        self.min_input_size, self.num_features = reduction, chs
        self.final_norm = final_norm
        self.head = ClassifierHead(chs, num_classes, drop_rate)
        self.pretrained_cfg = make_pretrained_cfg(self.in_chans, num_classes, image_size, reduction, pretrained_cfg)
        init_conv_bn(self)

    @property
    def default_cfg(self) -> dict[str, Any]:
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, cfg: dict[str, Any]) -> None:  # timm's builder assigns both names
        self.pretrained_cfg = cfg

    @property
    def head_hidden_size(self) -> int:
        """The width of the features the classifier reads (timm's name; ``forward_head(pre_logits=True)``)."""
        return self.num_features

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def check_input(self, x: Tensor) -> None:
        """A clear error, before any layer runs, for input this model cannot take; none while FX or TorchScript
        traces (an FX Proxy has no shape to check; a trace would freeze the check into the graph)."""
        if isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing():
            return
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ConfigError(f"{self.name} expects a batch of images shaped (N, {self.in_chans}, H, W), got {shape}")
        if x.shape[1] != self.in_chans:
            raise ConfigError(f"{self.name} expects {self.in_chans} input channels, got {x.shape[1]} "
                             f"(create it with in_chans={x.shape[1]} or convert the images)")
        if min(x.shape[-2:]) < self.min_input_size:
            raise ConfigError(f"{self.name} expects images of at least {self.min_input_size}x{self.min_input_size} "
                             f"pixels (its total stride), got {x.shape[-2]}x{x.shape[-1]}")

    def forward_features(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.final_norm(self.stages(self.stem(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        device = next(self.parameters()).device
        self.head.reset(num_classes, global_pool)
        self.head.to(device)
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes}

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script calls this first: say what to use instead of failing deep in the TorchScript compiler.
        raise UnsupportedError(
            f"{self.name} cannot be compiled with torch.jit.script: units reach the tensors their stage shares by "
            "reference, which TorchScript cannot follow (and PyTorch deprecates scripting); use torch.compile(model), "
            "torch.export.export(model, (x,)) or torch.jit.trace(model, x) (what `crunet export --format torchscript` "
            "writes)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def _stage_indices(self, indices: int | list[int] | tuple[int, ...] | None) -> list[int]:
        n = len(self.stages)
        if indices is None:
            return list(range(n))
        if isinstance(indices, int):
            if not 0 < indices <= n:
                raise ConfigError(f"indices={indices}: {self.name} has {n} stages, ask for the last 1..{n}")
            return list(range(n - indices, n))
        chosen = sorted(i % n if -n <= i < n else _raise_index(i, n) for i in indices)
        return chosen

    def forward_intermediates(self, x: Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The feature maps after the chosen stages (the indices of ``feature_info``), and the final features."""
        if output_fmt != "NCHW":
            raise ConfigError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take = self._stage_indices(indices)
        self.check_input(x)
        x = self.stem(x)
        intermediates = []
        last = take[-1] if (stop_early or intermediates_only) else len(self.stages) - 1
        for i, stage in enumerate(self.stages[: last + 1]):
            x = stage(x)
            if i in take:
                is_last = i == len(self.stages) - 1
                intermediates.append(self.final_norm(x) if norm and is_last else x)
        if intermediates_only:
            return intermediates
        return self.final_norm(x), intermediates

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        take = self._stage_indices(indices)
        self.stages = self.stages[: take[-1] + 1]
        if prune_norm:
            self.final_norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take

    def complexity(self, cx: Cx) -> Cx:
        for module in (self.stem, self.stages, self.final_norm, self.head):
            cx = module_cx(module, cx)
        return cx


def _raise_index(i: int, n: int) -> int:
    raise ConfigError(f"stage index {i} is out of range for a model with {n} stages")
