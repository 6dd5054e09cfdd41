"""Series over epochs, read from the per-epoch metrics each run logged (``results/epochs/``): a cell's mean test error
by epoch, each tier-3 comparison's gap by epoch, and the shared bases' gradient norms. The plots draw them; the
report tabulates the gradients of DSFB's three tier-3 regularizer settings."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crunet.study.cells import (
    TIER3_COMPARISONS,
    Comparison,
    Row,
    cells,
    epoch_metrics,
    find,
    regularizer_setting,
)

# (label, metric column): each logged epoch's values, one per run; the columns are the shared tensors' mean gradient
# norm per step ("grad_<tensor>") and the orthogonality penalty
GradientSeries = dict[tuple[str, str], dict[int, list[float]]]
PENALTY = "orth_penalty"


def mean_error_by_epoch(results: Path, group: list[Row]) -> dict[int, float]:
    """Test error (100 - val_top1) at each epoch, averaged over the runs of ``group`` that logged it."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for row in group:
        for epoch in epoch_metrics(results, row["key"]):
            if epoch.get("val_top1"):
                by_epoch[int(epoch["epoch"])].append(100.0 - float(epoch["val_top1"]))
    return {e: statistics.fmean(v) for e, v in by_epoch.items()}


def comparison_gaps(results: Path, rows: list[Row], comparisons: Iterable[Comparison] = TIER3_COMPARISONS
                    ) -> dict[str, tuple[list[int], list[float]]]:
    """Each of ``comparisons`` with both cells logged: (its epochs, the gap at each), labelled with its question and
    run counts."""
    table, gaps = cells(rows), {}
    for c in comparisons:
        a, b = find(table, c.candidate, c.dataset), find(table, c.reference, c.dataset)
        if not a or not b:
            continue
        ea, eb = mean_error_by_epoch(results, a[1]), mean_error_by_epoch(results, b[1])
        if epochs := sorted(set(ea) & set(eb)):
            gaps[f"{c.question} (n={len(a[1])} vs {len(b[1])})"] = (epochs, [ea[e] - eb[e] for e in epochs])
    return gaps


def gradient_series(results: Path, labelled_runs: Iterable[tuple[str, Row]]) -> GradientSeries:
    """The gradient norms and orthogonality penalty the runs logged, grouped by each run's label."""
    series: GradientSeries = defaultdict(lambda: defaultdict(list))
    for label, row in labelled_runs:
        for epoch in epoch_metrics(results, row["key"]):
            for column, value in epoch.items():
                if (column.startswith("grad_") or column == PENALTY) and value:
                    series[(label, column)][int(epoch["epoch"])].append(float(value))
    return series


def tier3_regularizer_gradients(results: Path, rows: list[Row]) -> GradientSeries:
    """DSFB S16U1's tier-3 runs, labelled by their regularizer setting."""
    return gradient_series(results, ((setting, row) for row in rows if (setting := regularizer_setting(row))))


def logged_columns(series: GradientSeries) -> list[str]:
    """The metric columns of ``series``: the gradient norms by tensor name, then the penalty."""
    return sorted({column for _, column in series}, key=lambda column: (column == PENALTY, column))


@dataclass(frozen=True)
class Drift:
    """One series (mean over runs at each epoch) read at its first epoch, its lowest and its last."""

    runs: int
    first: float
    lowest: float
    lowest_epoch: int
    last: float
    last_epoch: int

    @property
    def growth(self) -> float:
        """The last epoch's value over the lowest: how far it climbed back after its fall."""
        return self.last / self.lowest


def drift(by_epoch: dict[int, list[float]]) -> Drift:
    means = {e: statistics.fmean(v) for e, v in sorted(by_epoch.items())}
    lowest_epoch = min(means, key=means.get)
    last_epoch = max(means)
    return Drift(max(len(v) for v in by_epoch.values()), means[min(means)], means[lowest_epoch], lowest_epoch,
                 means[last_epoch], last_epoch)
