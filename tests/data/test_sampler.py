import pytest
import torch

from crunet.data import StepSampler, eval_shard
from crunet.data.tensor_data import pad_crop_flip


def test_two_ranks_see_what_one_process_with_two_micro_batches_sees():
    single = StepSampler(100, 8, world=1, rank=0, accum=2, seed=3)
    ranks = [StepSampler(100, 8, world=2, rank=r, accum=1, seed=3) for r in range(2)]
    assert single.steps_per_epoch == ranks[0].steps_per_epoch == 6
    one = single.batches(epoch=1)
    two = [r.batches(epoch=1) for r in ranks]
    for step in range(6):
        torch.testing.assert_close(torch.cat(one[2 * step:2 * step + 2]), torch.cat([two[0][step], two[1][step]]))
    seen = torch.cat(one)
    assert len(seen.unique()) == 96  # no image twice in an epoch


def test_resume_position_skips_exactly_the_batches_done():
    s = StepSampler(50, 5, seed=0)
    full = s.batches(epoch=2)
    rest = s.batches(epoch=2, start=4)
    assert len(rest) == len(full) - 4
    for a, b in zip(rest, full[4:], strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(torch.cat(s.batches(epoch=3)), torch.cat(full))  # a new order each epoch


def test_eval_shards_cover_every_image_once():
    shards = [torch.cat(eval_shard(11, 2, world=3, rank=r)) for r in range(3)]
    assert sorted(torch.cat(shards).tolist()) == list(range(11))


def test_too_small_data_set_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one global batch of 64"):
        StepSampler(50, 16, world=2, accum=2)


def test_pad_crop_flip_shifts_within_the_padding():
    x = torch.zeros(400, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 4, 4] = 255
    out = pad_crop_flip(x, 2, True, torch.Generator().manual_seed(0))
    pos = out.view(400, -1).argmax(1)
    rows, cols = pos // 8, pos % 8
    assert rows.min() == 2 and rows.max() == 6  # shifted by -2..2
    assert cols.min() == 1 and cols.max() == 6  # shifted, and flipped (4 -> 3) for about half
    assert (out.view(400, -1).sum(1) == 255).all()
