"""The timm-style model contract, for every registered model, on small inputs."""

import collections
import copy

import pytest
import torch
from safetensors.torch import load, save

import crunet
from crunet.layers.complexity import measured_macs
from tests.helpers import model_input

NUM_CLASSES = 7
ALL_MODELS = crunet.list_models()
CHECKPOINTING_MODELS = {"crunet_small", "preresnext_small", "crunet56"}
# The models over 40 million parameters cost 2 to 5 s each here (2 CPU cores): building, a backward pass, a copy and
# a safetensors round trip of that many weights. Each is a deeper or wider design of the one PreActResNet or ResNet
# that a smaller registered model takes through this contract in the fast suite (crunet116 and crunet116_wide:
# crunet56; preresnet101, preresnet200 and prewrn50_2: preresnet50; preresnext101_*: preresnext50_32x4d; resnet101:
# resnet50). The full run takes them through it too.
LARGEST = {"crunet116", "crunet116_wide", "preresnet101", "preresnet200", "preresnext101_32x4d", "preresnext101_64x4d",
           "prewrn50_2", "resnet101"}


@pytest.fixture(scope="module", params=[pytest.param(n, marks=pytest.mark.slow) if n in LARGEST else n
                                        for n in ALL_MODELS])
def name(request):
    # A module-scoped parametrized fixture: pytest runs every test of one model before building the next.
    return request.param


@pytest.fixture(scope="module")
def built(name):
    torch.manual_seed(0)
    return crunet.create_model(name, num_classes=NUM_CLASSES)


def test_forward_backward_reaches_every_parameter(built):
    model = built.train()
    model.zero_grad(set_to_none=True)
    x = model_input(model)
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    # Reached, not necessarily non-zero: a bias right before a training-mode BatchNorm has a true gradient of 0.
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


def test_features_head_and_intermediates(built):
    model = built.eval()
    x = model_input(model)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[1] == model.num_features
        assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
        assert torch.equal(model.forward_head(features), model(x))
        final, intermediates = model.forward_intermediates(x)
        assert torch.equal(final, features)
        assert len(intermediates) == len(model.feature_info)
        for info, fmap in zip(model.feature_info, intermediates, strict=True):
            assert fmap.shape[1] == info["num_chs"]
            assert fmap.shape[-1] == -(-x.shape[-1] // info["reduction"])
        only_last = model.forward_intermediates(x, indices=1, intermediates_only=True)
        assert len(only_last) == 1 and torch.equal(only_last[0], intermediates[-1])


def test_reset_classifier(built):
    model = copy.deepcopy(built).eval()
    x = model_input(model)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.pretrained_cfg["num_classes"] == 3


def test_state_dict_holds_each_tensor_once_and_round_trips_through_safetensors(name, built):
    model = built
    state = model.state_dict()
    storages = [t.untyped_storage().data_ptr() for t in state.values() if t.numel()]
    assert len(storages) == len(set(storages))
    file = save(state)  # a .safetensors file's bytes, in memory (save_file writes the same; refuses the same)
    with torch.device("meta"):
        fresh = crunet.create_model(name, num_classes=NUM_CLASSES)
    fresh.load_state_dict(load(file), strict=True, assign=True)
    for key, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    x = model_input(model)
    with torch.no_grad():  # same weights; kernels may pick other algorithms for other memory, hence not bit-equal
        reference = model.eval()(x)
        scale = reference.abs().max().item()
        torch.testing.assert_close(fresh.eval()(x), reference, rtol=1e-4, atol=1e-5 * max(scale, 1.0))


def test_analytic_complexity_matches_pytorch(built):
    model = built
    size = tuple(model_input(model).shape[1:])
    cx = crunet.complexity(model, size)
    assert cx["params"] == sum(p.numel() for p in model.parameters())
    assert cx["macs"] == measured_macs(model, size)


def test_grad_checkpointing_gives_the_same_gradients(built):
    if built.name not in CHECKPOINTING_MODELS:
        pytest.skip("checkpointing is per unit and the same code for every stage: checked on representative models")
    model = built.train()
    x = model_input(model)

    def grads():
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        model(x).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.set_grad_checkpointing(True)
    try:
        checkpointed = grads()
    finally:
        model.set_grad_checkpointing(False)
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_pretrained_cfg_and_feature_info(built):
    model = built
    cfg = model.pretrained_cfg
    for key in ("input_size", "mean", "std", "crop_pct", "interpolation", "num_classes"):
        assert key in cfg
    assert cfg["input_size"][0] == model.in_chans == len(cfg["mean"]) == len(cfg["std"])
    with torch.device("meta"), torch.no_grad():  # shapes only: the meta device runs no arithmetic
        meta = crunet.create_model(model.name, num_classes=NUM_CLASSES).eval()  # eval: BN's shape rule is cheaper
        features = meta.forward_features(torch.empty(1, *cfg["input_size"]))
    assert tuple(features.shape[-2:]) == tuple(cfg["pool_size"])
    reductions = [i["reduction"] for i in model.feature_info]
    assert reductions == sorted(reductions) and reductions[-1] == model.min_input_size
    assert model.feature_info[-1]["num_chs"] == model.num_features


def test_bad_input_is_explained(built):
    model = built
    good = model_input(model, batch=1)
    wrong_channels = torch.randn(1, model.in_chans + 1, *good.shape[-2:])
    with pytest.raises(ValueError, match=f"expects {model.in_chans} input channels"):
        model(wrong_channels)
    too_small = torch.randn(1, model.in_chans, model.min_input_size - 1, model.min_input_size - 1)
    with pytest.raises(ValueError, match="at least"):
        model(too_small)
    with pytest.raises(ValueError, match="batch of images"):
        model(good[0])


def unregistered_references(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """(where, module) for every module a module keeps in its ``__dict__`` without registering it: how a user of a
    shared tensor (a CRU unit's factors, a DSFB block's basis, any family's) points at the tensor's owner."""
    return [(f"{path}.{attr}", value) for path, module in model.named_modules() for attr, value in vars(module).items()
            if isinstance(value, torch.nn.Module) and attr not in module._modules]


def test_every_shared_owner_is_registered_exactly_once_and_not_top_level(name, built):
    # One owner per shared tensor: registered once (state_dict holds the tensor under one key, not zero, not two),
    # and never a top-level child (timm's feature wrappers replay the top-level children in order as layers).
    model = built
    references = unregistered_references(model)
    if name.startswith(("crunet", "dsfb_")):  # every model of these families shares something
        assert references
    registered = collections.Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    top = {id(m) for m in model.children()}
    for where, owner in references:
        assert registered[id(owner)] == 1, f"{where} is registered {registered[id(owner)]} times"
        assert id(owner) not in top, where


def test_the_models_over_40_million_parameters_are_the_largest(name, built):
    # So that a larger model added to the zoo goes to the full run, and LARGEST names no model that grew small.
    assert (sum(p.numel() for p in built.parameters()) > 40_000_000) == (name in LARGEST)
