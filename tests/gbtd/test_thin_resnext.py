"""Thinning a trained pre-activation ResNeXt by channel norm (crunet.gbtd.thin_resnext): the same widths copy the
network; channels made dead (zero scale and shift in the BNs that read them) are the ones dropped, group by group,
and the function is kept; each group keeps its own largest channels."""

import pytest
import torch

import crunet
from crunet.errors import ConfigError
from crunet.gbtd.thin_resnext import thin_from_preact
from crunet.models.design import StageCfg
from crunet.study.grid import size_overrides

# conv2 adds into the stem's stream: its first unit has no projection
IDENTITY_FIRST = {"stem_chs": 16, "stages": (StageCfg(2, 16, 8, 2, stride=1), StageCfg(2, 24, 8, 4))}


def _resnext(randomize_bns, factor=1.0):
    model = crunet.create_model("preresnext_small", num_classes=10, in_chans=1,
                                **size_overrides("preresnext_small", factor))
    return randomize_bns(model).double().eval()


def _kill(bn, channels):
    bn.weight.data[channels] = 0
    bn.bias.data[channels] = 0


def _dead_in_groups(width, groups, kept, gen):
    """``width // groups - kept // groups`` random channels of each group."""
    per, drop = width // groups, width // groups - kept // groups
    return torch.cat([torch.randperm(per, generator=gen)[:drop] + g * per for g in range(groups)])


@pytest.mark.parametrize("design", [{}, IDENTITY_FIRST])
def test_at_the_same_widths_thinning_copies_the_network(randomize_bns, design):
    source, target = (randomize_bns(crunet.create_model("preresnext_small", num_classes=10, in_chans=1, **design))
                      .double().eval() for _ in range(2))
    thin_from_preact(source, target)
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=1e-10)


def test_dead_channels_are_the_ones_dropped_and_the_function_is_kept(randomize_bns):
    gen = torch.Generator().manual_seed(1)
    source, target = _resnext(randomize_bns), _resnext(randomize_bns, 0.5)
    new = target.cfg
    dead = torch.randperm(source.cfg.stem_chs, generator=gen)[:source.cfg.stem_chs - new.stem_chs]
    _kill(source.stem[1].bn, dead)  # the stem writes zeros there ...
    readers = [source.stages[0].units[0].conv1.norm.bn, source.stages[0].units[0].shortcut.norm.bn]
    for g, (stage, old_cfg, new_cfg) in enumerate(zip(source.stages, source.cfg.stages, new.stages, strict=True)):
        for bn in readers:
            _kill(bn, dead)  # ... and every BN reading the stream ignores them
        dead = torch.randperm(old_cfg.out_chs, generator=gen)[:old_cfg.out_chs - new_cfg.out_chs]
        with torch.no_grad():
            stage.units[0].shortcut.conv.weight[dead] = 0
            for unit in stage.units:
                unit.conv3.conv.weight[dead] = 0
                _kill(unit.conv2.norm.bn, _dead_in_groups(old_cfg.width, unit.groups, new_cfg.width, gen))
                _kill(unit.conv3.norm.bn, _dead_in_groups(old_cfg.width, unit.groups, new_cfg.width, gen))
        readers = [u.conv1.norm.bn for u in stage.units[1:]]
        if g + 1 < len(source.stages):
            readers += [source.stages[g + 1].units[0].conv1.norm.bn, source.stages[g + 1].units[0].shortcut.norm.bn]
    for bn in (*readers, source.final_norm.bn):
        _kill(bn, dead)
    thin_from_preact(source, target)
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        out = target(x)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, source(x), rtol=0, atol=1e-10)


def test_each_group_keeps_its_own_largest_channels(randomize_bns):
    source, target = _resnext(randomize_bns), _resnext(randomize_bns, 0.5)
    unit = source.stages[2].units[1]
    scale = torch.rand(unit.width, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    scale *= 10.0 ** torch.arange(unit.groups, dtype=torch.float64).repeat_interleave(unit.width // unit.groups)
    with torch.no_grad():  # equal first-1x1 filters, BN2 scales growing tenfold from group to group
        unit.conv1.conv.weight.fill_(0.1)
        bn = unit.conv2.norm.bn
        bn.running_var.fill_(1 - bn.eps), bn.weight.copy_(scale)
    thin_from_preact(source, target)
    kept = target.stages[2].units[1].conv2.norm.bn.weight.detach()
    per_group = target.stages[2].units[1].width // unit.groups
    expected = scale.view(unit.groups, -1).topk(per_group, dim=1).indices.sort(dim=1).values
    expected = (expected + torch.arange(unit.groups)[:, None] * (unit.width // unit.groups)).flatten()
    assert torch.equal(kept, scale[expected])  # the largest of each group, not the largest groups


def test_a_target_that_is_not_thinner_is_refused(randomize_bns):
    source = crunet.create_model("preresnext_small", num_classes=10, in_chans=1)
    for target, problem in ((_resnext(randomize_bns, 1.06), "the stem is wider, 33 > 32"),
                            (crunet.create_model("crunet_small", num_classes=10, in_chans=1), "shares its factors"),
                            (crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1), "pre-activation")):
        with pytest.raises(ConfigError, match=f"is not a thinner copy of preresnext_small \\(.*{problem}") as err:
            thin_from_preact(source, target)
        assert "\n" not in str(err.value)
