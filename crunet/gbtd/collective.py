"""Collective tensor factorization (paper eq. 12): shared A3 and G, per-unit A4, for the kernels of L units.

The kernels X*_l (k x k x d3 x d4) are stacked along mode 4 into X+ (k x k x d3 x L d4), and X+ is factorized as a
block term decomposition with R terms of rank (., ., d3*, d4*): the k x k modes are kept, A3_r and G_r are therefore
shared by the L units, and A4_r splits into one d4 x d4* block per unit.

Alternating least squares from a truncated HOSVD start. Every step solves its least-squares problem exactly (A3 given
G and A4; A4 given A3 and G; all cores given A3 and A4), so the total error never increases. tensorly (optional
extra ``factorize``) gives the mode unfoldings of the HOSVD start; its Tucker / partial Tucker fit only R = 1 and it
has no block term decomposition, so the ALS steps are written here, in torch, in float64. (Its truncated SVD was
slower than an eigendecomposition of the unfolding's Gram matrix, which gives the same leading vectors.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from crunet.errors import ConfigError
from crunet.gbtd.terms import GBTD

# Above this many unknowns per spatial tap (R d3* d4*), the cores are updated one term at a time instead of jointly
# (the joint normal equations would need a matrix of that size squared).
GRAM_LIMIT = 4096


@dataclass(frozen=True)
class CollectiveFactors:
    a3: Tensor  # (R, d3, d3*), shared
    core: Tensor  # (R, k, k, d3*, d4*), shared
    a4: Tensor  # (L, R, d4, d4*), one per unit
    errors: Tensor  # (iterations + 1, L): ||X_l - X^_l|| / ||X_l|| of every unit; row 0 is the HOSVD start
    total_errors: Tensor  # (iterations + 1,): ||X+ - X^+|| / ||X+||, the objective ALS minimizes

    @property
    def num_units(self) -> int:
        return self.a4.shape[0]

    def unit(self, index: int) -> GBTD:
        """Unit ``index``'s GBTD (no biases): the shared A3 and G with its own A4."""
        r, _, d3s = self.a3.shape
        return GBTD(self.a3, self.core, self.a4[index], self.a3.new_zeros(r, d3s), self.a3.new_zeros(self.a4.shape[2]))

    def kernels(self) -> Tensor:
        """The reconstructed kernels as conv weights, (L, d4, d3, k, k)."""
        return torch.einsum("lroq,rabpq,rip->loiab", self.a4, self.core, self.a3)

    def factor_params(self) -> int:
        return self.a3.numel() + self.core.numel() + self.a4.numel()


def collective_factorize(kernels: Tensor | Sequence[Tensor], groups: int, rank: int | tuple[int, int],
                         max_iter: int = 100, tol: float = 1e-10, restarts: int = 0,
                         seed: int = 0) -> CollectiveFactors:
    """Factorize the conv weights ``kernels`` (L of them, each (d4, d3, k, k)) with ``groups`` = R shared terms of
    rank ``rank`` = d3* (or (d3*, d4*)). Each run stops after ``max_iter`` ALS sweeps or when the total relative error
    falls by less than ``tol`` in one sweep. ALS can stall in a local minimum: ``restarts`` more runs from random
    starts (seeded by ``seed``) are made, and the run with the lowest error is returned."""
    x, (num_units, d4) = _stack(kernels)
    d3s, d4s = _check_ranks(groups, rank, x.shape[2], x.shape[3])
    if not isinstance(restarts, int) or restarts < 0:
        raise ConfigError(f"collective_factorize: restarts must be a non-negative integer, got {restarts!r}")
    generator = torch.Generator().manual_seed(seed)
    best = None
    for attempt in range(restarts + 1):
        if attempt == 0:
            a3, a4 = _hosvd_start(x, groups, d3s, d4s, generator)
        else:
            a3 = torch.randn(groups, x.shape[2], d3s, generator=generator, dtype=x.dtype)
            a4 = torch.randn(groups, x.shape[3], d4s, generator=generator, dtype=x.dtype)
        run = _als(x, a3, a4, num_units, max_iter, tol)
        if best is None or run.total_errors[-1] < best.total_errors[-1]:
            best = run
    return best


def _als(x: Tensor, a3: Tensor, a4: Tensor, num_units: int, max_iter: int, tol: float) -> CollectiveFactors:
    norms = _unit_norms(x, num_units)
    core = _update_core(x, a3, a4)
    errors = [_unit_errors(x, a3, core, a4, num_units, norms)]
    for _ in range(max_iter):
        a3, core = _orthonormalize(_update_a3(x, core, a4), core, mode=3)
        a4, core = _orthonormalize(_update_a4(x, a3, core), core, mode=4)
        core = _update_core(x, a3, a4, core)
        errors.append(_unit_errors(x, a3, core, a4, num_units, norms))
        if _total(errors[-2], norms) - _total(errors[-1], norms) < tol:
            break
    total = torch.stack([_total(e, norms) for e in errors])
    groups, d4, d4s = a4.shape[0], x.shape[3] // num_units, a4.shape[2]
    per_unit_a4 = a4.view(groups, num_units, d4, d4s).permute(1, 0, 2, 3).contiguous()
    return CollectiveFactors(a3, core, per_unit_a4, torch.stack(errors), total)


def _stack(kernels: Tensor | Sequence[Tensor]) -> tuple[Tensor, tuple[int, int]]:
    """(L, d4, d3, k, k) conv weights -> X+ as (k, k, d3, L d4), float64."""
    if not isinstance(kernels, Tensor):
        kernels = list(kernels)
        if not kernels:
            raise ConfigError("collective_factorize needs the kernels of at least one unit, got none")
        shapes = {tuple(k.shape) for k in kernels}
        if len(shapes) != 1:
            raise ConfigError(f"all kernels must have one shape (d4, d3, k, k), got {sorted(shapes)}")
        kernels = torch.stack([k.detach() for k in kernels])
    if kernels.dim() != 5 or kernels.shape[0] == 0:
        raise ConfigError(f"kernels must be (L, d4, d3, k, k), got shape {tuple(kernels.shape)}")
    num_units, d4, d3, k1, k2 = kernels.shape
    x = kernels.detach().to(torch.float64).permute(3, 4, 2, 0, 1).reshape(k1, k2, d3, num_units * d4)
    return x, (num_units, d4)


def _check_ranks(groups: int, rank: int | tuple[int, int], d3: int, stacked_d4: int) -> tuple[int, int]:
    ranks = tuple(rank) if isinstance(rank, (tuple, list)) else (rank, rank)
    for name, value in (("groups", groups), ("rank d3*", ranks[0]), ("rank d4*", ranks[-1])):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"collective_factorize: {name} must be a positive integer, got {value!r}")
    if len(ranks) != 2:
        raise ConfigError(f"collective_factorize: rank must be d3* or (d3*, d4*), got {rank!r}")
    d3s, d4s = ranks
    if d3s > d3:
        raise ConfigError(f"collective_factorize: rank d3*={d3s} exceeds the kernels' input channels d3={d3}")
    if d4s > stacked_d4:
        raise ConfigError(f"collective_factorize: rank d4*={d4s} exceeds the stacked output channels L*d4={stacked_d4}")
    return d3s, d4s


def _tensorly():
    try:
        import tensorly
        from tensorly.backend import BackendManager
    except ImportError as err:  # an optional extra: the core package imports without it
        raise ImportError("collective factorization needs tensorly: pip install 'crunet[factorize]'") from err
    return tensorly, BackendManager


def _leading_vectors(x: Tensor, mode: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` leading left singular vectors of the mode-``mode`` unfolding, completed with random directions
    when ``count`` exceeds that unfolding's rank."""
    tensorly, manager = _tensorly()
    with manager.backend_context("pytorch", local_threadsafe=True):
        unfolded = tensorly.unfold(x, mode)
    found = min(count, *unfolded.shape)
    # the left singular vectors of the short, wide unfolding: eigenvectors of its small Gram matrix, largest first
    _, vectors = torch.linalg.eigh(unfolded @ unfolded.T)
    u = vectors.flip(1)[:, :found]
    if found < count:
        extra = torch.randn(unfolded.shape[0], count - found, dtype=x.dtype, generator=generator)
        u = torch.cat([u, extra], dim=1)
    return u


def _hosvd_start(x: Tensor, groups: int, d3s: int, d4s: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    u3 = _leading_vectors(x, 2, groups * d3s, generator)
    u4 = _leading_vectors(x, 3, groups * d4s, generator)
    a3 = u3.view(-1, groups, d3s).permute(1, 0, 2).contiguous()
    a4 = u4.view(-1, groups, d4s).permute(1, 0, 2).contiguous()
    return a3, a4


def _lstsq(design: Tensor, target: Tensor) -> Tensor:
    """argmin_S ||design @ S - target|| through the normal equations (the designs are tall and thin), with the
    minimum-norm solution when the design is rank-deficient."""
    return _solve_gram(design.T @ design, design.T @ target)


def _solve_gram(gram: Tensor, rhs: Tensor) -> Tensor:
    """Cholesky when the Gram matrix is safely positive definite, else the SVD-based minimum-norm solution."""
    factor, info = torch.linalg.cholesky_ex(gram)
    diag = factor.diagonal()
    if info.item() == 0 and diag.min() > diag.max() * 1e-6:  # condition number below ~1e12
        return torch.cholesky_solve(rhs, factor)
    return torch.linalg.lstsq(gram, rhs, driver="gelsd").solution


def _update_a3(x: Tensor, core: Tensor, a4: Tensor) -> Tensor:
    groups, d3s = core.shape[0], core.shape[3]
    z = torch.einsum("rabpq,rmq->abmrp", core, a4).reshape(-1, groups * d3s)
    target = x.permute(0, 1, 3, 2).reshape(-1, x.shape[2])
    return _lstsq(z, target).T.reshape(x.shape[2], groups, d3s).permute(1, 0, 2).contiguous()


def _update_a4(x: Tensor, a3: Tensor, core: Tensor) -> Tensor:
    groups, d4s = core.shape[0], core.shape[4]
    w = torch.einsum("rabpq,rip->abirq", core, a3).reshape(-1, groups * d4s)
    target = x.reshape(-1, x.shape[3])
    return _lstsq(w, target).T.reshape(x.shape[3], groups, d4s).permute(1, 0, 2).contiguous()


def _update_core(x: Tensor, a3: Tensor, a4: Tensor, core: Tensor | None = None) -> Tensor:
    """All cores given A3 and A4: independent least-squares problems per spatial tap sharing one design."""
    groups, _, d3s = a3.shape
    d4s = a4.shape[2]
    k1, k2 = x.shape[:2]
    if groups == 1:  # a Tucker core: the two factors separate
        core = torch.linalg.pinv(a3[0]) @ x @ torch.linalg.pinv(a4[0]).T
        return core.unsqueeze(0)
    if groups * d3s * d4s > GRAM_LIMIT:
        return _update_core_by_term(x, a3, a4, core)
    k3 = torch.einsum("rip,siu->rpsu", a3, a3)
    k4 = torch.einsum("rmq,smv->rqsv", a4, a4)
    n = groups * d3s * d4s
    gram = torch.einsum("rpsu,rqsv->rpqsuv", k3, k4).reshape(n, n)
    rhs = torch.einsum("rip,abim,rmq->rpqab", a3, x, a4).reshape(n, k1 * k2)
    solution = _solve_gram(gram, rhs)
    return solution.view(groups, d3s, d4s, k1, k2).permute(0, 3, 4, 1, 2).contiguous()


def _update_core_by_term(x: Tensor, a3: Tensor, a4: Tensor, core: Tensor | None = None) -> Tensor:
    """One sweep of block coordinate descent over the terms, from ``core``: each core the exact minimizer given the
    others, so the error cannot increase."""
    groups, _, d3s = a3.shape
    core = x.new_zeros(groups, *x.shape[:2], d3s, a4.shape[2]) if core is None else core.clone()
    residual = x - _reconstruct(a3, core, a4)
    for r in range(groups):
        residual += torch.einsum("abpq,ip,mq->abim", core[r], a3[r], a4[r])
        core[r] = torch.linalg.pinv(a3[r]) @ residual @ torch.linalg.pinv(a4[r]).T
        residual -= torch.einsum("abpq,ip,mq->abim", core[r], a3[r], a4[r])
    return core


def _orthonormalize(factor: Tensor, core: Tensor, mode: int) -> tuple[Tensor, Tensor]:
    """Each term's factor -> Q with orthonormal columns, its triangle moved into the core: the same terms,
    better conditioned for the next least-squares step."""
    q, tri = torch.linalg.qr(factor)
    if mode == 3:
        return q, torch.einsum("rPp,rabpq->rabPq", tri, core)
    return q, torch.einsum("rQq,rabpq->rabpQ", tri, core)


def _reconstruct(a3: Tensor, core: Tensor, a4: Tensor) -> Tensor:
    return torch.einsum("rabpq,rip,rmq->abim", core, a3, a4)


def _unit_norms(x: Tensor, num_units: int) -> Tensor:
    return x.reshape(*x.shape[:3], num_units, -1).pow(2).sum((0, 1, 2, 4)).sqrt()


def _unit_errors(x: Tensor, a3: Tensor, core: Tensor, a4: Tensor, num_units: int, norms: Tensor) -> Tensor:
    diff = (x - _reconstruct(a3, core, a4)).reshape(*x.shape[:3], num_units, -1)
    return diff.pow(2).sum((0, 1, 2, 4)).sqrt() / norms.clamp_min(torch.finfo(x.dtype).tiny)


def _total(unit_errors: Tensor, norms: Tensor) -> Tensor:
    return (unit_errors * norms).pow(2).sum().sqrt() / norms.pow(2).sum().sqrt().clamp_min(1e-300)
