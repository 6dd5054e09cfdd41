"""crunet's models through timm, checked with timm's own expectations (its tests/test_models.py), its EMA and its
checkpoint helpers.

Runs in .venv-timm (scripts/setup-timm: torch 2.14.1 + torchvision 0.29.1 + timm); skipped where timm is not
importable (.venv, whose torch 2.13 CPU build has no working torchvision).
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

timm = pytest.importorskip("timm")

import crunet  # noqa: E402
from crunet.interop.timm_registry import register_all, timm_name  # noqa: E402

SMALL = ["crunet_small", "preresnext_small", "dsfb_resnet32_s8u1"]  # small-image models: fast at 32x32
FULL = ["crunet56"]  # one full-size model with a CRU stage, at a small input


def _create(name: str, **kwargs):
    return timm.create_model(timm_name(name), **kwargs)


def _input(model, size: int | None = None, batch: int = 2) -> torch.Tensor:
    chans, h, w = model.pretrained_cfg["input_size"]
    return torch.randn(batch, chans, size or h, size or w)


def test_every_crunet_model_is_in_timm_and_timm_keeps_its_own():
    names = register_all()
    assert len(names) == len(crunet.list_models())
    assert set(names) <= set(timm.list_models())
    assert "crunet56" in names and "crunet_resnet50" in names  # resnet50 is timm's: ours gets the prefix
    assert type(timm.create_model("resnet50")).__module__ == "timm.models.resnet"
    assert register_all() == names  # idempotent: no duplicate registration
    assert timm.create_model("crunet_resnet50", num_classes=3).name == "resnet50"


def test_import_crunet_does_not_import_timm_but_registers_when_timm_is_imported():
    code = ("import sys, crunet; assert 'timm' not in sys.modules; import timm; "
            "assert 'crunet56' in timm.list_models('crunet*'); "
            "assert timm.create_model('crunet_small', num_classes=10, in_chans=1).in_chans == 1")
    subprocess.run([sys.executable, "-c", code], check=True)  # this module imports timm first, then crunet


def test_create_model_num_classes_and_pretrained_cfg():
    model = _create("crunet56", num_classes=10)
    assert model.num_classes == 10 and model.pretrained_cfg["num_classes"] == 10
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


@pytest.mark.parametrize("name", SMALL + FULL)
def test_backward_reaches_every_parameter(name):
    model = _create(name, num_classes=42)
    model.train()
    out = model(_input(model, 64 if name in FULL else None))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert sum(p.grad.numel() for p in model.parameters()) == sum(p.numel() for p in model.parameters())
    assert out.shape[-1] == 42 and not torch.isnan(out).any()


@pytest.mark.parametrize("name", SMALL + FULL)
def test_default_cfg_forward_features_head_and_reset_classifier(name):
    model = _create(name).eval()
    cfg = model.pretrained_cfg
    x = _input(model, batch=1)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[1] == model.num_features
        assert tuple(feats.shape[-2:]) == tuple(cfg["pool_size"])
        assert torch.allclose(model.forward_head(feats), model(x), atol=1e-5)
        assert model.forward_head(feats, pre_logits=True).shape == (1, model.num_features)
        model.reset_classifier(0)
        assert model(x).shape == (1, model.num_features)
        model.reset_classifier(7)
        assert model(x).shape == (1, 7) and model.get_classifier().out_features == 7


@pytest.mark.parametrize("name", SMALL + FULL)
def test_features_only_matches_feature_info(name):
    reference = _create(name)
    model = _create(name, features_only=True).eval()
    assert model.feature_info.channels() == [f["num_chs"] for f in reference.feature_info]
    assert model.feature_info.reduction() == [f["reduction"] for f in reference.feature_info]
    size = 64 if name in FULL else reference.pretrained_cfg["input_size"][-1]
    with torch.no_grad():
        outs = model(_input(reference, size))
    assert len(outs) == len(reference.feature_info)
    for chs, red, out in zip(model.feature_info.channels(), model.feature_info.reduction(), outs, strict=True):
        assert out.shape[1] == chs
        assert out.shape[-1] <= math.ceil(size / red) + 1
    last = len(reference.feature_info) - 1
    two = _create(name, features_only=True, out_indices=(1, last))
    assert two.feature_info.channels() == [reference.feature_info[i]["num_chs"] for i in (1, last)]
    assert len(two(_input(reference, size))) == 2
    assert "classifier" not in model.pretrained_cfg


def test_features_only_equals_forward_intermediates_with_same_weights():
    model = _create("crunet_small").eval()
    features = _create("crunet_small", features_only=True).eval()
    flat = {}  # timm's flatten_sequential renames stem.0 -> stem_0, stages.1 -> stages_1
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] in ("stem", "stages"):
            flat[".".join(["_".join(parts[:2]), *parts[2:]])] = value
    features.load_state_dict(flat)
    x = _input(model)
    with torch.no_grad():
        expected = model.forward_intermediates(x, intermediates_only=True)
        for got, want in zip(features(x), expected, strict=True):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", SMALL + FULL)
def test_forward_intermediates_as_timm_tests_it(name):
    model = _create(name).eval()
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    size = 64 if name in FULL else model.pretrained_cfg["input_size"][-1]
    x = _input(model, size)
    with torch.no_grad():
        output, intermediates = model.forward_intermediates(x, output_fmt="NCHW")
        assert len(intermediates) == len(info.channels()) >= 3
        for chs, red, out in zip(info.channels(), info.reduction(), intermediates, strict=True):
            assert out.shape[1] == chs and out.shape[-1] <= math.ceil(size / red) + 1
        only = model.forward_intermediates(x, intermediates_only=True)
        for a, b in zip(only, intermediates, strict=True):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(output, model.forward_features(x))
        model.set_grad_checkpointing()
        output3, _ = model.forward_intermediates(x, output_fmt="NCHW")
        torch.testing.assert_close(output, output3, rtol=1e-4, atol=1e-5)


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
    x = _input(model)
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
    x = _input(model)
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
    x = _input(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
