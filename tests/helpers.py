"""Helpers shared by the tests (imported as ``from tests.helpers import ...``); fixtures live in the conftests."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import torch

import crunet


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    """An IDX file of unsigned bytes: magic (0, 0, 0x08, ndim), dims as big-endian uint32, raw data; gzipped unless
    ``compress`` is False."""
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(data + array.astype(np.uint8).tobytes())


def meta_model(name: str, **kwargs) -> torch.nn.Module:
    """A registered model on the meta device: its structure and sizes without allocating its weights."""
    with torch.device("meta"):
        return crunet.create_model(name, **kwargs)


def random_images(batch: int, chans: int, size: int, seed: int | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A (batch, chans, size, size) normal batch, from its own generator when ``seed`` is given."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randn(batch, chans, size, size, generator=generator, dtype=dtype)


def model_input(model: torch.nn.Module, batch: int = 2, size: int | None = None) -> torch.Tensor:
    """A random batch ``model`` accepts: its channels, ``size`` or the smallest size of at least 16 it takes."""
    return random_images(batch, model.in_chans, size or max(model.min_input_size, 16))


def smooth_image(width: int, height: int, seed: int = 0, mode: str = "RGB"):
    """A PIL image like a photograph to a JPEG coder: a smooth colour field with a little texture."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-8, 9, (height, width, 3), dtype=np.int16)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return img if mode == "RGB" else img.convert(mode)


def jpeg_folders(root, classes: int = 2, per_class: int = 4, seed: int = 0):
    """``root/train/c<k>/<i>.jpg`` and ``root/val/...``: JPEGs of several sizes (wider and taller than square);
    returns root."""
    from pathlib import Path

    root = Path(root)
    for s, split in enumerate(("train", "val")):
        for k in range(classes):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                size = (40 + 9 * i, 30 + 5 * k) if i % 2 else (28 + 3 * k, 44 + 7 * i)
                smooth_image(*size, seed=seed + 1000 * s + 100 * k + i).save(folder / f"{i}.jpg", quality=90)
    return root
