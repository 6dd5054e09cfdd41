"""The Shared++ form of the orthogonality regularizer (``orth_separate``): the source's
``train_basis_double_separate`` (train_ilsvrc.py:199-298 at 936a886) averages each kind of shared tensor on its own
and adds the averages. Checked against that loop, rewritten here from the source on the models' weights."""

import pytest
import torch

import crunet
from crunet.models.dsfb_resnet import DSFBResNet, DSFBResNetCfg


def source_separate_term(kinds: list[list[torch.Tensor]]) -> torch.Tensor:
    """train_basis_double_separate's loop, per kind: for gid in stages, B = weight.view(n, -1), D = (B B^T - I)^2,
    sim += sum(D[:n, :n]), cnt_sim += n^2; then avg_sim_1 + avg_sim_2."""
    total = 0
    for weights in kinds:
        sim, cnt_sim = 0, 0
        for weight in weights:
            n = weight.shape[0]
            b = weight.reshape(n, -1)
            d = (torch.mm(b, b.t()) - torch.eye(n, n, dtype=b.dtype)) ** 2
            sim += torch.sum(d[0:n, 0:n])
            cnt_sim += n**2
        total = total + sim / cnt_sim
    return total


def _perturb(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for stage in model.stages:
            for owner in stage.shared:
                for w in owner.weights:
                    w.add_(0.1 * torch.randn_like(w))


def _shared_by_kernel(model) -> list[list[torch.Tensor]]:
    """ResNet Shared++: the 3x3 bases of every stage (the source's shared_basis_<g>_1), then the 1x1 ones (_2)."""
    owners = [o for s in model.stages for o in s.shared]
    return [[o.weight() for o in owners if o.kernel_size == k] for k in (3, 1)]


def test_resnet_sharedpp_equals_the_source_loop():
    cfg = DSFBResNetCfg((2, 3, 2), "bottleneck", "shared++", widths=(8, 16, 32), orth_separate=True)
    model = DSFBResNet(cfg, num_classes=10).double()
    _perturb(model)
    expected = source_separate_term(_shared_by_kernel(model))
    assert model.extra_losses()["orth"].item() == pytest.approx(10 * expected.item(), rel=1e-12)
    joint = DSFBResNet(cfg.__class__(**{**cfg.__dict__, "orth_separate": False}), num_classes=10).double()
    joint.load_state_dict(model.state_dict())
    assert joint.extra_losses()["orth"].item() < model.extra_losses()["orth"].item()  # the old form differs


def test_mobilenetv2_sharedpp_equals_the_source_loop():
    model = crunet.create_model("dsfb_mobilenetv2_sharedpp", num_classes=10).double()
    _perturb(model)
    owners = [o for s in model.stages for o in s.shared]
    expand = [o.weight() for o in owners if o.rank > o.in_chs]  # c -> 6c: the source's shared_basis_<g>_1
    project = [o.weight() for o in owners if o.rank < o.in_chs]  # 6c -> c: shared_basis_<g>_2
    assert len(expand) == len(project) == 4  # the 32/64/96/160 stages
    expected = source_separate_term([expand, project])
    assert model.extra_losses()["orth"].item() == pytest.approx(10 * expected.item(), rel=1e-12)


def test_only_the_shared_plus_plus_designs_default_to_the_separate_form():
    from crunet.models import dsfb_mobilenetv2 as mnv2
    from crunet.models import dsfb_resnet as rn

    separate = {name for module in (rn, mnv2) for name, cfg in vars(module).items()
                if getattr(cfg, "orth_separate", False) is True}
    assert separate == {"DSFB_RESNET50_SHAREDPP", "DSFB_MOBILENETV2_SHAREDPP"}
    assert crunet.create_model("dsfb_mobilenetv2_sharedpp", num_classes=10).orth_separate is True


def test_a_single_kind_gives_the_joint_form():
    """ResNet50-Shared (one kind) under orth_separate: one average, the same as the joint form."""
    cfg = DSFBResNetCfg((2, 3), "bottleneck", "shared", widths=(8, 16))
    single = DSFBResNet(cfg, num_classes=10).double()
    _perturb(single)
    separate = DSFBResNet(DSFBResNetCfg((2, 3), "bottleneck", "shared", widths=(8, 16), orth_separate=True),
                          num_classes=10).double()
    separate.load_state_dict(single.state_dict())
    assert separate.extra_losses()["orth"].item() == pytest.approx(single.extra_losses()["orth"].item(), rel=1e-14)
