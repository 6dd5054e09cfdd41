"""Class names, in label order, of the data sets ``--data`` opens: the class folders' names, Places365's category
file, CIFAR's meta files, or the Fashion-MNIST / MNIST names (the IDX files hold labels only)."""

from __future__ import annotations

import os
from pathlib import Path

from crunet.data import cifar, folders
from crunet.data.cifar_files import find_cifar
from crunet.data.sources import detect_kind

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
MNIST_CLASSES = tuple(str(d) for d in range(10))


def class_names(data: str | os.PathLike | None, loader=None, cifar100_labels: str = "fine") -> list[str] | None:
    """The names of the classes of ``data`` (a loader's own list when it has one; CIFAR-100's ``cifar100_labels``
    set); None when they cannot be found (a folder data set that has moved)."""
    dataset = getattr(loader, "dataset", None)
    if getattr(dataset, "classes", None):
        return [str(c) for c in dataset.classes]
    if getattr(loader, "classes", None):
        return list(loader.classes)
    try:
        kind = detect_kind(data)
    except FileNotFoundError:
        return None
    if kind in ("fashion-mnist", "mnist"):
        return list(MNIST_CLASSES if kind == "mnist" else FASHION_MNIST_CLASSES)
    if kind in ("cifar10", "cifar100"):
        return cifar.read_class_names(find_cifar(data), cifar100_labels)
    root = Path(data)
    if kind == "places365":
        cats = root / "categories_places365.txt"
        return folders.read_categories(cats) if cats.is_file() else None
    sub = next((root / s for s in ("train", "val", "test") if (root / s).is_dir()), None)
    return sorted(d.name for d in sub.iterdir() if d.is_dir()) if sub else None
