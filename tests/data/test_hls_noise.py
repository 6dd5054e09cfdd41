import cv2
import numpy as np
import pytest

from crunet.data.hls import HLS_MAX, add_hls_noise, hls_offsets, hls_to_rgb, rgb_to_hls


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    img[:4] = img[:4, :, :1]  # greys
    img[4, :, :] = [255, 0, 0]
    return img


def test_rgb_to_hls_matches_opencv_up_to_ties(image):
    ref = cv2.cvtColor(image, cv2.COLOR_RGB2HLS).astype(np.float64)
    ours = rgb_to_hls(image).astype(np.float64)
    diff = np.abs(np.floor(ours + 0.5) - ref)
    assert diff.max() <= 1
    # where we differ by one unit, the exact value lies on a rounding tie (x.5) that OpenCV breaks differently
    off = diff > 0
    assert np.all(np.abs(ours[off] - np.floor(ours[off]) - 0.5) < 1e-3)
    assert off.mean() < 0.1


def test_hls_to_rgb_matches_opencv_exactly(image):
    hls = cv2.cvtColor(image, cv2.COLOR_RGB2HLS)
    np.testing.assert_array_equal(hls_to_rgb(hls), cv2.cvtColor(hls, cv2.COLOR_HLS2RGB))


def test_noise_is_added_in_opencv_units_and_clamped_not_wrapped():
    red = np.full((2, 2, 3), [255, 0, 0], np.uint8)  # H = 0 in OpenCV units
    hls_of = lambda h, lum, s: cv2.cvtColor(np.full((2, 2, 3), [h, lum, s], np.uint8), cv2.COLOR_HLS2RGB)  # noqa: E731
    np.testing.assert_array_equal(add_hls_noise(red, [-20, 0, 0]), hls_of(0, 128, 255))  # wrapped: H = 160
    blue = np.full((2, 2, 3), [0, 0, 255], np.uint8)  # H = 120
    shifted = add_hls_noise(blue, [20, 0, 0])
    np.testing.assert_array_equal(shifted, hls_of(140, 128, 255))
    grey = np.full((1, 1, 3), 250, np.uint8)
    assert add_hls_noise(grey, [0, 50, 0])[0, 0].tolist() == [255, 255, 255]  # L clamped at 255


def test_offsets_follow_their_formula():
    """((u1 + 4 u2) / 5) * 2 max - max: a trapezoid on [-max, max], mean 0, variance (2 max)^2 * 17 / 300."""
    rng = np.random.default_rng(0)
    draws = np.array([hls_offsets(rng) for _ in range(20000)])
    peaks = np.array([HLS_MAX["h"], HLS_MAX["l"], HLS_MAX["s"]])
    assert np.all(np.abs(draws) <= peaks)
    assert np.all(np.abs(draws.mean(0)) < 0.03 * peaks)
    np.testing.assert_allclose(draws.var(0), (2 * peaks) ** 2 * 17 / 300, rtol=0.05)
    # the CDF of v = (u1 + 4 u2) / 5 at 0.1 is 0.1^2 / (2 * 0.2 * 0.8) = 1/32; a uniform draw would give 0.1
    v = (draws / peaks + 1) / 2
    np.testing.assert_allclose((v < 0.1).mean(0), 1 / 32, atol=0.006)
    # and it is flat in the middle: P(0.3 < v < 0.5) = 0.2 / 0.8 = 0.25
    np.testing.assert_allclose(((v > 0.3) & (v < 0.5)).mean(0), 0.25, atol=0.015)
