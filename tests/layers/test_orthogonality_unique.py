"""The CIFAR-10 form of the orthogonality regularizer (``orth_unique``), checked against the source's description.

The source (ssregibility/Net_RL2, ``train_cifar10.py``, ``train_basis_single`` / ``train_basis_double`` with
``include_unique_basis=True``): per stage, B stacks the shared filters (Single: the one basis; Double: both) and then
the unique filters of conv1 and conv2 of blocks 2..n; D = (B B^T - I)^2 elementwise; the term is the sum of D's
shared rows against all columns plus each convolution's own unique-by-unique block, over all stages, divided by
sum (n_shared * n_all + sum of u^2 per convolution), times lambda = 10.
"""

import pytest
import torch

import crunet
from crunet.layers.orthogonality import BasisGroup, orthogonality_groups, orthogonality_penalty
from crunet.models import dsfb_mobilenetv2, dsfb_resnet
from crunet.train.shared_grads import orthogonality_of

TINY = {"depths": (3, 2, 3), "widths": (4, 6, 8), "shared_rank": 2, "unique_rank": 2}  # u_g = 2, 4, 8
VARIANTS = ("dsfb_resnet32_s16u1", "dsfb_resnet32_s16u1_double")


def _tiny(name: str, **overrides) -> torch.nn.Module:
    model = crunet.create_model(name, num_classes=10, **{**TINY, **overrides}).double()
    with torch.no_grad():  # shared filters off their orthonormal start, so every part of the term counts
        for stage in model.stages:
            for w in stage.shared[0].weights:
                w.add_(0.3 * torch.randn_like(w))
    return model


def _shared_rows(stage) -> torch.Tensor:
    """The stage's shared filters as rows: Single's one basis, or Double's two one after the other."""
    return torch.cat([w.detach().reshape(w.shape[0], -1) for w in stage.shared[0].weights])


def _reference_unique(model, lam: float = 10.0) -> float:
    """The source's loop, written independently in float64 on the model's parameters."""
    sim, cnt = 0.0, 0
    for stage in model.stages:
        shared = _shared_rows(stage)
        uniques = [conv.unique.weight.detach().reshape(conv.unique_rank, -1)
                   for block in stage.blocks[1:] for conv in (block.conv1, block.conv2)]
        b = torch.cat([shared, *uniques]).double()
        n_shared, n_all = shared.shape[0], b.shape[0]
        d = (b @ b.T - torch.eye(n_all, dtype=torch.float64)) ** 2
        sim += d[:n_shared, :].sum().item()
        cnt += n_shared * n_all
        start = n_shared
        for u in uniques:
            sim += d[start:start + u.shape[0], start:start + u.shape[0]].sum().item()
            cnt += u.shape[0] ** 2
            start += u.shape[0]
        assert start == n_all
    return lam * sim / cnt


def _reference_shared_only(model, lam: float = 10.0) -> float:
    """The ImageNet / CIFAR-100 form: || S S^T - I ||^2 over the shared filters only, divided by sum n^2."""
    sim, cnt = 0.0, 0
    for stage in model.stages:
        s = _shared_rows(stage).double()
        sim += ((s @ s.T - torch.eye(s.shape[0], dtype=torch.float64)) ** 2).sum().item()
        cnt += s.shape[0] ** 2
    return lam * sim / cnt


@pytest.mark.parametrize("name", VARIANTS)
def test_unique_form_equals_the_source_computation(name):
    model = _tiny(name)
    assert model.orth_unique  # the CIFAR DSFB nets default to the CIFAR-10 form
    assert model.extra_losses()["orth"].item() == pytest.approx(_reference_unique(model), rel=1e-12, abs=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_shared_only_form_is_the_old_term(name):
    torch.manual_seed(0)
    model = _tiny(name, orth_unique=False)
    term = model.extra_losses()["orth"]
    assert term.item() == pytest.approx(_reference_shared_only(model), rel=1e-12, abs=0)
    # exactly what the shared-only code computed before the CIFAR-10 form existed: the owners' matrices alone
    owners = [m for stage in model.stages for o in stage.shared for m in o.orthogonality_groups()]
    assert torch.equal(term, 10.0 * orthogonality_penalty(owners))


@pytest.mark.parametrize("name", VARIANTS)
def test_gradient_reaches_the_unique_filters_only_in_the_unique_form(name):
    for unique in (True, False):
        model = _tiny(name, orth_unique=unique)
        model.extra_losses()["orth"].backward()
        with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        shared = {n for n, _ in model.named_parameters() if ".shared." in n}
        unique_filters = {f"stages.{g}.blocks.{i}.conv{c}.unique.weight"
                          for g, depth in enumerate(TINY["depths"]) for i in range(1, depth) for c in (1, 2)}
        assert with_grad == (shared | unique_filters if unique else shared)


def test_unique_rank_zero_reduces_to_the_shared_only_form():
    torch.manual_seed(0)
    model = _tiny("dsfb_resnet32_s16u1", unique_rank=0)
    assert model.orth_unique and all(isinstance(g, torch.Tensor) for g in orthogonality_groups(model))
    assert model.extra_losses()["orth"].item() == pytest.approx(_reference_shared_only(model), rel=1e-12, abs=0)


def test_defaults_per_family_and_the_imagenet_basic_net_supports_it():
    cifar = (dsfb_resnet.DSFB_RESNET32_S8U1, dsfb_resnet.DSFB_RESNET32_S16U1, dsfb_resnet.DSFB_RESNET32_S16U1_DOUBLE,
             dsfb_resnet.DSFB_RESNET56_S8U1, dsfb_resnet.DSFB_RESNET56_S16U1, dsfb_resnet.DSFB_RESNET56_S16U1_DOUBLE)
    imagenet = (dsfb_resnet.DSFB_RESNET34_S48U1_DOUBLE, dsfb_resnet.DSFB_RESNET50_SHARED,
                dsfb_resnet.DSFB_RESNET50_SHAREDPP, dsfb_resnet.DSFB_RESNET101_SHARED,
                dsfb_mobilenetv2.DSFB_MOBILENETV2_SHARED, dsfb_mobilenetv2.DSFB_MOBILENETV2_SHAREDPP)
    assert all(cfg.orth_unique is True for cfg in cifar) and all(cfg.orth_unique is False for cfg in imagenet)
    torch.manual_seed(0)
    assert not _tiny("dsfb_resnet34_s48u1_double", depths=(2, 3), widths=(8, 16)).orth_unique
    model = _tiny("dsfb_resnet34_s48u1_double", orth_unique=True, depths=(2, 3), widths=(8, 16))
    assert model.extra_losses()["orth"].item() == pytest.approx(_reference_unique(model), rel=1e-12, abs=0)


def test_logged_penalty_is_the_unweighted_term_of_the_models_form():
    for unique in (True, False):
        model = _tiny("dsfb_resnet32_s16u1_double", orth_unique=unique, orth_lambda=2.5)
        assert orthogonality_of(model) == pytest.approx(model.extra_losses()["orth"].item() / 2.5, rel=1e-12)


def test_group_penalty_gradient_and_precision():
    shared = torch.randn(3, 12, dtype=torch.float64, requires_grad=True)
    unique = torch.randn(4, 2, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, u: orthogonality_penalty([BasisGroup(s, u), s[:2]]), (shared, unique))
    q, _ = torch.linalg.qr(torch.randn(72, 24))  # 16 shared and 4 x 2 unique rows, all orthonormal: zero
    group = BasisGroup(q.T[:16].contiguous(), q.T[16:].reshape(4, 2, 72))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = orthogonality_penalty([group])
    assert value.dtype == torch.float32 and value.item() < 1e-10
    with pytest.raises(ValueError, match="unique filters"):
        orthogonality_penalty([BasisGroup(q.T[:16], q.T[16:])])


def test_optimizing_the_unique_form_pulls_unique_filters_to_unit_norm():
    torch.manual_seed(0)
    model = crunet.create_model("dsfb_resnet32_s16u1", num_classes=10, **TINY)
    params = [p for n, p in model.named_parameters() if ".shared." in n or ".unique." in n]
    norms = lambda: torch.cat([m.unique.weight.flatten(1).norm(dim=1) for m in model.modules()  # noqa: E731
                               if getattr(m, "unique", None) is not None])
    assert norms().mean() > 1.5  # kaiming fan_out: squared norm 2 * fan_in / fan_out = 4 here (~30 at full width)
    optimizer = torch.optim.Adam(params, lr=0.03)
    for _ in range(100):
        optimizer.zero_grad()
        model.extra_losses()["orth"].backward()
        optimizer.step()
    assert model.extra_losses()["orth"].item() < 1e-4
    torch.testing.assert_close(norms(), torch.ones_like(norms()), atol=0.01, rtol=0)
