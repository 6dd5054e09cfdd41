"""Collective tensor factorization (eq. 12): recovery of known shared factors, monotone ALS, clear rank errors."""

import subprocess
import sys

import pytest
import torch

import crunet.gbtd.collective as collective
from crunet.gbtd import collective_factorize


def _kernels(num_units, d3, d4, groups, d3s, d4s, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a3 = torch.randn(groups, d3, d3s, generator=g, dtype=torch.float64)
    core = torch.randn(groups, k, k, d3s, d4s, generator=g, dtype=torch.float64)
    a4 = torch.randn(num_units, groups, d4, d4s, generator=g, dtype=torch.float64)
    return torch.einsum("lroq,rabpq,rip->loiab", a4, core, a3)


@pytest.mark.parametrize(("num_units", "d3", "d4", "groups", "rank"), [
    (3, 12, 10, 1, 4),  # R = 1: a shared Tucker (ResNet / WRN units)
    (4, 16, 16, 1, (5, 3)),  # d3* != d4*
    (3, 12, 12, 6, 1),  # rank-1 terms (N x 1d, CRU-Net's R = D)
    (6, 16, 12, 12, 1),
    (1, 10, 10, 5, 1),  # a single unit: an ordinary GBTD
    (3, 16, 16, 4, 2),  # block terms (ResNeXt-like units): ALS from the HOSVD start alone can stall here
    (2, 8, 8, 2, 3),
])
def test_kernels_made_of_shared_factors_are_recovered(num_units, d3, d4, groups, rank):
    d3s, d4s = (rank, rank) if isinstance(rank, int) else rank
    x = _kernels(num_units, d3, d4, groups, d3s, d4s)
    cf = collective_factorize(x, groups, rank, max_iter=300, restarts=4)
    assert cf.a3.shape == (groups, d3, d3s) and cf.core.shape == (groups, 3, 3, d3s, d4s)
    assert cf.a4.shape == (num_units, groups, d4, d4s)
    assert cf.total_errors[-1] < 1e-6
    assert (cf.errors[-1] < 1e-6).all()
    # the reported error is the real one: recompute it from the reconstructed kernels
    recomputed = (cf.kernels() - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    torch.testing.assert_close(recomputed, cf.errors[-1], rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(cf.unit(1 % num_units).kernel()[0], cf.kernels()[1 % num_units])


def test_restarts_keep_the_best_run():
    x = _kernels(6, 16, 12, 12, 1, 1)  # this one stalls from the HOSVD start
    stalled = collective_factorize(x, 12, 1, max_iter=150)
    restarted = collective_factorize(x, 12, 1, max_iter=150, restarts=2)
    assert stalled.total_errors[-1] > 1e-2
    assert restarted.total_errors[-1] < 1e-6


def test_too_small_a_rank_cannot_recover_and_says_so():
    x = _kernels(3, 12, 12, 6, 1, 1)
    cf = collective_factorize(x, 3, 1, max_iter=50)
    assert cf.total_errors[-1] > 1e-2


@pytest.mark.parametrize("gram_limit", [collective.GRAM_LIMIT, 0])  # joint core solve, and term by term
@pytest.mark.parametrize(("groups", "rank"), [(1, 3), (3, 2), (8, 1)])
def test_error_never_increases_across_iterations(monkeypatch, gram_limit, groups, rank):
    monkeypatch.setattr(collective, "GRAM_LIMIT", gram_limit)
    x = torch.randn(3, 10, 8, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cf = collective_factorize(x, groups, rank, max_iter=25, tol=0)
    total = cf.total_errors
    assert len(total) == 26 and cf.errors.shape == (26, 3)
    assert (total[1:] <= total[:-1] * (1 + 1e-12)).all(), total
    assert total[-1] < total[0]  # and it does improve on the HOSVD start


@pytest.mark.parametrize(("groups", "rank", "match"), [
    (0, 2, "groups must be a positive integer"),
    (2, 0, "rank d3\\* must be a positive integer"),
    (2, (2, -1), "rank d4\\* must be a positive integer"),
    (True, 2, "groups must be a positive integer"),
    (2, 2.5, "rank"),
    (2, 11, "rank d3\\*=11 exceeds the kernels' input channels d3=10"),
    (2, (2, 25), "rank d4\\*=25 exceeds the stacked output channels L\\*d4=24"),
    (2, (1, 2, 3), "rank must be d3\\* or \\(d3\\*, d4\\*\\)"),
    (2, [2, 2], None),
])
def test_invalid_ranks_are_clear_value_errors(groups, rank, match):
    x = torch.randn(3, 8, 10, 3, 3, dtype=torch.float64)
    if match is None:  # a list is as good as a tuple
        assert collective_factorize(x, groups, rank, max_iter=1).a3.shape == (2, 10, 2)
        return
    with pytest.raises(ValueError, match=match):
        collective_factorize(x, groups, rank)
    with pytest.raises(ValueError, match="restarts"):
        collective_factorize(x, 1, 1, restarts=-1)


def test_invalid_kernels_are_clear_value_errors():
    with pytest.raises(ValueError, match="at least one unit"):
        collective_factorize([], 1, 1)
    with pytest.raises(ValueError, match="one shape"):
        collective_factorize([torch.randn(4, 4, 3, 3), torch.randn(4, 5, 3, 3)], 1, 1)
    with pytest.raises(ValueError, match="\\(L, d4, d3, k, k\\)"):
        collective_factorize(torch.randn(4, 4, 3), 1, 1)


def test_the_core_package_imports_without_tensorly():
    code = ("import sys; sys.modules['tensorly'] = None\n"
            "import crunet, crunet.gbtd, torch\n"
            "from crunet.gbtd import collective_factorize, factors, operator\n"
            "try:\n    collective_factorize(torch.randn(2, 4, 4, 3, 3), 1, 2)\n"
            "except ImportError as e:\n    print('needs', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "crunet[factorize]" in out.stdout
