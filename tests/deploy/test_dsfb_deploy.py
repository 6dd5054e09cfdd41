"""DSFB models deployed: every shared-basis convolution collapsed into one convolution (``unshare``), or its shared
filters kept as one tensor (``unshare=False``); both compute the eval model's function."""

import functools

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import crunet
from crunet import count_parameters
from crunet.deploy import deploy
from crunet.layers.dsfb_fused import SharedConvBN
from crunet.layers.shared_basis import SharedBasis, SharedBasisConv, SharedBasisConvInference

SIZE = (3, 32, 32)  # every model's smallest input (total stride 32): the borders are most of every feature map
MODELS = ["dsfb_resnet32_s8u1", "dsfb_resnet32_s16u1", "dsfb_resnet32_s16u1_double", "dsfb_resnet56_s8u1",
          "dsfb_resnet56_s16u1", "dsfb_resnet56_s16u1_double", "dsfb_resnet34_s48u1_double", "dsfb_resnet50_shared",
          "dsfb_resnet50_sharedpp", "dsfb_resnet101_shared", "dsfb_mobilenetv2_shared", "dsfb_mobilenetv2_sharedpp",
          "dsfb_resnet34_cifar100_s8u1", "dsfb_resnet34_cifar100_s16u1", "dsfb_resnet34_cifar100_s32u1"]
PAIRS = [("dsfb_resnet32_s16u1", "resnet32_cifar"), ("dsfb_resnet56_s16u1_double", "resnet56_cifar"),
         ("dsfb_resnet50_shared", "resnet50"),
         ("dsfb_mobilenetv2_shared", "mobilenetv2")]


@pytest.fixture(scope="module")
def eval_model(trained_looking):
    """``trained_looking``, each model built once for the module: deploy copies it and the tests only run it."""
    return functools.cache(trained_looking)


def max_rel_err(deployed: nn.Module, model: nn.Module, layout: str) -> float:
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        ref, out = model(x), deployed.set_layout(layout)(x)
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1.0)).item()


@pytest.mark.parametrize("name", MODELS)
def test_collapsed_deploy_equals_the_eval_model(name, eval_model):
    model = eval_model(name)
    deployed = deploy(model, layout="contiguous")
    for layout in ("contiguous", "channels_last"):
        assert max_rel_err(deployed, model, layout) < 1e-5
    kinds = {type(m) for m in deployed.modules()}
    assert not kinds & {SharedBasis, SharedBasisConv, SharedBasisConvInference, SharedConvBN}
    if "resnet" in name:  # post-activation ResNets: every BN folded
        assert nn.BatchNorm2d not in kinds


@pytest.mark.parametrize("name", MODELS)
def test_shared_deploy_keeps_one_copy_and_equals_the_eval_model(name, tmp_path, eval_model):
    model = eval_model(name)
    deployed = deploy(model, unshare=False, layout="contiguous")
    for layout in ("contiguous", "channels_last"):
        assert max_rel_err(deployed, model, layout) < 1e-5
    owners = [m for m in deployed.modules() if isinstance(m, SharedBasis)]
    assert len(owners) == sum(isinstance(m, SharedBasis) for m in model.modules()) > 0
    users = [m for m in deployed.modules() if isinstance(m, (SharedBasisConvInference, SharedConvBN))]
    assert users and all(any((u.__dict__.get("_shared") or u.__dict__.get("_owner")) is o for o in owners)
                         for u in users)
    shared_numel = sum(p.numel() for o in owners for p in o.parameters())
    pointers = [p.data_ptr() for p in deployed.parameters()]
    assert len(pointers) == len(set(pointers))  # each tensor once
    assert count_parameters(deployed) < count_parameters(model)  # folded BNs, the shared filters not copied
    assert shared_numel > 0
    deployed.set_layout("contiguous")
    save_file(deployed.state_dict(), str(tmp_path / "deployed.safetensors"))  # refuses tensors held twice


@pytest.mark.parametrize("name,baseline", PAIRS)
def test_collapsed_deploy_has_the_unshared_graph(name, baseline, eval_model):
    """Unshared, a DSFB model deploys to its unshared counterpart's graph: same layers, same parameter count."""
    ours, theirs = deploy(eval_model(name), layout="contiguous"), deploy(eval_model(baseline), layout="contiguous")
    assert count_parameters(ours) == count_parameters(theirs)
    shapes = [tuple(p.shape) for p in ours.parameters()]
    assert shapes == [tuple(p.shape) for p in theirs.parameters()]


def test_shared_gradients_are_the_sum_over_every_block_of_a_model():
    """In a whole model (fast training path), each shared tensor's gradient is the sum of its users' gradients:
    first each use gets a private leaf copy of the shared tensor, then the model runs as built."""
    model = crunet.create_model("dsfb_resnet32_s16u1_double", num_classes=10, in_chans=1).double().train()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    users = [m for m in model.modules() if isinstance(m, SharedBasisConv)]
    copies: dict[int, list[tuple[int, torch.Tensor]]] = {}
    for conv in users:
        def private(conv=conv):
            w = conv.shared.weight(conv.index).detach().requires_grad_()
            copies.setdefault(id(conv.shared), []).append((conv.index, w))
            return w if conv.unique is None else torch.cat((conv.unique.weight, w))
        conv.basis_weight = private
    model(x).square().sum().backward()
    model.zero_grad()
    for conv in users:
        del conv.basis_weight  # back to the method
    model(x).square().sum().backward()
    for stage in model.stages:
        for owner in stage.shared:
            for i, weight in enumerate(owner.weights):
                parts = [w.grad for index, w in copies[id(owner)] if index == i]
                assert len(parts) == 4 and weight.grad is not None  # 4 blocks share each bank
                torch.testing.assert_close(weight.grad, sum(parts), rtol=1e-10, atol=1e-12)


def test_every_registered_dsfb_model_is_covered():
    assert sorted(MODELS) == sorted(n for n in crunet.list_models() if n.startswith("dsfb_"))
