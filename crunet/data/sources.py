"""Find a data set from ``--data`` and open its train or evaluation split as a loader.

Kinds: ``fashion-mnist`` and ``mnist`` (the same four IDX files, in memory; told apart by their images),
``cifar10`` and ``cifar100`` (either published format, folder or archive, in memory), ``folder`` (``train/<class>/``,
``val/<class>/``), and ``places365`` (file lists ``places365_train_standard.txt`` / ``places365_val.txt`` beside the
image folders).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from crunet.data import cifar, folders, idx
from crunet.data.cifar_files import find_cifar
from crunet.data.device_decode import DeviceDecodeLoader
from crunet.data.tensor_data import TensorLoader
from crunet.data.transforms import EvalCrops, PaperAugment, RandomResizedCropFlip
from crunet.errors import ConfigError, DataError, MissingFileError

IDX_KINDS = ("fashion-mnist", "mnist")  # in memory, 28x28 grey
CIFAR_KINDS = ("cifar10", "cifar100")  # in memory, 32x32 RGB
IN_MEMORY_KINDS = IDX_KINDS + CIFAR_KINDS  # every other kind is decoded from image files
AUGMENTS = {  # --augment: what each value does on which data; check_augment refuses the others
    "auto": "light on in-memory data (Fashion-MNIST, MNIST, CIFAR), rrc on image folders and Places365",
    "light": "in-memory data only: horizontal flips, plus random shifts of up to --pad pixels (default 0: flips only; "
             "CIFAR's recipe: --pad 4)",
    "rrc": "image files only: RandomResizedCrop (0.08 to all of the area, aspect 3/4 to 4/3) and horizontal flips",
    "paper": "image files only: the CRU-Net recipe (aspect and area jitter, HLS noise, flips)",
    "none": "no augmentation",
}
DECODES = {  # --decode: where image files are decoded
    "cpu": "Pillow in the DataLoader workers (--workers)",
    "device": "JPEGs on the training device, a batch at a time (torchvision.io.decode_jpeg; nvjpeg on a GPU), "
              "then crop, flip and normalize there; the workers only read the files; image folders and Places365",
}


@dataclass
class DataSpec:
    """What the model and the recipe need from the data pipeline."""

    in_chans: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "auto"  # one of AUGMENTS
    pad: int = 0  # augment light: random shifts of up to pad pixels
    crops: int = 1
    resize: int | None = None
    crop_pct: float = 0.875  # evaluation: short side = size / crop_pct (ImageNet: 224 / 0.875 = 256)
    strict: bool = False
    workers: int = 2
    seed: int = 0
    decode: str = "cpu"  # one of DECODES
    cifar100_labels: str = "fine"  # CIFAR-100: fine (100 classes) or coarse (20)
    repeat_grey: bool = False  # --in-chans given: grey in-memory images repeated to in_chans channels


def model_spec(pretrained_cfg: dict, in_chans: int, size: int | None = None, **options) -> DataSpec:
    """A model's input: its ``pretrained_cfg`` normalization and crop, at ``size`` (default: the config's input
    size); ``options``: the other DataSpec fields (augmentation, crops, loader). Training, ``crunet eval`` and
    ``crunet predict`` all take their input from here."""
    pc = pretrained_cfg
    return DataSpec(in_chans=in_chans, size=size or pc["input_size"][-1], mean=tuple(pc["mean"]), std=tuple(pc["std"]),
                    crop_pct=pc.get("crop_pct", 0.875), **options)


def eval_transform(spec: DataSpec) -> EvalCrops:
    """The evaluation transform: short side to ``resize`` (default ``size / crop_pct``), centre crop or ten crops."""
    return EvalCrops(spec.size, spec.resize or round(spec.size / spec.crop_pct), spec.mean, spec.std, spec.in_chans,
                     spec.crops)


class FolderLoader:
    """Decodes images in DataLoader workers; yields (images, labels, number of bad images skipped)."""

    def __init__(self, dataset: folders.ImageListDataset, workers: int, pin_memory: bool = False):
        self.dataset, self.workers, self.pin_memory = dataset, workers, pin_memory

    def to(self, device) -> FolderLoader:
        """Batches bound for ``device``: on CUDA they come in pinned memory (the step copies them non-blocking).
        The images themselves stay on the CPU, decoded by the workers. Returns this loader."""
        import torch

        self.pin_memory = torch.device(device).type == "cuda"
        return self

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def empty_classes(self) -> list[str]:
        return self.dataset.empty_classes

    def iterate(self, batches, epoch: int = 0, train: bool = True):
        import torch
        import torch.utils.data as tud

        keyed = [[(int(i), epoch) for i in b] for b in batches]
        # a generator of its own: the DataLoader's base seed must not be drawn from the global RNG, or a run
        # resumed mid-epoch (one more DataLoader) would draw different dropout masks than an uninterrupted one
        yield from tud.DataLoader(self.dataset, batch_sampler=keyed, num_workers=self.workers,
                                  collate_fn=folders.skip_bad_collate, persistent_workers=False,
                                  pin_memory=self.pin_memory, generator=torch.Generator().manual_seed(epoch))

    def subset(self, n: int) -> FolderLoader:
        return FolderLoader(self.dataset.subset(n), self.workers, self.pin_memory)


def detect_kind(data: str | os.PathLike | None) -> str:
    """``fashion-mnist`` (also for ``None``: the Debian package's), ``mnist``, ``cifar10``, ``cifar100``, ``folder``
    or ``places365``."""
    if data is None:
        return "fashion-mnist"
    root = Path(data)
    if not root.exists():
        raise MissingFileError(f"--data {data} does not exist")
    if (root / "places365_train_standard.txt").is_file() or (root / "places365_val.txt").is_file():
        return "places365"
    if (root / "train").is_dir() or (root / "val").is_dir():
        return "folder"
    source = find_cifar(root)
    if source:
        return source.layout.kind
    try:
        folder = idx.find_fashion_mnist(root)
    except FileNotFoundError:
        raise MissingFileError(
            f"--data {data}: no data set recognised; expected the four IDX files of Fashion-MNIST or MNIST, CIFAR-10 "
            f"or CIFAR-100 (a folder or .tar.gz as downloaded), class folders {data}/train/<class>/ and "
            f"{data}/val/<class>/, or Places365 file lists") from None
    return "mnist" if idx.looks_like_digits(folder) else "fashion-mnist"


def check_augment(kind: str, augment: str, pad: int) -> str:
    """What ``--augment`` means on data of ``kind`` (``auto`` resolved); an augmentation or a ``--pad`` that cannot
    apply there is refused with one line naming the option and what applies."""
    in_memory = kind in IN_MEMORY_KINDS
    if augment == "auto":
        augment = "light" if in_memory else "rrc"
    if augment not in AUGMENTS:
        raise ConfigError(f"--augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
    if in_memory and augment in ("rrc", "paper"):
        raise ConfigError(f"--augment {augment} applies to image files; {kind} ({_form(kind)} images in memory) takes "
                          f"--augment light (flips, and shifts with --pad) or none")
    if not in_memory and augment == "light":
        raise ConfigError(f"--augment light applies to in-memory data (Fashion-MNIST, MNIST, CIFAR); {kind} data "
                          f"takes --augment rrc (its default), paper or none")
    if pad and augment != "light":
        raise ConfigError(f"--pad {pad} applies with --augment light on in-memory data only (it shifts the images); "
                          f"this run uses --augment {augment} on {kind} data"
                          f"{f' ({_form(kind)} images)' if in_memory else ''}: leave --pad out")
    return augment


def _form(kind: str) -> str:
    """The file format of an in-memory kind, for messages."""
    return "IDX" if kind in IDX_KINDS else "CIFAR"


def check_decode(kind: str, decode: str, augment: str) -> None:
    """``--decode device`` decodes image files with random-resized or centre crops; anything else is refused with
    one line naming the option and what applies."""
    if decode not in DECODES:
        raise ConfigError(f"--decode must be one of {', '.join(DECODES)}, got {decode!r}")
    if decode == "device" and kind in IN_MEMORY_KINDS:
        raise ConfigError(f"--decode device decodes image files (class folders, Places365); {kind} is {_form(kind)} "
                          f"images already decoded in memory (kept on the GPU with --device cuda): leave --decode out")
    if decode == "device" and augment == "paper":
        raise ConfigError("--augment paper (HLS noise) runs in Pillow, in the workers: with --decode device use "
                          "--augment rrc or none, or leave --decode out")


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise MissingFileError(f"{root}: none of the image folders {', '.join(names)} exists")


def _transform(spec: DataSpec, train: bool):
    if not train:
        return eval_transform(spec)
    if spec.augment == "paper":
        return PaperAugment(size=spec.size)
    if spec.augment == "none":
        return EvalCrops(spec.size, spec.resize or spec.size, spec.mean, spec.std, spec.in_chans, 1)
    return RandomResizedCropFlip(spec.size, spec.mean, spec.std, spec.in_chans)


def open_split(data: str | os.PathLike | None, split: str, spec: DataSpec):
    """A loader for split 'train' or 'val' (Fashion-MNIST's and CIFAR's test sets are their 'val')."""
    kind, train = detect_kind(data), split == "train"
    if train:
        spec = replace(spec, augment=check_augment(kind, spec.augment, spec.pad))
    check_decode(kind, spec.decode, spec.augment if train else "none")
    cifar.check_label_set(kind, spec.cifar100_labels)
    if kind in IN_MEMORY_KINDS:
        return _tensor_loader(kind, data, train, spec)
    root, empty = Path(data), []
    if kind == "folder":
        sub = "train" if train else next((s for s in ("val", "test") if (root / s).is_dir()), "val")
        samples, classes, empty = folders.class_folder_samples(root / sub, spec.strict)
        if not train and (root / "train").is_dir():
            folders.check_same_classes(folders.class_folders(root / "train"), classes, str(root))
    else:
        list_file = root / ("places365_train_standard.txt" if train else "places365_val.txt")
        image_root = _first_dir(root, ("data_256", "data_large", "train_256", "train_large") if train
                                else ("val_256", "val_large"))
        cats = root / "categories_places365.txt"
        known = folders.read_categories(cats) if cats.is_file() else None
        samples = folders.file_list_samples(list_file, image_root, len(known) if known else None)
        classes = known or [str(i) for i in range(max(label for _, label in samples) + 1)]
    dataset = folders.ImageListDataset(samples, classes, _transform(spec, train), spec.strict, spec.seed)
    dataset.empty_classes = empty
    if spec.decode == "device":
        return DeviceDecodeLoader(dataset, spec.workers)
    return FolderLoader(dataset, spec.workers)


def _tensor_loader(kind: str, data, train: bool, spec: DataSpec) -> TensorLoader:
    """An in-memory split; a CIFAR one also carries its class names and its notes (files other than the published
    ones), and so do its subsets and held-out parts."""
    notes, classes = [], None
    if kind in CIFAR_KINDS:
        split = cifar.read_split(find_cifar(data), "train" if train else "test", spec.cifar100_labels)
        images, labels, notes, classes = split.images, split.labels, split.notes, split.classes
    else:
        images, labels = idx.load_idx_split(idx.find_fashion_mnist(data), "train" if train else "test")
    images = _as_channels(images, spec.in_chans, kind) if spec.repeat_grey else images
    aug = train and spec.augment != "none"
    loader = TensorLoader(images, labels, spec.mean, spec.std, pad=spec.pad if aug else 0, flip=aug,
                          crops=1 if train else spec.crops, resize=None if train else spec.resize, size=spec.size,
                          seed=spec.seed)
    loader.notes, loader.classes = notes, classes
    return loader


def _as_channels(images, in_chans: int, kind: str):
    """Grey images repeated to the model's ``in_chans``; any other mismatch is refused."""
    have = images.shape[1]
    if have == in_chans:
        return images
    if have != 1:
        raise ConfigError(f"--in-chans {in_chans}: {kind} images have {have} channels; leave --in-chans out")
    return images.repeat(1, in_chans, 1, 1)  # laid out as read CIFAR images are: batches compute alike


def check_labels(loader, num_classes: int, split: str) -> None:
    """Every label of ``loader`` must name one of the ``num_classes`` classes the model is built for."""
    if isinstance(loader, TensorLoader):
        labels = loader.labels
        low, high = (int(labels.min()), int(labels.max())) if len(labels) else (0, 0)
    else:
        labels = [label for _, label in loader.dataset.samples]
        low, high = min(labels, default=0), max(labels, default=0)
    if low < 0 or high >= num_classes:
        raise DataError(f"the {split} labels run from {low} to {high}; the training set has {num_classes} classes "
                        f"(labels 0..{num_classes - 1})")


def num_classes_of(loader) -> int:
    if getattr(loader, "classes", None):  # CIFAR: every class the data set names, present in a subset or not
        return len(loader.classes)
    if isinstance(loader, TensorLoader):
        return int(loader.labels.max()) + 1
    return len(loader.dataset.classes)
