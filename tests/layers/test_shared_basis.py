"""The shared-basis convolution and its owner: one tensor, many uses, summed gradients, orthogonal start."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from crunet.layers.complexity import Cx
from crunet.layers.dsfb_blocks import BasisBlock, DSFBStage
from crunet.layers.shared_basis import ECA, SharedBasis, SharedBasisConv


class _Pair(nn.Module):
    """Two shared-basis convolutions back to back, as in a BasisBlock; owners given from outside."""

    def __init__(self, first: SharedBasis, second: SharedBasis, index2: int):
        super().__init__()
        self.owners = nn.ModuleList({id(o): o for o in (first, second)}.values())
        self.conv1 = SharedBasisConv(8, 8, 2, first, 0)
        self.conv2 = SharedBasisConv(8, 8, 2, second, index2)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


@pytest.mark.parametrize("count", [1, 2])
def test_shared_basis_gets_the_sum_of_its_users_gradients(count):
    owner = SharedBasis(8, 4, count=count)
    shared = _Pair(owner, owner, index2=count - 1)
    # the same network with a private copy of the basis for each user
    copy1, copy2 = SharedBasis(8, 4, count=count), SharedBasis(8, 4, count=count)
    copy1.load_state_dict(owner.state_dict())
    copy2.load_state_dict(owner.state_dict())
    private = _Pair(copy1, copy2, index2=count - 1)
    private.conv1.load_state_dict(shared.conv1.state_dict())
    private.conv2.load_state_dict(shared.conv2.state_dict())
    x = torch.randn(2, 8, 6, 6)
    shared(x).square().sum().backward()
    private(x).square().sum().backward()
    for i in range(count):
        grads = [c.weights[i].grad for c in (copy1, copy2) if c.weights[i].grad is not None]
        torch.testing.assert_close(owner.weights[i].grad, sum(grads))
    assert all(w.grad.abs().sum() > 0 for w in owner.weights)


def test_users_reference_the_owner_without_registering_it():
    owner = SharedBasis(8, 4, count=2)
    stage = DSFBStage([BasisBlock(8, 1, owner, (0, 1)) for _ in range(3)], [owner])
    keys = [k for k in stage.state_dict() if "weights" in k]
    assert keys == ["shared.0.weights.0", "shared.0.weights.1"]
    assert sum(p.numel() for p in stage.parameters()) == stage.complexity(Cx(8, 6, 6)).params
    for block in stage.blocks:
        assert block.conv1.shared is owner and "_shared" not in dict(block.conv1.named_children())


def test_stage_round_trips_through_safetensors(tmp_path):
    owner = SharedBasis(8, 4, count=2)
    stage = DSFBStage([BasisBlock(8, 1, owner, (0, 1)) for _ in range(2)], [owner])
    save_file(stage.state_dict(), tmp_path / "s.safetensors")
    other_owner = SharedBasis(8, 4, count=2)
    other = DSFBStage([BasisBlock(8, 1, other_owner, (0, 1)) for _ in range(2)], [other_owner])
    other.load_state_dict(load_file(tmp_path / "s.safetensors"))
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(other.eval()(x), stage.eval()(x))


@pytest.mark.parametrize("rank, count", [(4, 1), (4, 2), (36, 2)])
def test_joint_orthogonal_init(rank, count):
    owner = SharedBasis(8, rank, count=count)  # 8 * 3 * 3 = 72 columns
    (b,) = owner.orthogonality_groups()
    assert b.shape == (rank * count, 72)
    torch.testing.assert_close(b @ b.T, torch.eye(rank * count), atol=1e-5, rtol=0)


@pytest.mark.parametrize("unique_rank, stride", [(0, 1), (3, 1), (3, 2)])
def test_complexity_matches_flop_counter(unique_rank, stride):
    from torch.utils.flop_counter import FlopCounterMode

    owner = SharedBasis(8, 4)
    conv = SharedBasisConv(8, 6, unique_rank, owner, stride=stride)
    x = torch.randn(1, 8, 7, 7)
    with FlopCounterMode(display=False) as counter:
        y = conv(x)
    cx = conv.complexity(Cx(8, 7, 7))
    assert (cx.c, cx.h, cx.w) == tuple(y.shape[1:])
    assert cx.macs == counter.get_total_flops() // 2
    assert cx.params == sum(p.numel() for p in conv.parameters())  # the basis is the owner's, not counted here


def test_eca_keeps_shape_and_counts():
    eca = ECA(3)
    x = torch.randn(2, 10, 4, 4)
    assert eca(x).shape == x.shape
    assert eca.complexity(Cx(10, 4, 4)).params == 3
    with pytest.raises(ValueError, match="kernel_size"):
        ECA(2)


@pytest.mark.parametrize("kwargs, match", [
    ({"in_chs": 0, "rank": 4}, "in_chs"),
    ({"in_chs": 8, "rank": -1}, "rank"),
    ({"in_chs": 8, "rank": 4, "count": 0}, "count"),
])
def test_shared_basis_rejects_bad_shapes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SharedBasis(**kwargs)
