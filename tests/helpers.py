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
