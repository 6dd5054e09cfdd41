"""Write arrays as a CIFAR-10 or CIFAR-100 data set in either published format, as the extracted folder or as the
``.tar.gz`` (the python batches pickled as Python 2 wrote them). For look-alike data sets (``scripts/
make-cifar-lookalike``) and tests; a folder or archive appears whole or not at all."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crunet.data.cifar_py2pickle import py2_pickle

FOLDERS = {("cifar10", False): "cifar-10-batches-py", ("cifar10", True): "cifar-10-batches-bin",
           ("cifar100", False): "cifar-100-python", ("cifar100", True): "cifar-100-binary"}
ARCHIVES = {("cifar10", False): "cifar-10-python.tar.gz", ("cifar10", True): "cifar-10-binary.tar.gz",
            ("cifar100", False): "cifar-100-python.tar.gz", ("cifar100", True): "cifar-100-binary.tar.gz"}


@dataclass
class CifarArrays:
    """One split: images uint8 (N, 3, 32, 32), labels (N,); CIFAR-100 also its coarse labels."""

    images: np.ndarray
    labels: np.ndarray
    coarse: np.ndarray | None = None


def cifar_files(kind: str, binary: bool, train: CifarArrays, test: CifarArrays, classes: list[str],
                coarse_classes: list[str] | None = None, train_batches: int = 5) -> dict[str, bytes]:
    """{file name: bytes} of the data set, in the layout's order (CIFAR-10's training set in ``train_batches``
    batches, 10,000 images each in the published files)."""
    if kind == "cifar100" and (train.coarse is None or test.coarse is None or coarse_classes is None):
        raise ValueError("CIFAR-100 needs coarse labels and coarse class names")
    files = {}
    if kind == "cifar10":
        parts = np.array_split(np.arange(len(train.labels)), train_batches)
        for i, index in enumerate(parts, 1):
            split = CifarArrays(train.images[index], train.labels[index])
            files[f"data_batch_{i}" + (".bin" if binary else "")] = _batch(
                kind, binary, split, f"training batch {i} of {train_batches}", int(index[0]) if len(index) else 0)
        files["test_batch" + (".bin" if binary else "")] = _batch(kind, binary, test, "testing batch 1 of 1", 0)
        if binary:
            files["batches.meta.txt"] = "".join(f"{name}\n" for name in classes).encode() + b"\n"
        else:
            files["batches.meta"] = py2_pickle({"num_cases_per_batch": len(parts[0]), "label_names": list(classes),
                                                "num_vis": 3072})
        return files
    suffix = ".bin" if binary else ""
    files["train" + suffix] = _batch(kind, binary, train, "training batch 1 of 1", 0)
    files["test" + suffix] = _batch(kind, binary, test, "testing batch 1 of 1", 0)
    if binary:
        files["fine_label_names.txt"] = "".join(f"{name}\n" for name in classes).encode()
        files["coarse_label_names.txt"] = "".join(f"{name}\n" for name in coarse_classes).encode()
    else:
        files["meta"] = py2_pickle({"fine_label_names": list(classes), "coarse_label_names": list(coarse_classes)})
    return files


def _batch(kind: str, binary: bool, split: CifarArrays, label: str, first: int) -> bytes:
    images = np.ascontiguousarray(split.images, dtype=np.uint8).reshape(len(split.images), -1)
    if images.shape[1] != 3072:
        raise ValueError(f"CIFAR images are 3 x 32 x 32, got {split.images.shape}")
    labels = [np.asarray(split.labels, dtype=np.uint8)[:, None]]
    if kind == "cifar100":
        labels.insert(0, np.asarray(split.coarse, dtype=np.uint8)[:, None])  # records: coarse, fine, pixels
    if binary:
        return np.concatenate(labels + [images], axis=1).tobytes()
    names = [f"image_{first + i:05d}.png" for i in range(len(images))]
    if kind == "cifar10":
        return py2_pickle({"batch_label": label, "labels": [int(v) for v in split.labels], "data": images,
                           "filenames": names})
    return py2_pickle({"filenames": names, "batch_label": label, "fine_labels": [int(v) for v in split.labels],
                       "coarse_labels": [int(v) for v in split.coarse], "data": images})


def write_cifar(out_dir: str | os.PathLike, kind: str, binary: bool, files: dict[str, bytes],
                archive: bool = False) -> Path:
    """``files`` (from ``cifar_files``) as the published folder (``cifar-10-batches-py/`` ...) or archive
    (``cifar-10-python.tar.gz`` ...) in ``out_dir``, replacing one already there; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folder = FOLDERS[(kind, binary)]
    target = out / (ARCHIVES[(kind, binary)] if archive else folder)
    tmp = out / f".{target.name}.tmp{os.getpid()}"
    try:
        if archive:
            _write_archive(tmp, folder, files)
        else:
            tmp.mkdir()
            for name, data in files.items():
                (tmp / name).write_bytes(data)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        tmp.unlink(missing_ok=True)
    return target


def _write_archive(path: Path, folder: str, files: dict[str, bytes]) -> None:
    """A gzipped tar with the folder entry first, then the files; no dates, so the bytes depend on ``files`` only."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        entry = tarfile.TarInfo(folder)
        entry.type, entry.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(entry)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
