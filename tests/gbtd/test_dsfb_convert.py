"""A trained ResNet into its DSFB design (crunet.gbtd.dsfb_convert): exact at full rank (eval and, calibrated, train
mode), the data-aware basis keeps more of the output than the plain SVD at a low rank, bases start orthonormal, and
the pairs that cannot convert are refused in one line."""

import pytest
import torch

import crunet
from crunet.errors import ConfigError
from crunet.gbtd.dsfb_convert import dsfb_from_resnet
from crunet.layers.orthogonality import orthogonality_groups, orthogonality_penalty
from crunet.layers.shared_basis import SharedBasisConv

SMALL = {"depths": (3, 3, 3), "widths": (4, 8, 16)}  # in k k = 36, 72, 144 per stage


def _pair(target: str, randomize_bns, **design):
    torch.manual_seed(0)
    source = randomize_bns(crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1, **SMALL)).eval()
    return source, crunet.create_model(target, num_classes=10, in_chans=1, **SMALL, **design)


@pytest.mark.parametrize("target", ["dsfb_resnet32_s16u1", "dsfb_resnet32_s16u1_double"])
@pytest.mark.parametrize("method", ["svd", "data"])
def test_at_full_rank_the_converted_network_is_the_original(target, method, randomize_bns):
    source, new = _pair(target, randomize_bns, shared_rank=35)  # s + u = 35 + 1 = 36 = in k k (x2 per stage)
    images = torch.randn(64, 1, 12, 12)
    errors = dsfb_from_resnet(source, new, method, images)
    assert max(e.weight_error for e in errors) < 1e-12
    x = torch.randn(8, 1, 12, 12)
    assert torch.allclose(new.eval()(x), source(x), atol=1e-5, rtol=1e-5)
    # calibrated: in train mode, on the calibration images, every BN computes what it computes in eval mode
    assert torch.allclose(new.train()(images), source(images), atol=1e-4, rtol=1e-4)


def test_the_bases_start_orthonormal_so_the_regularizer_starts_at_zero(randomize_bns):
    source, new = _pair("dsfb_resnet32_s16u1", randomize_bns, shared_rank=4)
    dsfb_from_resnet(source, new, "data", torch.randn(32, 1, 12, 12))
    assert orthogonality_penalty(orthogonality_groups(new, unique=True)) < 1e-10
    conv = next(m for m in new.modules() if isinstance(m, SharedBasisConv))
    assert conv.unique.weight.abs().sum() > 0


def test_data_aware_keeps_more_of_the_output_than_the_weights_svd(randomize_bns):
    """On inputs with a few dominant directions, the basis fitted to them misses less of the output."""
    source, plain = _pair("dsfb_resnet32_s16u1", randomize_bns, shared_rank=4)
    aware = crunet.create_model("dsfb_resnet32_s16u1", num_classes=10, in_chans=1, **SMALL, shared_rank=4)
    images = torch.randn(128, 1, 12, 12)
    svd = dsfb_from_resnet(source, plain, "svd", images)
    data = dsfb_from_resnet(source, aware, "data", images)
    assert sum(e.output_error for e in data) < sum(e.output_error for e in svd)
    assert sum(e.weight_error for e in data) > sum(e.weight_error for e in svd)  # each minimizes its own error


def test_pairs_that_cannot_convert_are_refused_in_one_line(randomize_bns):
    source, new = _pair("dsfb_resnet32_s16u1", randomize_bns)
    with pytest.raises(ConfigError, match="not the shared design of resnet32_cifar"):
        dsfb_from_resnet(source, crunet.create_model("dsfb_resnet32_s16u1", num_classes=10, in_chans=1))
    with pytest.raises(ConfigError, match="--method must be one of svd, data"):
        dsfb_from_resnet(source, new, "qr")
    with pytest.raises(ConfigError, match="needs calibration images"):
        dsfb_from_resnet(source, new, "data")
    with pytest.raises(ConfigError, match="unshared BasicBlock ResNet"):
        dsfb_from_resnet(new, new)
