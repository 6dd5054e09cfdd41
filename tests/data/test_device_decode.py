"""``--decode device`` on the CPU: the workers read bytes, ``torchvision.io.decode_jpeg`` decodes each batch, the crop,
flip and normalization run on the batch. Compared with ``--decode cpu`` (Pillow in the workers) on the same files.

Tolerances, in 8-bit levels: both paths decode with libjpeg-turbo here (Pillow's and torchvision's give the same
pixels), so what differs is the resize: Pillow's works in fixed point and rounds to 8 bits after each of its two
passes (up to half a level each), this path in float. Evaluation (whole image resized, then cropped: Pillow's
arithmetic) stays within 1 level. A training crop is resized alone, where Pillow's box resize also weighs the pixels
just outside the box: inside the outermost ring of output pixels the two agree within 1 level, on average within half
a level (measured: 0.38-0.44 on these 16x16 crops; up to 7 levels in the ring). nvjpeg on a GPU decodes a few levels
from libjpeg-turbo: tests/device/test_decode_on_device.py compares the two.

Tests that need torchvision skip where it does not import (.venv: its torch has no matching torchvision build
here); CI runs them in .venv-timm.
"""

import sys

import numpy as np
import pytest
import torch

from crunet.data import DataSpec, eval_shard, open_split
from crunet.data.folders import BadImageError
from crunet.errors import ConfigError
from tests.helpers import jpeg_folders, smooth_image

# torchvision 0.29 deprecates its image decoders (for TorchCodec) with a warning at each call
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

STD = 0.25
LEVEL = 1 / (255 * STD)  # one 8-bit level after normalization


def spec(in_chans: int = 3, **kw) -> DataSpec:
    """A model's input (one mean and std per channel) with ``--decode device``; ``kw``: other DataSpec fields."""
    return DataSpec(**{"in_chans": in_chans, "size": 16, "mean": (0.4, 0.5, 0.6)[:in_chans], "std": (STD,) * in_chans,
                       "augment": "rrc", "workers": 0, "decode": "device", **kw})


def batches(loader, epoch=0, batch=3):
    """(all images, all labels, images skipped) over the loader, in order."""
    xs, ys, skipped = [], [], 0
    for x, y, bad in loader.iterate(eval_shard(len(loader), batch), epoch=epoch):
        xs.append(x)
        ys.append(y)
        skipped += bad
    return torch.cat(xs), torch.cat(ys), skipped


@pytest.fixture
def jpegs(tmp_path):
    return jpeg_folders(tmp_path / "jpegs")


@pytest.fixture
def tv():
    return pytest.importorskip("torchvision.io")


def test_a_batch_is_normalized_float_like_the_cpu_path(tv, jpegs):
    loader = open_split(jpegs, "train", spec())
    x, y, skipped = batches(loader)
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32 and x.device.type == "cpu" and skipped == 0
    assert y.tolist() == [0] * 4 + [1] * 4
    cpu, cpu_y, _ = batches(open_split(jpegs, "train", spec(decode="cpu")))
    assert torch.equal(y, cpu_y)
    assert (x - cpu).abs().mean() < 0.5 * LEVEL  # the same crops, flips, mean and std: only the resize differs
    assert (x - cpu)[..., 1:-1, 1:-1].abs().max() <= 1.01 * LEVEL


def test_the_same_seed_gives_the_same_batches_bit_for_bit(tv, jpegs):
    first = batches(open_split(jpegs, "train", spec(seed=3)), epoch=2)[0]
    assert torch.equal(first, batches(open_split(jpegs, "train", spec(seed=3)), epoch=2)[0])
    assert torch.equal(first, batches(open_split(jpegs, "train", spec(seed=3, workers=2)), epoch=2, batch=5)[0])
    assert not torch.equal(first, batches(open_split(jpegs, "train", spec(seed=3)), epoch=3)[0])
    assert not torch.equal(first, batches(open_split(jpegs, "train", spec(seed=4)), epoch=2)[0])


@pytest.mark.parametrize("in_chans, crops", [(3, 1), (1, 1), (3, 10)])
def test_evaluation_agrees_with_the_pillow_eval_transform(tv, jpegs, in_chans, crops):
    """The eval transform (short side to size / crop_pct, centre crop or ten crops) within 1 level of Pillow's."""
    device, _, _ = batches(open_split(jpegs, "val", spec(in_chans=in_chans, crops=crops)))
    cpu, _, _ = batches(open_split(jpegs, "val", spec(in_chans=in_chans, crops=crops, decode="cpu")))
    assert device.shape == cpu.shape == ((8, in_chans, 16, 16) if crops == 1 else (8, 10, 3, 16, 16))
    assert (device - cpu).abs().max() <= 1.01 * LEVEL


def test_augment_none_trains_on_the_eval_crop(tv, jpegs):
    device, _, _ = batches(open_split(jpegs, "train", spec(augment="none")))
    cpu, _, _ = batches(open_split(jpegs, "train", spec(augment="none", decode="cpu")))
    assert (device - cpu).abs().max() <= 1.01 * LEVEL


def test_files_the_device_does_not_decode_take_the_cpu_path(tv, jpegs):
    """A PNG named .jpg (as in ImageNet), a .png, a CMYK JPEG: Pillow decodes them in the worker, same pixels as
    --decode cpu. An evaluation image of extreme aspect (too large to resize whole) goes the CPU path too."""
    folder = jpegs / "train" / "c1"
    smooth_image(30, 20, seed=5).save(folder / "png_named.jpg", "PNG")
    smooth_image(25, 35, seed=6).save(folder / "real.png")
    smooth_image(33, 27, seed=7, mode="CMYK").save(folder / "cmyk.jpg", quality=90)
    smooth_image(4, 2000, seed=8).save(jpegs / "val" / "c1" / "tall.jpg", quality=90)
    for split in ("train", "val"):
        loader = open_split(jpegs, split, spec())
        names = [p.rsplit("/", 1)[-1] for p, _ in loader.dataset.samples]
        device, _, _ = batches(loader)
        cpu, _, _ = batches(open_split(jpegs, split, spec(decode="cpu")))
        for name in {"png_named.jpg", "real.png", "cmyk.jpg", "tall.jpg"} & set(names):
            assert torch.equal(device[names.index(name)], cpu[names.index(name)]), name


def test_bad_files_are_skipped_and_counted_or_refused_with_strict(tv, jpegs):
    folder = jpegs / "train" / "c0"
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    data = (folder / "1.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])  # a good header: only decoding finds it
    x, y, skipped = batches(open_split(jpegs, "train", spec()), batch=4)
    assert skipped == 3 and len(x) == len(y) == 8
    for bad in ("text.jpg", "truncated.jpg", "zero.jpg"):  # in the order the folder lists them
        with pytest.raises(BadImageError, match=f"bad image .*{bad}"):
            batches(open_split(jpegs, "train", spec(strict=True)))
        (folder / bad).unlink()


def test_options_that_cannot_apply_are_refused(jpegs, idx_folder):
    with pytest.raises(ConfigError, match="--decode device decodes image files.*IDX"):
        open_split(idx_folder, "train", spec(in_chans=1, augment="light"))
    with pytest.raises(ConfigError, match="--augment paper .* with --decode device use --augment rrc or none"):
        open_split(jpegs, "train", spec(augment="paper"))
    with pytest.raises(ConfigError, match="--decode must be one of cpu, device, got 'gpu'"):
        open_split(jpegs, "train", spec(decode="gpu"))


def test_without_torchvision_the_option_says_what_to_install(jpegs, monkeypatch):
    for name in ("torchvision", "torchvision.io"):  # what a missing torchvision raises: ImportError
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"--decode device needs torchvision .* install the torchvision built for "
                                          r"torch .* or leave --decode out"):
        open_split(jpegs, "train", spec())


def test_grey_models_get_pillow_luma_of_the_decoded_rgb():
    from crunet.data.device_decode import pillow_luma

    img = smooth_image(37, 23, seed=9)
    rgb = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
    np.testing.assert_array_equal(pillow_luma(rgb)[0].numpy(), np.asarray(img.convert("L")))
