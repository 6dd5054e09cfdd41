"""The orthogonality regularizer in its shared-only form: lambda * sum_g ||B_g B_g^T - I||_F^2 / sum_g n_g^2 (the
CIFAR-10 form, with the unique filters: test_orthogonality_unique.py)."""

import pytest
import torch

import crunet
from crunet.layers.orthogonality import orthogonality_penalty


def _orthonormal_rows(n, d, dtype=torch.float64):
    q, _ = torch.linalg.qr(torch.randn(d, n, dtype=dtype))
    return q.T  # n orthonormal rows of length d


def test_zero_for_orthonormal_bases():
    bases = [_orthonormal_rows(4, 18), _orthonormal_rows(8, 36), torch.eye(5, dtype=torch.float64)]
    assert orthogonality_penalty(bases).item() == pytest.approx(0, abs=1e-24)


def test_positive_otherwise_and_normalized_by_all_groups():
    b = _orthonormal_rows(4, 18)
    assert orthogonality_penalty([2 * b]).item() == pytest.approx(9 * 4 / 16)  # (4 - 1)^2 on each diagonal entry
    assert orthogonality_penalty([2 * b, _orthonormal_rows(6, 18)]).item() == pytest.approx(9 * 4 / (16 + 36))
    assert orthogonality_penalty([torch.randn(5, 9, dtype=torch.float64)]).item() > 0


def test_gradient_matches_finite_differences():
    bases = (torch.randn(4, 9, dtype=torch.float64, requires_grad=True),
             torch.randn(6, 18, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(lambda *b: orthogonality_penalty(b), bases)


def test_rejects_empty_and_non_matrices():
    with pytest.raises(ValueError, match="at least one"):
        orthogonality_penalty([])
    with pytest.raises(ValueError, match="matrix"):
        orthogonality_penalty([torch.randn(2, 3, 3)])


def test_optimizing_the_term_alone_drives_it_to_zero():
    model = crunet.create_model("dsfb_resnet32_s16u1_double", num_classes=10, orth_unique=False)  # shared-only form
    owners = [s.shared[0] for s in model.stages]
    with torch.no_grad():
        for owner in owners:
            for w in owner.weights:
                w.add_(0.05 * torch.randn_like(w))
    params = [w for o in owners for w in o.weights]
    # the term is divided by sum_g n_g^2 (here 21504), so its gradients are small: a large step suits it
    optimizer = torch.optim.SGD(params, lr=100)
    start = model.extra_losses()["orth"].item()
    for _ in range(30):
        optimizer.zero_grad()
        loss = model.extra_losses()["orth"]
        loss.backward()
        optimizer.step()
    end = model.extra_losses()["orth"].item()
    assert start > 0.1 and end < start * 1e-6


def test_computed_in_full_precision_under_autocast():
    b = _orthonormal_rows(16, 72, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = orthogonality_penalty([b])
    assert value.dtype == torch.float32 and value.item() < 1e-10
