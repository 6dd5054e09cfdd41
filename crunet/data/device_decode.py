"""``--decode device``: image folders decoded on the training device, a batch at a time, instead of by Pillow in the
DataLoader workers (on an H200, 16 workers decode about 1,200 img/s; nvjpeg, through torchvision, about 14,700).

The workers read each file's bytes and draw its crop and flip from the same (seed, epoch, index) generator, with the
same code, as ``--decode cpu``: the augmentation does not depend on the path or the device. The training device
decodes the batch's JPEGs in one ``torchvision.io.decode_jpeg`` call, then crops, resizes (bilinear, antialiased:
Pillow's filter), flips and normalizes each image. A file the device does not decode (a PNG or another format, a CMYK
JPEG, a JPEG the decoder refuses) goes through ``--decode cpu``'s own loading and transform instead, in the worker:
a folder of mixed files trains as with ``--decode cpu`` (ImageNet's training set holds a PNG and CMYK JPEGs named
.JPEG), and a bad file is skipped and counted, or refused with ``--strict-data``, as there.

What differs from ``--decode cpu``, by design: the resize works in float (Pillow rounds to 8 bits after each of its
two passes), and a training crop is resized alone (Pillow's box resize also weighs the pixels just outside the box
at its edges); evaluation resizes the whole image and crops it, which is Pillow's arithmetic. Both give values a
level or so apart. Grey models get Pillow's RGB-to-L conversion of the decoded RGB, not libjpeg's own luma channel.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from crunet.data.folders import MAX_PIXELS, BadImageError, ImageListDataset
from crunet.data.transforms import EvalCrops, RandomResizedCropFlip, center_crop, ten_crop
from crunet.errors import ConfigError

DEVICE_MODES = ("L", "RGB")  # the JPEGs the device decodes; any other mode (CMYK) is decoded by Pillow
WHOLE_RESIZE_LIMIT = 64  # evaluation resizes whole images on the device up to 64 crops' area; past it (an extreme
# aspect ratio: a 1x20000 image would become 256 x 5 M pixels) the worker runs the CPU path, which never builds it


@dataclass
class Encoded:
    """One image as a worker hands it over: a JPEG's bytes for the device to decode (``box`` and ``flip``: its
    training crop), or ``done``: the image through ``--decode cpu``'s own transform (what the device cannot take)."""

    index: int
    label: int
    jpeg: bytes | None = None
    box: tuple[int, int, int, int] | None = None
    flip: bool = False
    done: torch.Tensor | None = None


@dataclass
class EncodedBatch:
    """The good images of a batch (their JPEG bytes slices of one buffer: one transfer from a worker) and the
    number of bad images left out."""

    items: list[Encoded]
    buffer: torch.Tensor
    offsets: list[int]
    skipped: int

    def jpeg(self, i: int) -> torch.Tensor:
        return self.buffer[self.offsets[i]:self.offsets[i + 1]]


def collate_encoded(batch: list[Encoded | None]) -> EncodedBatch:
    items = [b for b in batch if b is not None]
    jpegs = [b.jpeg or b"" for b in items]
    offsets = np.cumsum([0] + [len(j) for j in jpegs]).tolist()
    buffer = torch.frombuffer(bytearray(b"".join(jpegs)), dtype=torch.uint8) if offsets[-1] else torch.empty(0)
    for b in items:
        b.jpeg = None
    return EncodedBatch(items, buffer, offsets, len(batch) - len(items))


class EncodedImages:
    """The workers' side: ``dataset[(index, epoch)]`` is the image's ``Encoded`` form, None for a bad image (or
    BadImageError with ``strict``). The crop is drawn as ImageListDataset draws it, from (seed, epoch, index)."""

    def __init__(self, images: ImageListDataset):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key) -> Encoded | None:
        index, epoch = key
        path, label = self.images.samples[index]
        transform = self.images.transform
        try:
            data = read_file(path)
            size = jpeg_size(data, path)
        except BadImageError:
            if self.images.strict:
                raise
            return None
        if size is None or too_large_to_resize(transform, *size):
            return cpu_path(self.images, index, epoch)
        item = Encoded(index, label, jpeg=data)
        if isinstance(transform, RandomResizedCropFlip):
            item.box, item.flip = transform.draw(*size, np.random.default_rng([self.images.seed, epoch, index]))
        return item


def cpu_path(images: ImageListDataset, index: int, epoch: int) -> Encoded | None:
    """The image through ``--decode cpu``'s loading and transform: the same pixels as that path gives."""
    sample = images[(index, epoch)]
    return None if sample is None else Encoded(index, sample[1], done=sample[0])


def read_file(path: str) -> bytes:
    """The file's bytes; not a regular file (a FIFO would block) or unreadable: BadImageError."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BadImageError(f"bad image {path}: not a regular file")
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise BadImageError(f"bad image {path}: {' '.join(str(err).split()) or type(err).__name__}") from err


def jpeg_size(data: bytes, path: str) -> tuple[int, int] | None:
    """(width, height) of a JPEG the device decodes; None for any other image (Pillow decodes it); not an image or
    more than MAX_PIXELS pixels: BadImageError."""
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                fmt, mode, (width, height) = img.format, img.mode, img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImageError(f"bad image {path}: {' '.join(str(err).split()) or type(err).__name__}") from err
    if width * height > MAX_PIXELS:
        raise BadImageError(f"bad image {path}: {width}x{height} pixels, more than the {MAX_PIXELS:,} allowed (a "
                            f"decompression bomb?)")
    return (width, height) if fmt == "JPEG" and mode in DEVICE_MODES else None


def too_large_to_resize(transform, width: int, height: int) -> bool:
    if not isinstance(transform, EvalCrops):
        return False
    w, h = transform.resized(width, height)
    return w * h > WHOLE_RESIZE_LIMIT * transform.size ** 2


def jpeg_decoder():
    """``torchvision.io.decode_jpeg`` to RGB, or a ConfigError that says how to get it."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except (ImportError, RuntimeError, OSError) as err:  # a torchvision built for another torch fails as RuntimeError
        raise ConfigError(f"--decode device needs torchvision (torchvision.io.decode_jpeg), which does not import "
                          f"here ({type(err).__name__}: {' '.join(str(err).split())[:160]}); install the torchvision "
                          f"built for torch {torch.__version__}, or leave --decode out (Pillow decodes in the "
                          f"workers)") from None
    return functools.partial(decode_jpeg, mode=ImageReadMode.RGB)


class DeviceDecodeLoader:
    """Yields (images on the loader's device, normalized, labels, number of bad images skipped) like FolderLoader;
    the workers read files and draw crops, the device (``to``; default the CPU) decodes and transforms."""

    def __init__(self, dataset: ImageListDataset, workers: int, device: torch.device | str = "cpu"):
        transform = dataset.transform
        if not isinstance(transform, (RandomResizedCropFlip, EvalCrops)):
            raise ConfigError(f"--decode device does random-resized crops (--augment rrc) and centre or ten crops "
                              f"(--augment none, evaluation), not {type(transform).__name__}: use one of those, or "
                              f"leave --decode out")
        self.dataset, self.workers, self.device = dataset, workers, torch.device(device)
        self.decode_jpeg = jpeg_decoder()
        chans = transform.in_chans
        self.mean = torch.tensor(transform.mean[:chans], dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(transform.std[:chans], dtype=torch.float32).view(1, -1, 1, 1)

    def to(self, device: torch.device | str) -> DeviceDecodeLoader:
        """Decode and transform on ``device`` from now on. Returns this loader."""
        self.device = torch.device(device)
        return self

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def empty_classes(self) -> list[str]:
        return self.dataset.empty_classes

    def subset(self, n: int) -> DeviceDecodeLoader:
        return DeviceDecodeLoader(self.dataset.subset(n), self.workers, self.device)

    def iterate(self, batches, epoch: int = 0, train: bool = True):
        import torch.utils.data as tud

        keyed = [[(int(i), epoch) for i in b] for b in batches]
        # the DataLoader's own generator, as in FolderLoader: the global RNG is not drawn from
        for batch in tud.DataLoader(EncodedImages(self.dataset), batch_sampler=keyed, num_workers=self.workers,
                                    collate_fn=collate_encoded, persistent_workers=False,
                                    generator=torch.Generator().manual_seed(epoch)):
            yield self.prepare(batch, epoch)

    def prepare(self, batch: EncodedBatch, epoch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The batch decoded (one call for all its JPEGs), cropped, flipped and normalized on the device."""
        items, skipped = batch.items, batch.skipped
        on_device = [i for i, item in enumerate(items) if item.done is None]
        decoded = self.decode([batch.jpeg(i) for i in on_device])
        out: dict[int, torch.Tensor] = {}
        crops, flips, where = [], [], []
        for i, img in zip(on_device, decoded, strict=True):
            if img is None:  # a JPEG the device refused: the CPU path decides (Pillow, or a bad image)
                items[i] = cpu_path(self.dataset, items[i].index, epoch)
                if items[i] is None:
                    skipped += 1
                continue
            crops.append(self.crop(img, items[i]))
            flips.append(items[i].flip)
            where.append(i)
        if crops:
            x = torch.stack(crops)
            if any(flips):
                mask = torch.tensor(flips).to(self.device)
                x = torch.where(mask.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)
            mean, std = self.mean.to(self.device), self.std.to(self.device)
            out.update(zip(where, (x / 255 - mean) / std, strict=True))
        out.update({i: item.done.to(self.device) for i, item in enumerate(items) if item and item.done is not None})
        keep = sorted(out)
        if not keep:
            return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
        labels = torch.tensor([items[i].label for i in keep], dtype=torch.long)
        return torch.stack([out[i] for i in keep]), labels, skipped

    def decode(self, jpegs: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """uint8 RGB (3, H, W) on the device, one call for the batch; a JPEG that fails alone gives None."""
        if not jpegs:
            return []
        try:
            return list(self.decode_on_device(jpegs))
        except RuntimeError:  # one bad file fails the whole call: find it
            return [self.decode_one(j) for j in jpegs]

    def decode_one(self, jpeg: torch.Tensor) -> torch.Tensor | None:
        try:
            return self.decode_on_device(jpeg)
        except RuntimeError:
            return None

    def decode_on_device(self, jpegs):
        if self.device.type == "cuda":
            # torchvision's CUDA decode can write its outputs before the kernels queued on this stream have run
            # (nvJPEG's hardware decoder does not wait for the stream; pytorch/vision#9606, seen on H100s): memory
            # the last step's kernels still read would be overwritten. Let them finish first.
            torch.cuda.current_stream(self.device).synchronize()
        return self.decode_jpeg(jpegs, device=self.device)

    def crop(self, img: torch.Tensor, item: Encoded) -> torch.Tensor:
        """Training: the drawn box resized to ``size``; evaluation: the image resized (short side ``resize``), then
        its centre crop or ten crops, as EvalCrops takes them. Float, 0..255."""
        transform = self.dataset.transform
        if item.box is not None:
            x0, y0, x1, y1 = item.box
            return resize(self.channels(img[:, y0:y1, x0:x1]), transform.size, transform.size)
        width, height = transform.resized(img.shape[-1], img.shape[-2])
        x = resize(self.channels(img), height, width)
        return ten_crop(x, transform.size) if transform.crops == 10 else center_crop(x, transform.size)

    def channels(self, rgb: torch.Tensor) -> torch.Tensor:
        return pillow_luma(rgb) if self.dataset.transform.in_chans == 1 else rgb


def resize(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 (C, H, W) -> float (C, height, width): bilinear with Pillow's antialiasing filter."""
    return F.interpolate(img.float().unsqueeze(0), size=(height, width), mode="bilinear", antialias=True,
                         align_corners=False).squeeze(0)


LUMA = (19595, 38470, 7471)  # Pillow's RGB -> L weights (ITU-R 601-2 luma) in 16-bit fixed point


def pillow_luma(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 (3, H, W) -> (1, H, W) exactly as Pillow's ``convert("L")``."""
    weights = torch.tensor(LUMA, dtype=torch.int32, device=rgb.device).view(3, 1, 1)
    return (((rgb.int() * weights).sum(0, keepdim=True) + 0x8000) >> 16).to(torch.uint8)
