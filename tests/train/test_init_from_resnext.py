"""``crunet train --init-from`` from a trained pre-activation ResNeXt: into its CRU design (``--init-method cru``)
and into a thinner copy (``norm``), each recorded in init.json; a pair that cannot convert is one line."""

import json

import pytest

from crunet.cli.main import main
from crunet.models import create_model
from crunet.train import TrainConfig, train
from crunet.train.init_from import default_method


def _stages(*stages):
    keys = ("depth", "out_chs", "width", "groups", "stride", "share_every")
    return json.dumps({"stem_chs": 8, "stages": [dict(zip(keys, s, strict=True)) for s in stages]})


RESNEXT = _stages((1, 8, 8, 2, 1, 0), (2, 16, 8, 2, 2, 0), (2, 16, 16, 2, 2, 0))  # conv2 adds into the stem's stream
CRU = _stages((1, 8, 8, 2, 1, 0), (2, 16, 12, None, 2, 2), (2, 16, 16, None, 2, 2))  # conv3 wider, as crunet_small
# (torch 2.13's CPU backward of a 1x1 stride-2 channels-last convolution corrupts the heap below 8 input channels)
THINNER = _stages((1, 8, 6, 2, 1, 0), (2, 12, 4, 2, 2, 0), (2, 12, 8, 2, 2, 0))
QUIET = ["--batch-size", "32", "--subset", "64", "--epochs", "1", "--workers", "0", "--progress", "none",
         "--no-tensorboard", "--no-plot", "--init-images", "32"]


def _trained(out, fmnist, model, design):
    train(TrainConfig(model=model, model_kwargs=json.loads(design), data=str(fmnist), out=str(out), epochs=1,
                      subset=64, batch_size=32, progress="none", tensorboard=False, plot=False, workers=0))
    return out / "last.pt"


@pytest.fixture(scope="module")
def resnext(tmp_path_factory, fmnist):
    return _trained(tmp_path_factory.mktemp("resnext") / "run", fmnist, "preresnext_small", RESNEXT)


@pytest.mark.parametrize("method, model, design, groups", [("cru", "crunet_small", CRU, 2),
                                                            ("norm", "preresnext_small", THINNER, 0)])
def test_a_resnext_converts_and_records_it(resnext, fmnist, tmp_path, method, model, design, groups):
    out = tmp_path / method
    assert main(["train", "--model", model, "--model-kwargs", design, "--init-from", str(resnext), "--init-method",
                 method, "--data", str(fmnist), "--out", str(out), *QUIET]) == 0
    init = json.load(open(out / "init.json"))
    assert (init["init_method"], init["source_model"], len(init["groups"])) == (method, "preresnext_small", groups)
    assert all(0 <= e <= 1 for g in init["groups"] for e in (*g["unit_errors"], g["error"]))
    assert "top1" in init["val_before"] and (out / "last.pt").is_file()


def test_a_pair_that_cannot_convert_is_one_line(resnext, fmnist, tmp_path, capsys):
    resnet = _trained(tmp_path / "resnet", fmnist, "resnet32_cifar", '{"depths": [1, 1, 1], "widths": [4, 8, 8]}')
    narrow = _stages((1, 8, 8, 2, 1, 0), (2, 16, 4, None, 2, 2), (2, 16, 16, None, 2, 2))
    for source, model, design, method, problem in (
            (resnet, "crunet_small", CRU, "cru", "not a CRU design of resnet32_cifar"),
            (resnext, "crunet_small", narrow, "cru", "conv3's bottleneck width 4 is below the source's 8"),
            (resnext, "dsfb_resnet32_s16u1", "{}", "svd", "not the shared design of preresnext_small")):
        assert main(["train", "--model", model, "--model-kwargs", design, "--init-from", str(source),
                     "--init-method", method, "--data", str(fmnist), "--out", str(tmp_path / "bad"), *QUIET]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and problem in err


def test_crunet_compress_picks_cru_for_a_cru_design():
    def cfg(name, **kwargs):
        return create_model(name, num_classes=10, in_chans=1, **kwargs).cfg

    assert default_method(cfg("crunet_small")) == "cru" and default_method(cfg("preresnext_small")) == "norm"
    assert default_method(cfg("dsfb_resnet32_s16u1")) == "svd" and default_method(cfg("resnet32_cifar")) == "norm"
