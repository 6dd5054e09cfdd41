import math

import numpy as np
import pytest
import torch
from PIL import Image

from crunet.data.transforms import (
    EvalCrops,
    PaperAugment,
    RandomResizedCropFlip,
    draw_aspect,
    paper_normalize,
    ten_crop,
    to_mode,
)


def test_aspect_draw_is_triangular_on_three_quarters_to_four_thirds():
    rng = np.random.default_rng(0)
    r = np.array([draw_aspect(rng) for _ in range(20000)])
    lo, hi = 3 / 4, 4 / 3
    assert lo <= r.min() and r.max() <= hi
    t = (r - lo) / (hi - lo)  # the mean of two uniforms: CDF 2 t^2 below 1/2
    np.testing.assert_allclose((t < 0.25).mean(), 2 * 0.25**2, atol=0.01)
    np.testing.assert_allclose((t < 0.5).mean(), 0.5, atol=0.015)
    np.testing.assert_allclose(t.var(), 1 / 24, rtol=0.05)  # a uniform draw would have variance 1/12


def test_paper_crop_area_is_relative_to_the_short_side_square():
    aug, rng = PaperAugment(size=224), np.random.default_rng(1)
    w, h = 500, 300
    ratios, areas = [], []
    for _ in range(3000):
        state = rng.bit_generator.state
        box, sx, sy = aug.crop_box(w, h, rng)
        rng.bit_generator.state = state  # replay the draws in the documented order
        r = draw_aspect(rng)
        swap = rng.random() >= 0.5
        a = rng.uniform(0.08, 1.0)
        rng.bit_generator.state = state
        aug.crop_box(w, h, rng)
        ax, ay = (1.1 / r, r * 1.1) if swap else (r * 1.1, 1.1 / r)
        np.testing.assert_allclose(sx / sy, ax / ay, rtol=1e-9)  # aspect: (r, 1/r) x 1.1, either way round
        short = min(w * ax, h * ay)
        crop_w, crop_h = (box[2] - box[0]) * ax, (box[3] - box[1]) * ay  # the crop in the aspect-resized image
        ratios.append(crop_w * crop_h / short**2 / a)
        areas.append(a)
        assert 0 <= box[0] and 0 <= box[1] and box[2] <= w + 1e-6 and box[3] <= h + 1e-6
    # the crop covers a of the short-side square (224 / 224.4 squared, up to rounding of the resized size)
    np.testing.assert_allclose(np.median(ratios), (224 / 224.4) ** 2, rtol=0.01)
    areas = np.array(areas)
    np.testing.assert_allclose([areas.min(), areas.max(), areas.mean()], [0.08, 1.0, 0.54], atol=0.02)


def test_paper_augment_output_normalization_and_flip():
    img = Image.new("RGB", (300, 260), (124, 117, 104))
    out = PaperAugment(size=64, hls=False)(img, np.random.default_rng(0))
    assert out.shape == (3, 64, 64)
    torch.testing.assert_close(out, torch.zeros_like(out), atol=1e-5, rtol=0)  # (RGB - mean) * 0.0167
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[..., 0] = 255
    np.testing.assert_allclose(paper_normalize(arr)[0, 0, 0].item(), (255 - 124) * 0.0167, rtol=1e-5)
    ramp = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (256, 1))).convert("RGB")
    flips = [PaperAugment(size=32, hls=False, min_area=1.0)(ramp, np.random.default_rng(s))[0] for s in range(200)]
    left_darker = np.array([f[:, 0].mean() < f[:, -1].mean() for f in flips])
    assert 0.38 < left_darker.mean() < 0.62


def test_paper_augment_applies_hls_noise():
    img = Image.new("RGB", (256, 256), (90, 140, 200))
    plain = PaperAugment(size=32, hls=False)(img, np.random.default_rng(3))
    noisy = PaperAugment(size=32, hls=True)(img, np.random.default_rng(3))
    assert not torch.allclose(plain, noisy)


def test_random_resized_crop_area_and_aspect_follow_their_formulas():
    # areas up to half the image so that no draw is rejected (rejection would bias the accepted areas down)
    t, rng = RandomResizedCropFlip(32, (0.5,), (0.5,), in_chans=1, scale=(0.08, 0.5)), np.random.default_rng(0)
    boxes = np.array([t.crop_box(1000, 1000, rng) for _ in range(4000)], dtype=float)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area, log_aspect = w * h / 1e6, np.log(w / h)
    np.testing.assert_allclose([area.mean(), log_aspect.mean()], [0.29, 0.0], atol=0.02)
    assert area.min() > 0.075 and area.max() < 0.51 and log_aspect.max() < math.log(4 / 3) + 0.01
    np.testing.assert_allclose(np.std(log_aspect), (2 * math.log(4 / 3)) / math.sqrt(12), rtol=0.05)
    assert t(Image.new("RGB", (50, 70)), rng).shape == (1, 32, 32)


def test_ten_crop_corners_centre_and_flips():
    x = torch.arange(36.0).view(1, 6, 6)
    crops = ten_crop(x, 4)
    assert crops.shape == (10, 1, 4, 4)
    assert crops[0, 0, 0, 0] == 0 and crops[1, 0, 0, -1] == 5 and crops[2, 0, -1, 0] == 30 and crops[3, 0, -1, -1] == 35
    torch.testing.assert_close(crops[4], x[:, 1:5, 1:5])
    torch.testing.assert_close(crops[5:], crops[:5].flip(-1))


def test_eval_crops_resize_short_side_then_crop():
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    one = EvalCrops(224, 256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(img)
    assert one.shape == (3, 224, 224)
    assert EvalCrops(224, 256, (0, 0, 0), (1, 1, 1), crops=10)(img).shape == (10, 3, 224, 224)
    with pytest.raises(ValueError, match="1 or 10"):
        EvalCrops(224, 256, (0,), (1,), crops=5)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "I;16"])
def test_any_pillow_mode_becomes_l_or_rgb(mode):
    img = Image.new("RGB", (8, 8), (10, 200, 30)).convert(mode) if mode != "I;16" else Image.new("I;16", (8, 8))
    assert to_mode(img, 3).mode == "RGB" and to_mode(img, 1).mode == "L"
