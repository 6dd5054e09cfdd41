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


# --- the fast path (one convolution over the joined filters, basis BN folded into the 1x1) against the reference ---

def _conv_and_owner(unique_rank, stride, count, kernel, randomize_bns):
    owner = SharedBasis(6, 5, kernel, count=count)
    conv = SharedBasisConv(6, 7, unique_rank, owner, count - 1, stride)
    holder = nn.ModuleList([owner, conv]).double()
    return randomize_bns(holder)


CONFIGS = [(u, s, c, k) for u in (0, 2) for s in (1, 2) for c in (1, 2) for k in (1, 3)]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("unique_rank, stride, count, kernel", CONFIGS)
def test_training_forward_and_gradients_equal_the_reference_path(unique_rank, stride, count, kernel, channels_last,
                                                                  randomize_bns):
    import copy

    fast = _conv_and_owner(unique_rank, stride, count, kernel, randomize_bns).train()
    ref = copy.deepcopy(fast)
    x = torch.randn(3, 6, 7, 7, dtype=torch.float64) * 2 + 0.5  # a mean far from 0: the statistics must be centred
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(3, 7, *fast[1](x).shape[2:], dtype=torch.float64)
    fast = copy.deepcopy(ref)  # the call above moved the running statistics once
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    loss_fast = (fast[1](xs[0]) * grad_out).sum()
    loss_ref = (ref[1]._reference_forward(xs[1]) * grad_out).sum()
    loss_fast.backward()
    loss_ref.backward()
    torch.testing.assert_close(loss_fast, loss_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-10, atol=1e-12)
    for (name, p_fast), p_ref in zip(fast.named_parameters(), ref.parameters(), strict=True):
        if p_ref.grad is None:  # the other bank of a Double pair
            assert p_fast.grad is None and name == "0.weights.0", name
            continue
        torch.testing.assert_close(p_fast.grad, p_ref.grad, rtol=1e-10, atol=1e-11, msg=name)
    for (name, b_fast), b_ref in zip(fast.named_buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(b_fast, b_ref, rtol=1e-12, atol=1e-12, msg=name)  # running statistics too


def test_fast_path_keeps_bn_momentum_none_and_float32():
    owner = SharedBasis(8, 16)
    conv = SharedBasisConv(8, 16, 1, owner)
    conv.basis_norm.momentum = None  # cumulative average
    ref = SharedBasisConv(8, 16, 1, owner)
    ref.load_state_dict(conv.state_dict())
    ref.basis_norm.momentum = None
    for _ in range(3):
        x = torch.randn(4, 8, 6, 6).contiguous(memory_format=torch.channels_last) + 3.0
        torch.testing.assert_close(conv(x), ref._reference_forward(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(conv.basis_norm.running_var, ref.basis_norm.running_var)
    torch.testing.assert_close(conv.basis_norm.running_mean, ref.basis_norm.running_mean)
    assert int(conv.basis_norm.num_batches_tracked) == 3


def test_bf16_autocast_takes_the_plain_bn():
    owner = SharedBasis(8, 16)
    conv = SharedBasisConv(8, 16, 1, owner)
    x = torch.randn(4, 8, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    ref = SharedBasisConv(8, 16, 1, owner)
    ref.load_state_dict(conv.state_dict())
    assert (out.float() - ref._reference_forward(x)).abs().max() < 0.1


@pytest.mark.parametrize("unique_rank, stride, count, kernel", CONFIGS)
@pytest.mark.parametrize("unshare", [True, False])
def test_fuse_equals_the_eval_function(unique_rank, stride, count, kernel, unshare, randomize_bns):
    holder = _conv_and_owner(unique_rank, stride, count, kernel, randomize_bns).float().eval()
    conv = holder[1]
    x = torch.randn(2, 6, 5, 5)  # 5x5: most outputs touch the zero-padded border
    residual = torch.randn_like(conv(x))
    fused = conv.fuse(unshare, relu=True)
    with torch.no_grad():
        for layout in (torch.contiguous_format, torch.channels_last):
            xl, rl = x.contiguous(memory_format=layout), residual.contiguous(memory_format=layout)
            torch.testing.assert_close(fused(xl), torch.relu(conv(x)), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(fused(xl, rl), torch.relu(conv(x) + residual), rtol=1e-5, atol=1e-5)
    if unshare:
        assert fused.weight.shape == (7, 6, kernel, kernel)  # one k x k convolution with a bias
    else:
        assert fused._shared is holder[0] and fused.coeff.weight.shape == (7, 5 + unique_rank, 1, 1)
