"""HSL noise of the paper's augmentation, in OpenCV's 8-bit HLS units (H 0..180, L and S 0..255).

The conversions follow OpenCV's ``cvtColor(COLOR_RGB2HLS / COLOR_HLS2RGB)`` for 8-bit images (float math, then
rounding), so the noise means what it meant in the authors' OpenCV-based loader without depending on OpenCV.
"""

from __future__ import annotations

import numpy as np

HLS_MAX = {"h": 20.0, "l": 50.0, "s": 40.0}
_SECTORS = np.array([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])  # OpenCV's table (b, g, r)


def rgb_to_hls(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> float (..., 3) HLS with H in 0..180 (not yet rounded)."""
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    vmax, vmin = x.max(-1), x.min(-1)
    diff, total = vmax - vmin, vmax + vmin
    light = total * 0.5
    grey = diff <= np.finfo(np.float32).eps
    safe = np.where(grey, 1.0, diff)
    sat = np.where(light < 0.5, diff / np.where(grey, 1.0, total), diff / np.where(grey, 1.0, 2.0 - total))
    hue = np.where(vmax == r, (g - b) * 60 / safe, np.where(vmax == g, (b - r) * 60 / safe + 120,
                                                            (r - g) * 60 / safe + 240))
    hue = np.where(hue < 0, hue + 360, hue)
    hue, sat = np.where(grey, 0.0, hue), np.where(grey, 0.0, sat)
    return np.stack([hue * 0.5, light * 255, sat * 255], -1)


def hls_to_rgb(hls: np.ndarray) -> np.ndarray:
    """float or uint8 (..., 3) HLS (H 0..180) -> uint8 (..., 3) RGB."""
    hls = hls.astype(np.float32)
    h, lum, s = hls[..., 0] * (6.0 / 180.0), hls[..., 1] / 255.0, hls[..., 2] / 255.0
    p2 = np.where(lum <= 0.5, lum * (1 + s), lum + s - lum * s)
    p1 = 2 * lum - p2
    h = np.where(h < 0, h + 6, np.where(h >= 6, h - 6, h))
    sector = np.clip(np.floor(h).astype(np.int64), 0, 5)
    frac = h - sector
    tab = np.stack([p2, p1, p1 + (p2 - p1) * (1 - frac), p1 + (p2 - p1) * frac], -1)
    idx = _SECTORS[sector]  # (..., 3): which tab entry gives b, g, r
    bgr = np.take_along_axis(tab, idx, -1)
    rgb = np.where((s == 0)[..., None], lum[..., None], bgr[..., ::-1])
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def hls_offsets(rng: np.random.Generator, maxima: dict[str, float] = HLS_MAX) -> np.ndarray:
    """One (dH, dL, dS) draw: ((u1 + 4 u2) / 5) * 2 * max - max per channel, centred but not uniform."""
    u = rng.random((2, 3))
    peak = np.array([maxima["h"], maxima["l"], maxima["s"]], dtype=np.float64)
    return ((u[0] + 4 * u[1]) / 5) * 2 * peak - peak


def add_hls_noise(rgb: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Add (dH, dL, dS) to an 8-bit RGB image in OpenCV's HLS units, clamping (not wrapping) each channel."""
    hls = np.floor(rgb_to_hls(rgb) + 0.5)  # the 8-bit HLS image OpenCV would hold (ties may differ by 1)
    hls = hls + np.asarray(offsets, dtype=np.float32)
    hls = np.clip(hls, 0, [180, 255, 255])
    return hls_to_rgb(hls)
