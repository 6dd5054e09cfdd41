"""Every model traces with ``torch.fx.symbolic_trace`` and exports with ``torch.export.export`` (dynamic batch), with
its shared tensors kept shared, while eager ``forward`` keeps its input errors. The small-image models run in the fast
suite on one CRU and one DSFB model; the others (full-size ones at 32x32) are marked slow (export takes seconds
per model).
torchvision's ``create_feature_extractor`` on the stage outputs: tests/interop/ecosystem/test_torchvision_fx.py."""

from __future__ import annotations

import pytest
import torch
from torch.export import Dim, export

import crunet
from tests.helpers import model_input

FAST = {"crunet_small", "dsfb_resnet32_s8u1"}  # CRU sharing, DSFB sharing
MODELS = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in crunet.list_models()]


def _model(name: str):
    return crunet.create_model(name, num_classes=10).eval()


def _unique_params(module: torch.nn.Module) -> int:
    return len({id(p) for p in module.parameters()})


@pytest.mark.parametrize("name", MODELS)
def test_symbolic_trace_matches_eager_and_keeps_sharing(name):
    model = _model(name)
    graph = torch.fx.symbolic_trace(model)
    x = model_input(model)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x), rtol=0, atol=0)
    assert _unique_params(graph) == _unique_params(model)  # a shared tensor stays one parameter
    assert sum(p.numel() for p in graph.parameters()) == sum(p.numel() for p in model.parameters())
    train_graph = torch.fx.symbolic_trace(model.train())  # training mode traces too (BN statistics, fast paths)
    train_graph(x).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_export_with_a_dynamic_batch(name):
    model = _model(name)
    x = model_input(model)
    program = export(model, (x,), dynamic_shapes={"x": {0: Dim("batch", min=1, max=1024)}})
    exported = program.module()
    for batch in (1, 3):
        y = model_input(model, batch)
        with torch.no_grad():
            torch.testing.assert_close(exported(y), model(y), rtol=1e-5, atol=1e-5)
    names = [n for n, _ in model.named_parameters()]  # each shared tensor once, under its owner's name
    assert list(program.graph_signature.parameters) == names


def test_eager_forward_keeps_its_input_errors_after_tracing():
    model = _model("crunet_small")
    torch.fx.symbolic_trace(model)
    with pytest.raises(ValueError, match=r"expects 3 input channels, got 1 \(create it with in_chans=1"):
        model(torch.randn(1, 1, 28, 28))
    with pytest.raises(ValueError, match=r"expects a batch of images shaped \(N, 3, H, W\), got \(3, 28, 28\)"):
        model(torch.randn(3, 28, 28))
    with pytest.raises(ValueError, match="at least 8x8 pixels"):
        model.forward_intermediates(torch.randn(1, 3, 4, 4))


def test_scripting_is_refused_with_the_alternatives_named():
    model = _model("crunet_small")
    with pytest.raises(crunet.errors.UnsupportedError, match=r"torch\.compile.*torch\.export.*torch\.jit\.trace"):
        torch.jit.script(model)


@pytest.mark.slow
@pytest.mark.parametrize("name, design", [("crunet_small", {}), ("dsfb_resnet32_s8u1", {"depths": [2, 2, 2]}),
                                          ("dsfb_mobilenetv2_shared", {})],
                         ids=["crunet_small", "dsfb_resnet32_s8u1-2-blocks", "dsfb_mobilenetv2_shared"])
def test_torch_compile_captures_one_graph_matching_eager(name, design):
    # fullgraph=True fails on any graph break; aot_eager runs the captured forward and backward graphs without the
    # C++ compiler, so this checks capture and autograd through the shared tensors, not inductor's kernels. The DSFB
    # ResNet at two blocks a stage shares as at five, in a third of the tracing time.
    model = crunet.create_model(name, num_classes=10, drop_rate=0.0, **design)  # no dropout: one network twice
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = model_input(model)
    compiled(x).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model(x).square().mean().backward()  # train-mode BN: the same batch statistics, so the same gradients
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, msg=n)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
