"""DSFB's CIFAR-100 ResNet-34s (the source's ``models/cifar100/resnet.py``): the published sizes, the definition's
exact counts, the regularizer and normalization of its ``train_cifar100.py``, and the source's own model built from
the mirror (when this machine has it) giving the same logits on the same weights."""

import os
import subprocess
import types
from pathlib import Path

import pytest
import torch

import crunet
from crunet.analysis.dsfb_tables import DSFB_ENTRIES
from crunet.analysis.paper_tables import table_rows
from tests.helpers import meta_model

# name, the source README's parameters (M) and FLOPs (G) for ResNet34-S<s>U1 (its CIFAR-100 table)
CIFAR100 = [("dsfb_resnet34_cifar100_s8u1", 8, 5.87, 0.79), ("dsfb_resnet34_cifar100_s16u1", 16, 6.49, 1.05),
            ("dsfb_resnet34_cifar100_s32u1", 32, 7.73, 1.55)]
MIRROR = Path(os.environ.get("CRUNET_DSFB_SOURCE", "/work/.mirror/ssregibility+Net_RL2/repo"))  # a git clone


def resnet34_cifar100_params(s: int, u: int, classes: int = 100) -> int:
    """The definition counted by hand: a 3x3/64 stem, planes 64-512 with 1x1 projection shortcuts, blocks 2..n of
    each stage on a basis of u_g unique and s_g shared filters (s_g = s 2^g), coefficients 1x1 and two BNs each."""
    widths, depths = (64, 128, 256, 512), (3, 4, 6, 3)
    total, in_c = 3 * 64 * 9 + 2 * 64, 64
    for g, (p, n) in enumerate(zip(widths, depths, strict=True)):
        total += 9 * in_c * p + 9 * p * p + 4 * p + (in_c * p + 2 * p if in_c != p else 0)
        sg, ug = s * 2**g, u * 2**g
        per_conv = 9 * ug * p + 2 * (sg + ug) + (sg + ug) * p + 2 * p
        total += 9 * sg * p + (n - 1) * 2 * per_conv
        in_c = p
    return total + 512 * classes + classes


@pytest.mark.parametrize("name, s, params_m, gflops", CIFAR100)
def test_params_match_the_source_readme_and_its_flops_are_twice_our_macs(name, s, params_m, gflops):
    model = meta_model(name, num_classes=100)
    params = crunet.count_parameters(model)
    assert params == resnet34_cifar100_params(s, 1)
    assert round(params / 1e6, 2) == params_m
    # the README's CIFAR-100 "FLOPs" count a multiply-add as two operations (its ImageNet table counts one)
    assert 2 * crunet.complexity(model, (3, 32, 32))["macs"] == pytest.approx(gflops * 1e9, rel=0.01)


def test_regularizer_and_normalization_are_those_of_train_cifar100():
    model = crunet.create_model("dsfb_resnet34_cifar100_s16u1", num_classes=100)
    assert model.orth_unique is False and model.orth_lambda == 10.0  # train_basis: the shared bases only, lambda 10
    assert model.pretrained_cfg["mean"] == (0.507, 0.487, 0.441)  # utils.py, CIFAR100
    assert model.pretrained_cfg["std"] == (0.267, 0.256, 0.276)
    assert [stage.shared[0].rank for stage in model.stages] == [16, 32, 64, 128]
    assert model.stages[1].blocks[0].shortcut is not None  # projection shortcut (the source's option B)


def test_table_rows_hold_the_readme_figures():
    rows = {r["model"]: r for r in table_rows(tuple(e for e in DSFB_ENTRIES if e.num_classes == 100))}
    assert {name: rows[name]["paper_params_m"] for name, *_ in CIFAR100} == {n: p for n, _, p, _ in CIFAR100}
    assert all(abs(rows[name]["params_diff_pct"]) <= 0.1 for name, *_ in CIFAR100)  # the README rounds to 0.01 M


def _source_module() -> types.ModuleType:
    """The source's models/cifar100/resnet.py, read from the mirror (never copied into this repository)."""
    text = subprocess.run(["git", "-C", str(MIRROR), "show", "HEAD:models/cifar100/resnet.py"], capture_output=True,
                          text=True, check=True).stdout
    module = types.ModuleType("net_rl2_cifar100_resnet")
    exec(compile(text, "models/cifar100/resnet.py", "exec"), module.__dict__)
    return module


@pytest.mark.skipif(not MIRROR.is_dir(), reason="the DSFB source's mirror is not on this machine")
@pytest.mark.parametrize("name, s", [pytest.param(name, s, marks=() if s == 8 else pytest.mark.slow)
                                     for name, s, *_ in CIFAR100])
def test_same_logits_as_the_source_model_on_the_same_weights(name, s):
    torch.manual_seed(0)
    theirs = _source_module().ResNet34_SingleShared(s, 1).double()
    ours = crunet.create_model(name, num_classes=100).double()
    # both list each tensor once, in the same order (the source's shared basis first, under its stage)
    pairs = list(zip(theirs.named_parameters(), ours.parameters(), strict=True))
    pairs += list(zip(theirs.named_buffers(), ours.buffers(), strict=True))
    assert sum(p.numel() for p in theirs.parameters()) == crunet.count_parameters(ours)
    with torch.no_grad():
        for (where, a), b in pairs:
            assert a.shape == b.shape, where
            if where.endswith("running_var"):
                a.uniform_(0.5, 1.5)
            elif a.dim() == 1 and a.is_floating_point():  # BN weights, biases and means: off their start
                a.normal_(0.5 if where.endswith("weight") else 0.0, 0.2)
            b.copy_(a)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    for mode in ("eval", "train"):
        getattr(theirs, mode)(), getattr(ours, mode)()
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-9, atol=1e-9)
