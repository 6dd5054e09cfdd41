"""``import crunet.timm``: every crunet model registered through timm's public API, with a default config that
matches the model, no hosted weights, and nothing patched. Runs in .venv-timm (CI); skipped where timm is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

timm = pytest.importorskip("timm")

import crunet  # noqa: E402
import crunet.timm  # noqa: E402
from crunet.timm import crunet_name, registered_names, timm_name  # noqa: E402


def test_every_crunet_model_is_registered_and_timm_keeps_its_own():
    names = registered_names()
    assert sorted(crunet_name(n) for n in names) == crunet.list_models()
    assert set(names) <= set(timm.list_models(name_matches_cfg=True))  # a config per name, timm's listings see it
    assert set(timm.list_models(module="timm")) == set(names)  # timm's module key: this file's name
    assert timm_name("resnet50") == "crunet_resnet50" and timm_name("crunet56") == "crunet56"
    assert type(timm.create_model("resnet50")).__module__ == "timm.models.resnet"  # timm's own, untouched
    assert timm.create_model("crunet_resnet50", num_classes=3).name == "resnet50"
    with pytest.raises(ValueError, match="not a crunet model"):
        timm_name("vit_base_patch16_224")


def test_registration_is_explicit_and_does_not_depend_on_import_order():
    hooks = "any('crunet' in type(f).__module__ for f in sys.meta_path)"
    code = ("import sys, crunet; assert 'timm' not in sys.modules; "
            f"assert not {hooks}; import timm; assert 'crunet56' not in timm.list_models('crunet*'); "
            "import crunet.timm; assert 'crunet56' in timm.list_models('crunet*'); "
            "assert timm.create_model('crunet_small', num_classes=10, in_chans=1).in_chans == 1")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_hosted_weights_and_pretrained_loads_a_local_file(tmp_path):
    assert not timm.list_pretrained("crunet*") and not timm.list_pretrained("dsfb*")
    cfg = timm.models.get_pretrained_cfg("crunet56")
    assert not cfg.has_weights and cfg.hf_hub_id == "" and cfg.url == ""
    with pytest.raises(RuntimeError, match="crunet has no hosted weights. Pass checkpoint_path=FILE"):
        timm.create_model("crunet56", pretrained=True)
    source = timm.create_model("crunet_small", num_classes=10).eval()
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    loaded = timm.create_model("crunet_small", num_classes=10, pretrained=True,  # the file's classes: head kept
                               pretrained_cfg_overlay={"file": str(path), "num_classes": 10}).eval()
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x))


@pytest.mark.parametrize("name", crunet.list_models())
def test_registered_config_matches_the_model(name):
    with torch.device("meta"):  # configs and shapes only
        model = crunet.create_model(name)
        features = timm.create_model(timm_name(name), features_only=True)
    own, cfg = model.pretrained_cfg, timm.models.get_pretrained_cfg(timm_name(name)).to_dict()
    for key in ("input_size", "pool_size", "crop_pct", "interpolation", "first_conv", "classifier", "num_classes"):
        assert tuple(cfg[key]) == tuple(own[key]) if isinstance(own[key], tuple) else cfg[key] == own[key], key
    assert cfg["mean"] == pytest.approx(own["mean"]) and cfg["std"] == pytest.approx(own["std"])
    assert cfg["min_input_size"] == (3, model.min_input_size, model.min_input_size)
    assert features.feature_info.channels() == [f["num_chs"] for f in model.feature_info]  # every level by default


def test_features_only_wrappers_carry_the_config():
    for feature_cls in ("list", "dict", "hook", "getter", "fx"):
        model = timm.create_model("crunet_small", features_only=True, feature_cls=feature_cls)
        assert model.pretrained_cfg is model.default_cfg
        assert model.pretrained_cfg["input_size"] == (3, 28, 28) and "classifier" not in model.pretrained_cfg
        assert model.feature_info.channels() == [64, 128, 256]
    two = timm.create_model("crunet_small", features_only=True, out_indices=(1, 2), feature_cls="getter")
    assert [o.shape[1] for o in two(torch.randn(1, 3, 28, 28))] == [128, 256]


def test_global_pool_and_classifier_errors_are_one_line():
    with pytest.raises(ValueError, match=r"global_pool='' \(no pooling\) needs num_classes=0"):
        timm.create_model("crunet_small", global_pool="")
    with pytest.raises(ValueError, match="global_pool must be 'avg' or ''"):
        timm.create_model("crunet_small", global_pool="max")
    model = timm.create_model("crunet_small", num_classes=0, global_pool="")
    assert model.head_hidden_size == model.num_features == 256
    assert model(torch.randn(1, 3, 28, 28)).shape == (1, 256, 4, 4)
