"""CIFAR-10 and CIFAR-100 in their published formats, read into memory: images uint8 (N, 3, 32, 32), labels int64,
class names. The python version's batches are Python 2 pickles, loaded by ``crunet.data.safe_pickle`` (they cannot
run code); the binary version's are records of label byte(s) then 3,072 pixels, R, G then B planes, row-major.
``cifar_files`` finds the files (folder or archive)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from crunet.data.cifar_files import CifarSource, Layout
from crunet.data.safe_pickle import load_arrays_pickle
from crunet.errors import ConfigError, DataError, FileFormatError

PIXELS = 3 * 32 * 32
LABEL_SETS = ("fine", "coarse")  # CIFAR-100's 100 classes and their 20 superclasses
CLASSES = {"cifar10": {"fine": 10}, "cifar100": {"fine": 100, "coarse": 20}}
# The published files' md5s (torchvision checks the same); another md5 is a user's own CIFAR-format data, read as is
PUBLISHED_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


@dataclass
class CifarSplit:
    images: torch.Tensor  # (N, 3, 32, 32) uint8
    labels: torch.Tensor  # (N,) int64
    classes: list[str]
    notes: list[str]  # one line per file that differs from the published one (not an error)


def check_label_set(kind: str, labels: str) -> None:
    """``--cifar100-labels``: fine or coarse on CIFAR-100; other data has one label set (fine, the default)."""
    if labels not in LABEL_SETS:
        raise ConfigError(f"--cifar100-labels must be fine or coarse, got {labels!r}")
    if labels != "fine" and kind != "cifar100":
        raise ConfigError(f"--cifar100-labels {labels} chooses CIFAR-100's label set; {kind} data has one: leave "
                          f"--cifar100-labels out")


def read_split(source: CifarSource, split: str, labels: str = "fine") -> CifarSplit:
    """Split 'train' or 'test' of ``source``, with CIFAR-100's ``labels`` set (fine or coarse); anything that is
    not what the format promises is one error naming the file."""
    layout = source.layout
    check_label_set(layout.kind, labels)
    names = layout.train if split == "train" else layout.test
    files = source.read(names + _meta_files(layout, labels))
    classes = _class_names(source, files, labels)
    parts = [(_read_records if layout.binary else _read_pickle)(source, name, files[name], labels) for name in names]
    images = np.concatenate([p[0] for p in parts])
    targets = np.concatenate([p[1] for p in parts])
    for name, (_, part_labels) in zip(names, parts, strict=True):
        _check_range(source.label(name), part_labels, len(classes))
    return CifarSplit(torch.from_numpy(images.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(targets), classes,
                      _unpublished(source, files))


def _unpublished(source: CifarSource, files: dict[str, bytes]) -> list[str]:
    """One note when CIFAR-10 python files differ from the published ones: a user's own data, read as it is."""
    differ = [name for name, data in files.items()
              if name in PUBLISHED_MD5 and hashlib.md5(data).hexdigest() != PUBLISHED_MD5[name]]
    if not differ:
        return []
    return [f"note: {source.path}: {', '.join(differ)} differ from the published CIFAR-10 files (md5); read as "
            f"CIFAR-format data"]


def read_class_names(source: CifarSource, labels: str = "fine") -> list[str]:
    check_label_set(source.layout.kind, labels)
    return _class_names(source, source.read(_meta_files(source.layout, labels)), labels)


def _meta_files(layout: Layout, labels: str) -> tuple[str, ...]:
    if layout.binary and layout.kind == "cifar100":
        return (f"{labels}_label_names.txt",)
    return layout.meta


def _class_names(source: CifarSource, files: dict[str, bytes], labels: str) -> list[str]:
    layout = source.layout
    (name,) = _meta_files(layout, labels)
    if layout.binary:
        names = [line.strip() for line in files[name].decode("utf-8", "replace").splitlines() if line.strip()]
    else:
        key = "label_names" if layout.kind == "cifar10" else f"{labels}_label_names"
        meta = load_arrays_pickle(files[name], source.label(name), f"a {layout.name} meta file")
        names = meta.get(key) if isinstance(meta, dict) else None
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise FileFormatError(f"{source.label(name)} holds no list of class names under {key!r}: not a "
                                  f"{layout.name} meta file")
    expected = CLASSES[layout.kind][labels]
    if len(names) != expected:
        raise DataError(f"{source.label(name)} names {len(names)} classes; {layout.name}'s {labels} labels have "
                        f"{expected}")
    return names


def _read_records(source: CifarSource, name: str, data: bytes, labels: str) -> tuple[np.ndarray, np.ndarray]:
    label_bytes = 2 if source.layout.kind == "cifar100" else 1
    size = label_bytes + PIXELS
    if len(data) % size or not data:
        raise FileFormatError(f"{source.label(name)} has {len(data):,} bytes, not a whole number of {size}-byte "
                              f"records ({label_bytes} label byte{'s' if label_bytes > 1 else ''} + {PIXELS} "
                              f"pixels): truncated or not {source.layout.name}")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, size)
    column = 1 if label_bytes == 2 and labels == "fine" else 0  # CIFAR-100: coarse label, then fine
    return records[:, label_bytes:], records[:, column].astype(np.int64)


def _read_pickle(source: CifarSource, name: str, data: bytes, labels: str) -> tuple[np.ndarray, np.ndarray]:
    where, layout = source.label(name), source.layout
    batch = load_arrays_pickle(data, where, f"a {layout.name} batch")
    key = "labels" if layout.kind == "cifar10" else f"{labels}_labels"
    if not isinstance(batch, dict) or "data" not in batch or key not in batch:
        keys = ", ".join(map(str, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise FileFormatError(f"{where} holds {keys}; a {layout.name} batch is a dict with 'data' and {key!r}")
    images, targets = batch["data"], batch[key]
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2
            and images.shape[1] == PIXELS):
        shape = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise FileFormatError(f"{where}: 'data' is {shape}; a {layout.name} batch holds uint8 N x {PIXELS}")
    if not (isinstance(targets, (list, np.ndarray)) and len(targets) == len(images)
            and all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in targets)):
        raise FileFormatError(f"{where}: {key!r} is not a list of {len(images)} integer labels, one per image")
    return images, np.asarray(targets, dtype=np.int64)


def _check_range(where: str, labels: np.ndarray, classes: int) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise DataError(f"{where}: label {int(labels[bad[0]])} of image {int(bad[0])} is out of range; the data set "
                        f"has {classes} classes (labels 0..{classes - 1})")
