"""Design spaces: a network is a stem, a tuple of stages and a head, each described by a frozen dataclass.

A stage of GBTD units is described by its depth, its shortcut width d3 (``out_chs``), its bottleneck width D
(``width``), its number of Tuckers R (``groups``; ``None`` means one per channel, R = D) and by how its units share
factors (``share_every``: 0 for none, n for Collective Residual Units sharing in groups of n).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from crunet.errors import ConfigError
from crunet.models.validation import check_choice, check_common, check_positive

STEMS = ("imagenet", "small")


@dataclass(frozen=True)
class StageCfg:
    depth: int
    out_chs: int
    width: int
    groups: int | None = 1
    stride: int = 2
    share_every: int = 0
    extra_1x1: bool = True

    def __post_init__(self) -> None:
        check_positive("StageCfg", depth=self.depth, out_chs=self.out_chs, width=self.width, stride=self.stride)
        if self.groups is not None:
            check_positive("StageCfg", groups=self.groups)
            if self.width % self.groups:
                raise ConfigError(f"StageCfg.width={self.width} is not divisible by StageCfg.groups={self.groups}")
        if not isinstance(self.share_every, int) or self.share_every < 0:
            raise ConfigError(f"StageCfg.share_every must be 0 (no sharing) or a positive integer, "
                             f"got {self.share_every!r}")
        if self.share_every > self.depth:
            raise ConfigError(f"StageCfg.share_every={self.share_every} is larger than the stage "
                             f"(depth={self.depth}): a sharing group cannot span more units than the stage has")

    @property
    def num_groups(self) -> int:
        """R, the number of Tuckers (groups of the 3x3)."""
        return self.width if self.groups is None else self.groups

    @property
    def shared(self) -> bool:
        return self.share_every > 0


@dataclass(frozen=True)
class NetCfg:
    stages: tuple[StageCfg, ...]
    stem: str = "imagenet"
    stem_chs: int = 64
    bn_eps: float = 1e-5
    zero_init_last: bool = False
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        if not self.stages or not all(isinstance(s, StageCfg) for s in self.stages):
            raise ConfigError(f"NetCfg.stages must be a non-empty tuple of StageCfg, got {self.stages!r}")
        object.__setattr__(self, "stages", tuple(self.stages))
        check_choice("NetCfg", "stem", self.stem, STEMS)
        check_positive("NetCfg", stem_chs=self.stem_chs)
        check_common("NetCfg", self.bn_eps, self.drop_rate)

    @property
    def stem_reduction(self) -> int:
        return 4 if self.stem == "imagenet" else 1

    def width_overrides(self, k: float) -> dict[str, Any]:
        """The overrides that scale every width by ``k`` (about ``k**2`` times the parameters): each stage's shortcut
        and bottleneck widths (the latter a multiple of its Tuckers) and the stem."""
        stages = tuple(replace(s, out_chs=scale_width(s.out_chs, k), width=scale_width(s.width, k, s.groups or 1))
                       for s in self.stages)
        return {"stages": stages, "stem_chs": scale_width(self.stem_chs, k)}

    def scaled(self, k: float) -> NetCfg:
        """This design with every width times ``k``."""
        return replace(self, **self.width_overrides(k))


def scale_width(value: int, k: float, multiple: int = 1) -> int:
    """``value * k`` rounded to a multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, round(value * k / multiple) * multiple)


def bottleneck_stages(depths: tuple[int, ...], widths: tuple[int, ...], groups: tuple[int | None, ...] | int | None,
                      out_chs: tuple[int, ...] = (256, 512, 1024, 2048), share_every: tuple[int, ...] | None = None,
                      first_stride: int = 1) -> tuple[StageCfg, ...]:
    """The usual stage list: the first stage keeps the stem's resolution, the others halve it."""
    n = len(depths)
    groups = groups if isinstance(groups, tuple) else (groups,) * n
    share_every = share_every or (0,) * n
    if not len(widths) == len(groups) == len(out_chs) == len(share_every) == n:
        raise ConfigError("bottleneck_stages: depths, widths, groups, out_chs and share_every must have equal lengths")
    return tuple(StageCfg(d, c, w, g, first_stride if i == 0 else 2, s)
                 for i, (d, c, w, g, s) in enumerate(zip(depths, out_chs, widths, groups, share_every, strict=True)))
