"""factorize_into: a trained pre-activation ResNeXt written into a CRU network built elsewhere (``crunet train
--init-from --init-method cru``), whose shared stages may be wider than the ResNeXt's bottleneck (crunet_small)."""

import dataclasses

import pytest
import torch

import crunet
from crunet.errors import ConfigError
from crunet.gbtd.convert import check_cru_target, cru_design, factorize_into
from crunet.layers.complexity import count_parameters
from crunet.models.design import NetCfg, StageCfg
from crunet.models.preact_resnet import PreActResNet
from tests.gbtd.units import randomize

SOURCE = NetCfg((StageCfg(1, 8, 8, 2, stride=1), StageCfg(2, 16, 8, 2, stride=2)), stem="small", stem_chs=4)
WIDER_CRU = dataclasses.replace(SOURCE, stages=(SOURCE.stages[0], StageCfg(2, 16, 12, None, stride=2, share_every=2)))


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _collectively_low_rank_source(seed=0):
    """SOURCE whose conv3 kernels share 8 rank-1 atoms (A3 row j of the first 1x1 with the 3x3 pattern g_j), read by
    the first unit through its projection P = [I; I], with an identity BN2 behind non-negative first 1x1s (its ReLU
    is linear): an exact factorization into R = 12 >= 8 terms exists, and the CRU computes it."""
    gen = torch.Generator().manual_seed(seed)
    model = randomize(PreActResNet(SOURCE, num_classes=5, in_chans=1, name="tiny").double(), gen).eval()
    stage = model.stages[1]
    c = torch.rand(8, 8, generator=gen, dtype=torch.float64)
    patterns = torch.randn(8, 3, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        stage.units[0].shortcut.conv.weight.copy_(torch.cat((torch.eye(8), torch.eye(8)))[:, :, None, None])
        stage.units[0].conv1.conv.weight.copy_(2 * c[:, :, None, None])  # [C C] P = 2C: read through P^+, [C C]
        stage.units[1].conv1.conv.weight.copy_(torch.cat((c, c), 1)[:, :, None, None])
        for unit in stage.units:
            bn = unit.conv2.norm.bn
            bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps), bn.weight.fill_(1), bn.bias.zero_()
            mix = torch.randn(8, 4, generator=gen, dtype=torch.float64)  # each unit's own: in its A4
            inputs = torch.arange(8).view(2, 4).repeat_interleave(4, 0)  # the input channels of each filter's group
            unit.conv2.conv.weight.copy_(mix[:, :, None, None] * patterns[inputs])
    return model


def test_a_collectively_low_rank_resnext_converts_exactly_into_a_wider_cru():
    source = _collectively_low_rank_source()
    target = PreActResNet(WIDER_CRU, num_classes=5, in_chans=1, name="tiny_cru").double()
    x = torch.randn(16, 1, 8, 8, dtype=torch.float64)
    report = factorize_into(source, target, max_iter=1000, calibration=x)  # ALS is slow with spare terms
    (group,) = report.groups
    assert group.stage == "conv3" and group.units == (0, 1) and float(group.factors.total_errors[-1]) < 1e-7
    with torch.no_grad():
        assert _rel(target.eval()(x), source(x)) < 1e-6
        assert _rel(target.train()(x), source(x)) < 1e-6  # calibrated: batch statistics are the running ones
    last = target.stages[1].units[1].conv3.conv.weight
    assert torch.all(last[:, 8:] == 0) and last.shape[1] == 12  # the 4 extra channels start silent


def test_crunet_small_is_the_cru_design_of_preresnext_small_with_wider_bottlenecks():
    source = crunet.create_model("preresnext_small", num_classes=10, in_chans=1)
    target = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
    assert check_cru_target(source, target) == [1, 2]
    factorized = cru_design(source.cfg, [1, 2], groups=None, share_every=3)  # what crunet factorize makes
    widths = [s.width for s in target.cfg.stages]
    assert widths == [32, 80, 160] and [s.width for s in factorized.stages] == [32, 64, 128]
    same_widths = [dataclasses.replace(s, width=w) for s, w in zip(factorized.stages, widths, strict=True)]
    assert target.cfg == dataclasses.replace(factorized, stages=tuple(same_widths))
    assert (count_parameters(source), count_parameters(target)) == (355_434, 365_338)
    assert count_parameters(PreActResNet(factorized, num_classes=10, in_chans=1)) == 288_810


@pytest.mark.slow
def test_converted_crunet_small_is_far_closer_to_the_resnext_than_a_random_one(trained_looking):
    """Measured on a preresnext_small with random weights and trained-looking BNs, 32 images: relative output error
    0.35 converted (30 sweeps), 1.0 from crunet_small's own init."""
    source = trained_looking("preresnext_small", in_chans=1).double()
    target = crunet.create_model("crunet_small", num_classes=10, in_chans=1).double()
    x = torch.randn(32, 1, 28, 28, dtype=torch.float64)
    fresh = crunet.create_model("crunet_small", num_classes=10, in_chans=1).double().eval()
    report = factorize_into(source, target, max_iter=30, calibration=x, weight_by_inputs=True)
    assert [g.stage for g in report.groups] == ["conv3", "conv4"] and report.params_after == 365_338
    assert all(float(e) < 0.2 for g in report.groups for e in g.errors)
    with torch.no_grad():
        expected = source(x)
        converted, random = _rel(target.eval()(x), expected), _rel(fresh(x), expected)
    assert converted < 0.5 and random > 0.9


@pytest.mark.parametrize("name, kwargs, problem", [
    ("preresnext_small", {}, "it shares no stage the source does not"),
    ("crunet_small", {"stem_chs": 16}, "another stem"),
    ("crunet_small_plain_last", {}, None),
])
def test_which_targets_are_cru_designs_of_preresnext_small(name, kwargs, problem):
    source = crunet.create_model("preresnext_small", num_classes=10, in_chans=1)
    target = crunet.create_model(name, num_classes=10, in_chans=1, **kwargs)
    if problem is None:
        assert check_cru_target(source, target) == [1]
        return
    with pytest.raises(ConfigError, match=f"{name} is not a CRU design of preresnext_small \\({problem}") as err:
        check_cru_target(source, target)
    assert "\n" not in str(err.value)


def test_a_narrower_cru_stage_or_a_resnet_source_is_refused():
    source = crunet.create_model("preresnext_small", num_classes=10, in_chans=1)
    narrow = crunet.create_model("crunet_small", num_classes=10, in_chans=1).cfg
    stages = tuple(dataclasses.replace(s, width=48) if s.shared else s for s in narrow.stages)
    target = PreActResNet(dataclasses.replace(narrow, stages=stages), 10, 1, "narrow")
    with pytest.raises(ConfigError, match="conv3's bottleneck width 48 is below the source's 64"):
        factorize_into(source, target)
    resnet = crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1)
    with pytest.raises(ConfigError, match="not a CRU design of resnet32_cifar .*pre-activation"):
        factorize_into(resnet, crunet.create_model("crunet_small", num_classes=10, in_chans=1))
