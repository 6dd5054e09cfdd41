"""factorize_model: an unshared stage becomes a CRU stage whose linear view is the collective factorization, and
which, calibrated, computes the original wherever the original's middle ReLU (the one a CRU moves) is linear."""

import pytest
import torch

from crunet.gbtd import factors, operator
from crunet.gbtd.convert import _unit_kernel, factorize_model
from crunet.gbtd.operator import shortcut_map
from crunet.gbtd.saving import load_model, save_model
from crunet.models.design import NetCfg, StageCfg
from crunet.models.preact_resnet import PreActResNet
from tests.gbtd.units import randomize

TINY = NetCfg((StageCfg(1, 8, 8, 2, stride=1), StageCfg(3, 8, 8, 2, stride=1), StageCfg(2, 12, 6, 3, stride=2)),
              stem="small", stem_chs=4)


def _model(seed=0):
    model = PreActResNet(TINY, num_classes=5, in_chans=1, name="tiny").double()
    return randomize(model, torch.Generator().manual_seed(seed)).eval()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_new_units_are_the_factorization_in_the_linear_view():
    old = _model()
    new, report = factorize_model(old, ["conv4"], max_iter=30)
    (group,) = report.groups
    assert group.stage == "conv4" and group.units == (0, 1)
    units = list(new.stages[2].units)
    assert units[0].factors is units[1].factors is new.stages[2].factors[0]
    reconstructed = group.factors.kernels()
    for j, (old_unit, new_unit) in enumerate(zip(old.stages[2].units, units, strict=True)):
        new_kernel, _ = factors(new_unit).kernel(include_input_map=False)
        last = old_unit.conv3.conv.weight[:, :, 0, 0]  # kept: the factorized kernel stops at the third BN
        assert _rel(new_kernel, torch.einsum("dw,wiab->diab", last, reconstructed[j])) < 1e-10
        target, _ = _unit_kernel(old_unit)
        assert _rel(reconstructed[j], target) == pytest.approx(float(group.errors[j]), rel=1e-8)
    # the projection shortcut is carried over exactly
    for a, b in zip(shortcut_map(old.stages[2].units[0]), shortcut_map(units[0]), strict=True):
        torch.testing.assert_close(a, b)


def test_collectively_low_rank_stages_convert_exactly():
    old = _model(1)
    stage = old.stages[1]  # make its kernels share A3 and G: same first 1x1 and 3x3, identity middle BNs
    with torch.no_grad():
        for unit in stage.units[1:]:
            unit.conv1.conv.weight.copy_(stage.units[0].conv1.conv.weight)
            unit.conv2.conv.weight.copy_(stage.units[0].conv2.conv.weight)
        for unit in stage.units:
            for bn in (unit.conv2.norm.bn, unit.conv3.norm.bn):
                bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps), bn.weight.fill_(1), bn.bias.zero_()
    new, report = factorize_model(old, ["conv3"], groups=2, max_iter=300, restarts=4)
    assert float(report.groups[0].factors.total_errors[-1]) < 1e-8
    for old_unit, new_unit in zip(stage.units, new.stages[1].units, strict=True):
        w_old, b_old = operator(old_unit, shortcut=True)
        w_new, b_new = operator(new_unit, shortcut=True)
        assert _rel(w_new, w_old) < 1e-8
        torch.testing.assert_close(b_new, b_old)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)  # everything else is carried over unchanged
    torch.testing.assert_close(new.stem(x), old.stem(x))
    torch.testing.assert_close(new.head.fc.weight, old.head.fc.weight)
    assert report.params_before == sum(p.numel() for p in old.parameters())
    assert report.params_after == sum(p.numel() for p in new.parameters())


def test_calibration_makes_train_mode_agree_with_eval_mode_on_its_images():
    old = _model(2)
    x = torch.randn(16, 1, 8, 8, dtype=torch.float64)
    plain, _ = factorize_model(old, ["conv3", "conv4"], max_iter=3)
    calibrated, _ = factorize_model(old, ["conv3", "conv4"], max_iter=3, calibration=x)
    with torch.no_grad():
        eval_out = calibrated.eval()(x)
        train_plain, train_calibrated = plain.train()(x), calibrated.train()(x)
        eval_plain = plain.eval()(x)
    assert _rel(train_calibrated, eval_out) < 1e-9  # batch statistics = the calibrated ones
    assert _rel(train_plain, eval_plain) > 1e-2  # without calibration, train mode is another function


def test_calibrated_it_computes_the_original_where_the_middle_relu_is_linear():
    """A collectively low-rank stage whose middle ReLU never sees a negative value: the converted network is the
    original, in its real (non-linear) forward; the ReLU before the extra 1x1 is kept linear by its shift."""
    old = _model(3)
    stage = old.stages[1]
    with torch.no_grad():
        for unit in stage.units:
            unit.conv1.conv.weight.copy_(stage.units[0].conv1.conv.weight.abs())  # ReLU(BN1 x) >= 0 in, >= 0 out
            unit.conv2.conv.weight.copy_(stage.units[0].conv2.conv.weight)
            bn = unit.conv2.norm.bn
            bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps), bn.weight.fill_(1), bn.bias.zero_()
    x = torch.randn(16, 1, 8, 8, dtype=torch.float64)
    new, report = factorize_model(old, ["conv3"], groups=2, max_iter=300, restarts=4, calibration=x)
    assert float(report.groups[0].factors.total_errors[-1]) < 1e-6
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(x), old(x), rtol=1e-6, atol=1e-6)
        assert _rel(new.train()(x), old(x)) < 1e-6
        uncalibrated, _ = factorize_model(old, ["conv3"], groups=2, max_iter=300, restarts=4)
        assert _rel(uncalibrated.eval()(x), old(x)) > 1e-3  # no shift: the ReLU before the extra 1x1 cuts


def test_factorized_models_save_and_load(tmp_path):
    new, _ = factorize_model(_model(), ["conv3", "conv4"], max_iter=3)
    path = save_model(new.float(), tmp_path / "cru.safetensors")
    loaded = load_model(path).eval()
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(loaded(x), new(x))
    assert loaded.cfg == new.cfg and loaded.name == "tiny_cru"


def test_clear_errors():
    model = _model()
    with pytest.raises(ValueError, match="no stage 'conv9'.*conv2, conv3, conv4"):
        factorize_model(model, ["conv9"])
    with pytest.raises(ValueError, match="at least one stage"):
        factorize_model(model, [])
    cru, _ = factorize_model(model, ["conv3"], max_iter=1)
    with pytest.raises(ValueError, match="already shares"):
        factorize_model(cru, ["conv3"])


def test_weighting_by_the_inputs_keeps_an_exact_fit_exact(monkeypatch):
    """Whitened by any input covariance, a collectively low-rank stage is still fitted exactly: the whitening is
    undone in the shared 1x1 (A3 = L^-1 A3'), so the units' linear view is the original's."""
    import crunet.gbtd.convert as convert

    old = _model(1)
    stage = old.stages[1]
    with torch.no_grad():
        for unit in stage.units[1:]:
            unit.conv1.conv.weight.copy_(stage.units[0].conv1.conv.weight)
            unit.conv2.conv.weight.copy_(stage.units[0].conv2.conv.weight)
        for unit in stage.units:
            for bn in (unit.conv2.norm.bn, unit.conv3.norm.bn):
                bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps), bn.weight.fill_(1), bn.bias.zero_()
    scales = torch.linspace(0.5, 2.0, 8, dtype=torch.float64)
    monkeypatch.setattr(convert, "_reduce_input_covariances",
                        lambda model, indices, images: {u: torch.diag(scales) for u in stage.units})
    monkeypatch.setattr(convert, "_shift_into_positive", lambda *args: None)  # the linear view only
    new, report = factorize_model(old, ["conv3"], groups=2, max_iter=300, restarts=4,
                                  calibration=torch.randn(4, 1, 8, 8, dtype=torch.float64), weight_by_inputs=True)
    assert float(report.groups[0].factors.total_errors[-1]) < 1e-6
    for old_unit, new_unit in zip(stage.units, new.stages[1].units, strict=True):
        w_old, _ = operator(old_unit, shortcut=True)
        w_new, _ = operator(new_unit, shortcut=True)
        assert _rel(w_new, w_old) < 1e-6
