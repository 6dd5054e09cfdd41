"""Fashion-MNIST (or any IDX data set) written as CIFAR-10, in both published formats, as folders and archives:
grey replicated to 3 channels, a 2-pixel zero border to 32x32, the class names from the IDX data set's kind. The
same pixels as the IDX images zero-padded to 32x32 (``write_padded_idx``, the IDX arm of the comparison), so
training on either form should give the same accuracy.

``python -m crunet.data.cifar_lookalike IDX_DIR OUT_DIR`` (``scripts/make-cifar-lookalike``) writes both: the four
CIFAR forms and OUT_DIR/idx-32x32/."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from crunet.data.cifar_write import CifarArrays, cifar_files, write_cifar
from crunet.data.classes import class_names
from crunet.data.idx import FILES, find_fashion_mnist, load_idx_split
from crunet.data.mnist_pickle import write_idx


def as_cifar_images(images: np.ndarray) -> np.ndarray:
    """(N, 1, 28, 28) grey -> (N, 3, 32, 32): zero border of 2 pixels, the grey plane as R, G and B."""
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    return np.ascontiguousarray(np.repeat(padded, 3, axis=1), dtype=np.uint8)


def write_lookalike(idx_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """The four CIFAR-10 forms (python and binary, folder and .tar.gz) of the IDX data set in ``idx_dir``, written
    to ``out_dir``; returns their paths."""
    folder = find_fashion_mnist(idx_dir)
    splits = []
    for split in ("train", "test"):
        images, labels = load_idx_split(folder, split)
        splits.append(CifarArrays(as_cifar_images(images.numpy()), labels.numpy()))
    classes = class_names(folder)
    written = []
    for binary in (False, True):
        files = cifar_files("cifar10", binary, splits[0], splits[1], classes)
        written += [write_cifar(out_dir, "cifar10", binary, files, archive) for archive in (False, True)]
    return written


def write_padded_idx(idx_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """The IDX data set in ``idx_dir`` with the same 2-pixel zero border (grey, 32x32), as the four IDX files in
    ``out_dir``: the look-alike's pixels in the IDX form."""
    folder, out = find_fashion_mnist(idx_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, (images_name, labels_name) in FILES.items():
        images, labels = load_idx_split(folder, split)
        write_idx(out / f"{images_name}.gz", as_cifar_images(images.numpy())[:, 0])
        write_idx(out / f"{labels_name}.gz", labels.numpy())
    return out


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m crunet.data.cifar_lookalike IDX_DIR OUT_DIR")
    for path in write_lookalike(sys.argv[1], sys.argv[2]):
        print(f"wrote {path}")
    print(f"wrote {write_padded_idx(sys.argv[1], Path(sys.argv[2]) / 'idx-32x32')} (the same pixels as IDX files)")
