"""Every crunet model through the checks timm's tests/test_models.py applies to each of its own models, with timm's
input sizes (TARGET_*/MAX_* below, ``_get_input_size``) and tolerances.

Two differences, both stated: TorchScript is checked by tracing (``torch.jit.trace``, what ``crunet export`` writes)
where timm scripts the model: ``torch.jit.script`` is deprecated upstream and refused by crunet models with a clear
error (tests/interop/test_fx_export.py, which also checks ``torch.compile``, the replacement PyTorch names);
``feature_cls="hook"`` is checked beside "list" (timm's default), "dict", "getter" and "fx".
Runs in .venv-timm (CI); skipped where timm or torchvision is not importable.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

timm = pytest.importorskip("timm")
pytest.importorskip("torchvision")

from timm.layers import get_notrace_functions, get_notrace_modules  # noqa: E402
from torchvision.models.feature_extraction import (  # noqa: E402
    NodePathTracer,
    create_feature_extractor,
    get_graph_node_names,
)

import crunet.timm  # noqa: E402

NAMES = crunet.timm.registered_names()

# timm's tests/test_models.py
TARGET_FWD_SIZE = MAX_FWD_SIZE = 384
TARGET_BWD_SIZE = 128
MAX_BWD_SIZE = 320
MAX_FWD_OUT_SIZE = 448
TARGET_JIT_SIZE = 128
MAX_JIT_SIZE = 320
TARGET_FFEAT_SIZE = 96
MAX_FFEAT_SIZE = 256
TARGET_FWD_FX_SIZE = 128
MAX_FWD_FX_SIZE = 224
TARGET_BWD_FX_SIZE = 128
MAX_BWD_FX_SIZE = 224

FEATURE_CLASSES = ["list", "dict", "hook", "getter", "fx"]
NAMES_WITH_CFG = timm.list_models(NAMES, name_matches_cfg=True) if NAMES else []


def _full_size(name: str) -> bool:
    return max(timm.models.get_pretrained_cfg(name).input_size) > TARGET_FFEAT_SIZE


# The three costliest checks on the 24 full-size models (backward passes of grouped convolutions, tracing) are marked
# slow and CI runs this folder with -m "not slow"; .venv's CI covers the same properties on every model
# (tests/models/test_contract.py backward, tests/interop/test_fx_export.py FX backward). `pytest -m slow` runs them.
HEAVY = [pytest.param(n, marks=pytest.mark.slow if _full_size(n) else ()) for n in NAMES_WITH_CFG]


@pytest.fixture(scope="module", params=NAMES)
def model_name(request):
    """Every registered model; module scope makes pytest run all the checks of one model before the next."""
    return request.param


@pytest.fixture(scope="module")
def _built(model_name):
    return timm.create_model(model_name, pretrained=False).eval()


@pytest.fixture
def eval_model(_built):
    """``timm.create_model(model_name, pretrained=False).eval()``, built once per model and copied per test."""
    return copy.deepcopy(_built)


def _get_input_size(model=None, model_name="", target=None):
    """timm's: the default size, or the minimum size when the default is above the target."""
    if model is None:
        cfg = timm.models.get_pretrained_cfg(model_name).to_dict()
    else:
        cfg = model.default_cfg
    input_size, min_input_size = cfg["input_size"], cfg.get("min_input_size")
    if cfg.get("fixed_input_size"):
        return input_size
    if min_input_size:
        if target and max(input_size) > target:
            input_size = min_input_size
    elif target and max(input_size) > target:
        input_size = tuple(min(x, target) for x in input_size)
    return input_size


def _tracer_kwargs() -> dict:
    return {"leaf_modules": list(get_notrace_modules()), "autowrap_functions": list(get_notrace_functions())}


def _create_fx_model(model, train: bool = False):
    """timm's: a torchvision feature extractor returning the model's output, in eval and in train mode."""
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=_tracer_kwargs())
    eval_return_nodes, train_return_nodes = [eval_nodes[-1]], [train_nodes[-1]]
    if train:
        graph = NodePathTracer(**_tracer_kwargs()).trace(model)
        graph_nodes = list(reversed(graph.nodes))
        output_node_names = [n.name for n in graph_nodes[0]._input_nodes.keys()]
        graph_node_names = [n.name for n in graph_nodes]
        output_node_indices = [-graph_node_names.index(node_name) for node_name in output_node_names]
        train_return_nodes = [train_nodes[ix] for ix in output_node_indices]
    return create_feature_extractor(model, train_return_nodes=train_return_nodes,
                                    eval_return_nodes=eval_return_nodes, tracer_kwargs=_tracer_kwargs())


def test_model_forward(eval_model):
    model = eval_model
    input_size = _get_input_size(model=model, target=TARGET_FWD_SIZE)
    assert max(input_size) <= MAX_FWD_SIZE
    with torch.no_grad():
        outputs = model(torch.randn((1, *input_size)))
    assert outputs.shape == (1, 1000)
    assert not torch.isnan(outputs).any(), "Output included NaNs"


@pytest.mark.parametrize("model_name", HEAVY)
def test_model_backward(model_name):
    batch_size = 2
    input_size = _get_input_size(model_name=model_name, target=TARGET_BWD_SIZE)
    assert max(input_size) <= MAX_BWD_SIZE
    model = timm.create_model(model_name, pretrained=False, num_classes=42).train()
    num_params = sum(x.numel() for x in model.parameters())
    outputs = model(torch.randn((batch_size, *input_size)))
    outputs.mean().backward()
    for n, x in model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_grad = sum(x.grad.numel() for x in model.parameters() if x.grad is not None)
    assert outputs.shape[-1] == 42
    assert num_params == num_grad, "Some parameters are missing gradients"
    assert not torch.isnan(outputs).any(), "Output included NaNs"


def test_model_default_cfgs(model_name, eval_model):
    model = eval_model
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    state_dict = model.state_dict()
    cfg = model.default_cfg
    pool_size, input_size = cfg["pool_size"], cfg["input_size"]
    assert all(x <= MAX_FWD_OUT_SIZE for x in input_size)
    input_tensor = torch.randn((1, *input_size))
    with torch.no_grad():
        outputs = model.forward_features(input_tensor)  # unpooled, pre_logits
        outputs_pre = model.forward_head(outputs, pre_logits=True)
        assert tuple(outputs.shape[-2:]) == tuple(pool_size), f"unpooled feature shape {outputs.shape} != config"
        assert outputs.shape[1] == model.num_features
        assert outputs_pre.shape[1] == model.head_hidden_size
        model.reset_classifier(0)  # pooled, no classifier
        outputs = model(input_tensor)
        assert outputs.shape == outputs_pre.shape and outputs.shape[1] == model.head_hidden_size
        model.reset_classifier(0, "")  # no classifier, no pooling
        outputs = model(input_tensor)
        assert outputs.dim() == 4 and tuple(outputs.shape[-2:]) == tuple(pool_size)
        model = timm.create_model(model_name, pretrained=False, num_classes=0, global_pool="").eval()
        outputs = model(input_tensor)
        assert outputs.dim() == 4 and tuple(outputs.shape[-2:]) == tuple(pool_size)
    if cfg.get("num_classes", None):
        assert cfg["classifier"] + ".weight" in state_dict, f"{cfg['classifier']} not in model params"
    assert cfg["first_conv"] + ".weight" in state_dict, f"{cfg['first_conv']} not in model params"


@pytest.mark.parametrize("feature_cls", FEATURE_CLASSES)
def test_model_forward_features(model_name, feature_cls):
    model = timm.create_model(model_name, pretrained=False, features_only=True, feature_cls=feature_cls).eval()
    expected_channels = model.feature_info.channels()
    expected_reduction = model.feature_info.reduction()
    assert len(expected_channels) >= 3  # crunet's small-image models have 3 stages, the others 4 or 7
    assert "classifier" not in model.pretrained_cfg and model.default_cfg["input_size"][0] == 3
    input_size = _get_input_size(model=model, target=TARGET_FFEAT_SIZE)
    assert max(input_size) <= MAX_FFEAT_SIZE
    with torch.no_grad():
        outputs = model(torch.randn((1, *input_size)))
    outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs
    assert len(expected_channels) == len(outputs)
    for e, r, o in zip(expected_channels, expected_reduction, outputs, strict=True):
        assert e == o.shape[1]
        assert o.shape[-2] <= math.ceil(input_size[-2] / r) + 1 and o.shape[-1] <= math.ceil(input_size[-1] / r) + 1
        assert o.shape[0] == 1
        assert not torch.isnan(o).any()


def test_model_forward_intermediates(eval_model):
    model = eval_model
    feature_info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    expected_channels, expected_reduction = feature_info.channels(), feature_info.reduction()
    assert len(expected_channels) >= 3
    input_size = _get_input_size(model=model, target=TARGET_FFEAT_SIZE)
    inpt = torch.randn((1, *input_size))
    with torch.no_grad():
        output, intermediates = model.forward_intermediates(inpt, output_fmt="NCHW")
        assert len(expected_channels) == len(intermediates)
        for e, r, o in zip(expected_channels, expected_reduction, intermediates, strict=True):
            assert e == o.shape[1]
            assert o.shape[-2] <= math.ceil(input_size[-2] / r) + 1
            assert o.shape[-1] <= math.ceil(input_size[-1] / r) + 1
            assert o.shape[0] == 1
            assert not torch.isnan(o).any()
        output2 = model.forward_features(inpt)
        assert torch.allclose(output, output2)
        model.set_grad_checkpointing()
        output3, _ = model.forward_intermediates(inpt, output_fmt="NCHW")
        assert torch.allclose(output, output3, rtol=1e-4, atol=1e-5), "Output does not match"


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
@pytest.mark.parametrize("model_name", HEAVY)
def test_model_forward_torchscript(model_name):
    input_size = _get_input_size(model_name=model_name, target=TARGET_JIT_SIZE)
    assert max(input_size) <= MAX_JIT_SIZE
    model = timm.create_model(model_name, pretrained=False).eval()
    inputs = torch.randn((1, *input_size))
    with torch.no_grad():
        scripted = torch.jit.trace(model, inputs, check_trace=False)
        outputs = scripted(torch.randn((2, *input_size)))  # traced at batch 1, run at 2
        torch.testing.assert_close(scripted(inputs), model(inputs))
    assert outputs.shape[0] == 2
    assert not torch.isnan(outputs).any(), "Output included NaNs"


def test_model_forward_fx(eval_model):
    model = eval_model
    input_size = _get_input_size(model=model, target=TARGET_FWD_FX_SIZE)
    assert max(input_size) <= MAX_FWD_FX_SIZE
    with torch.no_grad():
        inputs = torch.randn((1, *input_size))
        outputs = model(inputs)
        fx_model = _create_fx_model(model)
        fx_outputs = torch.cat(tuple(fx_model(inputs).values()))
    assert torch.all(fx_outputs == outputs)
    assert outputs.shape[0] == 1
    assert not torch.isnan(outputs).any(), "Output included NaNs"


@pytest.mark.parametrize("model_name", HEAVY)
def test_model_backward_fx(model_name):
    batch_size = 2
    input_size = _get_input_size(model_name=model_name, target=TARGET_BWD_FX_SIZE)
    assert max(input_size) <= MAX_BWD_FX_SIZE
    model = timm.create_model(model_name, pretrained=False, num_classes=42).train()
    num_params = sum(x.numel() for x in model.parameters())
    model = _create_fx_model(model, train=True)
    outputs = torch.cat(tuple(model(torch.randn((batch_size, *input_size))).values()))
    outputs.mean().backward()
    for n, x in model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_grad = sum(x.grad.numel() for x in model.parameters() if x.grad is not None)
    assert outputs.shape[-1] == 42
    assert num_params == num_grad, "Some parameters are missing gradients"
    assert not torch.isnan(outputs).any(), "Output included NaNs"
