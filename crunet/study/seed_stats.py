"""Statistics over seeds: two lists of test errors compared by Welch's interval and p, or, with one run on a side,
by Student's with a seed-to-seed sd pooled elsewhere. Plain lists in, numbers out: which runs are compared is
``cells.py``'s business."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t statistic and two-sided p-value (unequal variances); NaN when a side has fewer than 2 runs."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    result = _welch_test(a, b)
    return float(result.statistic), float(result.pvalue)


def difference_interval(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float]:
    """Welch's confidence interval of mean(a) - mean(b); NaN when a side has fewer than 2 runs."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    ci = _welch_test(a, b).confidence_interval(level)
    return float(ci.low), float(ci.high)


def _welch_test(a: list[float], b: list[float]):
    """scipy's Welch test. A side of equal errors (two runs at 7.70) has no spread, and scipy warns that its variance
    lost precision; the test is still exact (Welch's df and t then come from the other side), so the report does not
    repeat the warning."""
    import warnings

    from scipy import stats

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation", RuntimeWarning)
        return stats.ttest_ind(a, b, equal_var=False)


def pooled_test(a: list[float], b: list[float], sd: float, df: int, level: float = 0.95) -> tuple[float, float, float]:
    """Student's interval of mean(a) - mean(b) and its two-sided p, with a seed-to-seed ``sd`` estimated elsewhere
    (``df`` degrees of freedom): what a comparison with one run on a side can say."""
    if df == 0:
        return math.nan, math.nan, math.nan
    from scipy import stats

    diff = statistics.fmean(a) - statistics.fmean(b)
    scale = sd * math.sqrt(1 / len(a) + 1 / len(b))
    half = float(stats.t.ppf((1 + level) / 2, df)) * scale
    return diff - half, diff + half, float(2 * stats.t.sf(abs(diff) / scale, df))


@dataclass(frozen=True)
class Difference:
    """The candidate's mean error minus the reference's, with Welch's interval and p (both sides 2 runs or more), or
    Student's with a ``pooled`` seed-to-seed sd (one run on a side: ``pooled`` is True)."""

    ea: list[float]
    eb: list[float]
    low: float
    high: float
    p: float
    spread: float  # the larger sd of the two sides, or the pooled sd
    df: int  # of the pooled sd; 0 when Welch's
    pooled: bool

    @property
    def value(self) -> float:
        return statistics.fmean(self.ea) - statistics.fmean(self.eb)


def difference(ea: list[float], eb: list[float], pooled: tuple[float, int]) -> Difference:
    """Welch's comparison of the errors ``ea`` and ``eb``; with one run on a side, Student's with the ``pooled``
    seed-to-seed sd and its degrees of freedom."""
    if len(ea) > 1 and len(eb) > 1:
        _, p = welch(ea, eb)
        low, high = difference_interval(ea, eb)
        return Difference(ea, eb, low, high, p, max(mean_std(ea)[1], mean_std(eb)[1]), 0, False)
    sd, df = pooled  # one run on a side has no spread of its own
    low, high, p = pooled_test(ea, eb, sd, df)
    return Difference(ea, eb, low, high, p, sd, df, True)
