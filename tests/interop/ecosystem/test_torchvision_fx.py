"""torchvision's ``create_feature_extractor`` on every model: the stage outputs named by ``feature_info`` equal
``forward_intermediates``. Runs in .venv-timm (CI), where torchvision imports; skipped elsewhere."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchvision")

from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names  # noqa: E402

import crunet  # noqa: E402


@pytest.mark.parametrize("name", crunet.list_models())
def test_stage_outputs_by_name_equal_forward_intermediates(name):
    model = crunet.create_model(name, num_classes=10).eval()
    stages = [f["module"] for f in model.feature_info]  # "stages.0", "stages.1", ...
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert all(any(n.startswith(s + ".") for n in eval_nodes) for s in stages)
    extractor = create_feature_extractor(model, return_nodes={s: f"stage{i}" for i, s in enumerate(stages)})
    size = max(32, model.min_input_size)
    x = torch.randn(2, model.in_chans, size, size)
    with torch.no_grad():
        got = extractor(x)
        want = model.forward_intermediates(x, intermediates_only=True)
    assert list(got) == [f"stage{i}" for i in range(len(stages))]
    for g, w in zip(got.values(), want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
