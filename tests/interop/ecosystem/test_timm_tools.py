"""crunet's models with timm's tools: its data config, features_only beside forward_intermediates, ModelEmaV3 and
the checkpoint helpers (the per-model contract is test_timm_contract.py, the registration test_timm_registry.py).

Runs in .venv-timm (scripts/setup-timm: torch 2.14.1 + torchvision 0.29.1 + timm); skipped where timm is not
importable (.venv, whose torch 2.13 CPU build has no working torchvision).
"""

from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

from crunet.timm import timm_name  # noqa: E402
from tests.helpers import model_input  # noqa: E402


def _create(name: str, **kwargs):
    return timm.create_model(timm_name(name), **kwargs)


def test_create_model_num_classes_and_pretrained_cfg():
    model = _create("crunet56", num_classes=10)
    assert model.num_classes == 10 and model.pretrained_cfg["num_classes"] == 1000  # the config's, as timm keeps it
    cfg = timm.data.resolve_data_config({}, model=model)
    assert cfg["mean"] == pytest.approx((124 / 255, 117 / 255, 104 / 255))  # the released preprocessing
    assert cfg["std"] == pytest.approx((1 / (0.0167 * 255),) * 3)
    assert cfg["input_size"] == (3, 224, 224)
    state = model.state_dict()
    assert model.pretrained_cfg["first_conv"] + ".weight" in state
    assert model.pretrained_cfg["classifier"] + ".weight" in state
    overlay = _create("crunet_small", pretrained_cfg_overlay={"crop_pct": 0.9})
    assert overlay.pretrained_cfg["crop_pct"] == 0.9
    with pytest.raises(RuntimeError, match="no hosted weights"):
        _create("crunet56", pretrained=True)


def test_features_only_equals_forward_intermediates_with_same_weights():
    model = _create("crunet_small").eval()
    features = _create("crunet_small", features_only=True).eval()
    flat = {}  # timm's flatten_sequential renames stem.0 -> stem_0, stages.1 -> stages_1
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] in ("stem", "stages"):
            flat[".".join(["_".join(parts[:2]), *parts[2:]])] = value
    features.load_state_dict(flat)
    x = model_input(model)
    with torch.no_grad():
        expected = model.forward_intermediates(x, intermediates_only=True)
        for got, want in zip(features(x), expected, strict=True):
            torch.testing.assert_close(got, want)


def _shared_param_names(model) -> list[str]:
    return [n for n, _ in model.named_parameters() if ".factors." in n]


@pytest.mark.parametrize("exclude_buffers", [False, True])
def test_model_ema_v3_updates_each_shared_tensor_once(exclude_buffers):
    from timm.utils import ModelEmaV3

    model = _create("crunet_small", num_classes=10)
    shared = _shared_param_names(model)
    assert shared, "crunet_small should have shared factors"
    ema = ModelEmaV3(model, decay=0.9, exclude_buffers=exclude_buffers)
    stage = ema.module.stages[2]  # the copy's units use the copy's factors, not the original model's
    assert all(unit.factors is stage.factors[0] for unit in stage.units[:3])
    before = {n: p.detach().clone() for n, p in ema.module.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=10**6)  # warmup off: decay 0.9 exactly
    decay = ema.get_decay(10**6)
    params = dict(model.named_parameters())
    for n, p in ema.module.named_parameters():  # lerp applied once: a shared tensor applied k times would differ
        expected = decay * before[n] + (1 - decay) * params[n].detach()
        torch.testing.assert_close(p.detach(), expected, msg=f"{n} updated more than once")
    x = model_input(model)
    model.eval()
    ema_all = ModelEmaV3(model, decay=0.0)
    ema_all.update(model, step=10**6)
    torch.testing.assert_close(ema_all.module.eval()(x), model(x))


def test_checkpoint_saver_and_load_checkpoint_round_trip(tmp_path):
    from timm.models import load_checkpoint
    from timm.utils import CheckpointSaver, ModelEmaV3

    model = _create("crunet_small", num_classes=10).eval()
    ema = ModelEmaV3(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    ema.update(model, step=10**6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    saver = CheckpointSaver(model, optimizer, model_ema=ema, checkpoint_dir=str(tmp_path), recovery_dir=str(tmp_path))
    saver.save_checkpoint(epoch=0, metric=0.5)
    path = tmp_path / "checkpoint-0.pth.tar"
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert set(saved["state_dict"]) == set(model.state_dict())  # each shared tensor once
    x = model_input(model)
    for use_ema, reference in ((False, model), (True, ema.module.eval())):
        fresh = _create("crunet_small", num_classes=10).eval()
        load_checkpoint(fresh, str(path), use_ema=use_ema, strict=True)
        with torch.no_grad():
            torch.testing.assert_close(fresh(x), reference(x))


def test_create_model_from_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    model = _create("crunet_small", num_classes=10).eval()
    path = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(path))
    loaded = timm.create_model("crunet_small", num_classes=10, checkpoint_path=str(path)).eval()
    x = model_input(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
