"""Per stage of a model: its GBTD (R, d3*, d4*), what is shared, and the size of the factors vs the dense operators."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from crunet.errors import UnsupportedError
from crunet.gbtd.factors import factors
from crunet.gbtd.linearize import is_unit


@dataclass(frozen=True)
class StageSummary:
    name: str
    units: int
    terms: tuple[int, ...]  # R of each distinct unit configuration
    ranks: tuple[tuple[int, int], ...]  # (d3*, d4*) likewise
    sharing_groups: int  # 0: nothing shared
    factor_params: int  # A3, G (once per sharing group) and A4 of every unit
    dense_params: int  # k*k*d3*d4 of every unit's X*

    @property
    def shared(self) -> str:
        if not self.sharing_groups:
            return "nothing"
        return f"A3+G by {self.units} units in {self.sharing_groups} group(s)"

    @property
    def compression(self) -> float:
        return self.dense_params / self.factor_params


def stage_summaries(model: nn.Module) -> list[StageSummary]:
    """One summary per stage (``model.stages``) that holds residual units, named conv2, conv3, ... as in the paper."""
    out = []
    for i, stage in enumerate(getattr(model, "stages", ())):
        units = [m for m in stage.modules() if is_unit(m)]
        if units:
            out.append(_summarize(f"conv{i + 2}", units))
    if not out:
        raise UnsupportedError(f"{getattr(model, 'name', type(model).__name__)} has no stages of GBTD residual units")
    return out


def _summarize(name: str, units: list) -> StageSummary:
    seen_shared: set[int] = set()
    factor_params = dense_params = 0
    terms, ranks = [], []
    for unit in units:
        g = factors(unit)
        shared_params = g.a3.numel() + g.core.numel()
        if g.shared is None or id(g.shared) not in seen_shared:
            factor_params += shared_params
        if g.shared is not None:
            seen_shared.add(id(g.shared))
        factor_params += g.a4.numel()
        dense_params += g.dense_params()
        if g.num_terms not in terms or g.ranks not in ranks:
            terms.append(g.num_terms)
            ranks.append(g.ranks)
    return StageSummary(name, len(units), tuple(terms), tuple(ranks), len(seen_shared), factor_params, dense_params)
