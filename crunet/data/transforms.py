"""Image transforms: the paper's training augmentation, the common RandomResizedCrop recipe, 1- and 10-crop eval.

All take a PIL image and return a float tensor (C, H, W), or (10, C, H, W) for ten crops. Randomness comes from a
``numpy.random.Generator`` so that each draw can be tested against its formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from crunet.data.hls import add_hls_noise, hls_offsets
from crunet.errors import ConfigError

PAPER_MEAN, PAPER_SCALE = (124.0, 117.0, 104.0), 0.0167  # the released CRU-Net models' input normalization


def to_mode(img: Image.Image, in_chans: int) -> Image.Image:
    """Any Pillow mode (L, RGB, RGBA, P, CMYK, 16-bit I;16, 32-bit I and F ...) to 8-bit L or RGB. 16-bit
    images are scaled to 8 bits (x / 257), not clipped at 255 as Pillow's own conversion does."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode.startswith(("I", "F")):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    return img.convert("L" if in_chans == 1 else "RGB")


def normalize(arr: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (H, W) or (H, W, C) -> float (C, H, W), (x / 255 - mean) / std."""
    x = torch.from_numpy(np.array(arr, dtype=np.float32)).div_(255)
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    mean_t, std_t = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return (x - mean_t) / std_t


def paper_normalize(arr: np.ndarray) -> torch.Tensor:
    """(RGB - [124, 117, 104]) * 0.0167, as the released models expect."""
    std = (1 / (PAPER_SCALE * 255),) * 3
    return normalize(arr, tuple(m / 255 for m in PAPER_MEAN), std)


def draw_aspect(rng: np.random.Generator) -> float:
    """Triangular draw on [3/4, 4/3]: r = mean(u1, u2) * (4/3 - 3/4) + 3/4."""
    return float(rng.random(2).mean() * (4 / 3 - 3 / 4) + 3 / 4)


@dataclass
class PaperAugment:
    """Section 2 of training.md: triangular aspect, area relative to the short-side square, HLS noise, flip."""

    size: int = 224
    min_area: float = 0.08
    hls: bool = True
    normalize_paper: bool = True
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[tuple[float, ...], float, float]:
        """The source box and the two scales: one bilinear resample gives resize-aspect, resize-area, crop."""
        r = draw_aspect(rng)
        sx, sy = (r * 1.1, 1.1 / r) if rng.random() < 0.5 else (1.1 / r, r * 1.1)
        w1, h1 = width * sx, height * sy
        area = rng.uniform(self.min_area, 1.0)
        scale = max((self.size + 0.4) / h1, (self.size + 0.4) / w1) / math.sqrt(area)
        w2, h2 = max(self.size, round(w1 * scale)), max(self.size, round(h1 * scale))
        x0, y0 = int(rng.integers(0, w2 - self.size + 1)), int(rng.integers(0, h2 - self.size + 1))
        fx, fy = width / w2, height / h2
        return (x0 * fx, y0 * fy, (x0 + self.size) * fx, (y0 + self.size) * fy), sx * scale, sy * scale

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        img = to_mode(img, 3)
        box, _, _ = self.crop_box(img.width, img.height, rng)
        arr = np.asarray(img.resize((self.size, self.size), Image.BILINEAR, box=box))
        if self.hls:
            arr = add_hls_noise(arr, hls_offsets(rng))
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        return paper_normalize(arr) if self.normalize_paper else normalize(arr, self.mean, self.std)


@dataclass
class RandomResizedCropFlip:
    """The common recipe: area in [0.08, 1] of the image, log-uniform aspect in [3/4, 4/3], flip."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int = 3
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        for _ in range(10):
            area = width * height * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < w <= width and 0 < h <= height:
                x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
                return x0, y0, x0 + w, y0 + h
        side = min(width, height)  # fallback: the centre square
        x0, y0 = (width - side) // 2, (height - side) // 2
        return x0, y0, x0 + side, y0 + side

    def draw(self, width: int, height: int, rng: np.random.Generator) -> tuple[tuple[int, int, int, int], bool]:
        """The crop box and whether to flip: every draw of one image (``--decode device`` draws them too)."""
        return self.crop_box(width, height, rng), bool(rng.random() < 0.5)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        img = to_mode(img, self.in_chans)
        box, flip = self.draw(img.width, img.height, rng)
        arr = np.asarray(img.resize((self.size, self.size), Image.BILINEAR, box=box))
        if flip:
            arr = arr[:, ::-1]
        return normalize(arr, self.mean, self.std)


@dataclass
class EvalCrops:
    """Resize the short side to ``resize``, then one centre crop or ten (4 corners + centre, and their flips)."""

    size: int
    resize: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int = 3
    crops: int = 1

    def __post_init__(self):
        if self.crops not in (1, 10):
            raise ConfigError(f"crops must be 1 or 10, got {self.crops}")

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) the crops are taken from: short side ``resize``, never below ``size``."""
        s = self.resize / min(width, height)
        return max(self.size, round(width * s)), max(self.size, round(height * s))

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Each crop is resampled from its own box of the source image: the resized image is never built (a
        1x20000 image resized to a short side of 256 would be 5 M pixels long)."""
        img = to_mode(img, self.in_chans)
        width, height = self.resized(img.width, img.height)
        fx, fy, k = img.width / width, img.height / height, self.size
        corners = [(0, 0), (width - k, 0), (0, height - k), (width - k, height - k)] if self.crops == 10 else []
        corners.append(((width - k) // 2, (height - k) // 2))
        crops = [normalize(np.asarray(img.resize((k, k), Image.BILINEAR,
                                                 box=(x * fx, y * fy, (x + k) * fx, (y + k) * fy))),
                           self.mean, self.std) for x, y in corners]
        if self.crops == 1:
            return crops[0]
        five = torch.stack(crops, -4)
        return torch.cat([five, five.flip(-1)], -4)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def ten_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """(..., C, H, W) -> (..., 10, C, size, size): TL, TR, BL, BR, centre, then the same five flipped."""
    h, w = x.shape[-2:]
    corners = [x[..., :size, :size], x[..., :size, w - size:], x[..., h - size:, :size], x[..., h - size:, w - size:],
               center_crop(x, size)]
    five = torch.stack(corners, -4)
    return torch.cat([five, five.flip(-1)], -4)
