"""Small CIFAR look-alikes for tests (``from tests.data.cifar_files import write_cifar_set``): known arrays written
in either published format, as the folder or the .tar.gz, by the package's own writer (crunet.data.cifar_write)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crunet.data.cifar_write import CifarArrays, cifar_files, write_cifar

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class CifarSet:
    path: Path  # the folder or archive written
    train: CifarArrays
    test: CifarArrays
    classes: list[str]  # CIFAR-100: the fine names
    coarse_classes: list[str] | None


def cifar_arrays(kind: str = "cifar10", n_train: int = 20, n_test: int = 8, seed: int = 0):
    """(train, test, class names, coarse class names or None): random images; CIFAR-10 labels cycle through the
    classes, CIFAR-100's fine labels are random and each coarse label is fine // 5."""
    rng = np.random.default_rng(seed)
    splits = []
    for n in (n_train, n_test):
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        if kind == "cifar10":
            splits.append(CifarArrays(images, np.arange(n) % 10))
        else:
            fine = rng.integers(0, 100, n)
            splits.append(CifarArrays(images, fine, fine // 5))
    if kind == "cifar10":
        return splits[0], splits[1], list(CIFAR10_CLASSES), None
    return splits[0], splits[1], [f"fine_{k:02d}" for k in range(100)], [f"coarse_{k:02d}" for k in range(20)]


def write_cifar_set(root, kind: str = "cifar10", binary: bool = False, archive: bool = False, n_train: int = 20,
                    n_test: int = 8, seed: int = 0, batches: int = 5, edit=None) -> CifarSet:
    """A data set of ``kind`` (cifar10, cifar100) written under ``root`` (CIFAR-10: ``batches`` training files).
    ``edit``: called with {file name: bytes} before writing, to break a file on purpose (returns the new dict)."""
    train, test, classes, coarse = cifar_arrays(kind, n_train, n_test, seed)
    files = cifar_files(kind, binary, train, test, classes, coarse, batches)
    files = edit(files) if edit else files
    return CifarSet(write_cifar(root, kind, binary, files, archive), train, test, classes, coarse)
