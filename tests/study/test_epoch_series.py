"""Reading a per-epoch series: its first epoch, its lowest and its last, each a mean over the runs that logged it."""

import pytest

from crunet.study.epoch_series import drift


def test_drift_reads_the_mean_over_runs_at_the_first_lowest_and_last_epoch():
    d = drift({3: [1.0, 2.0], 1: [1.0, 3.0], 2: [0.5, 0.5]})
    assert (d.runs, d.first, d.lowest, d.lowest_epoch, d.last, d.last_epoch) == (2, 2.0, 0.5, 2, 1.5, 3)
    assert d.growth == pytest.approx(3.0)


def test_a_series_still_falling_at_its_last_epoch_has_no_growth():
    d = drift({1: [4.0], 2: [2.0], 3: [1.0]})
    assert (d.lowest_epoch, d.last_epoch, d.growth) == (3, 3, 1.0)
