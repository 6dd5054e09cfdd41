"""Small images held in memory as one uint8 tensor (Fashion-MNIST): batched augmentation, no worker processes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crunet.data.transforms import center_crop, ten_crop
from crunet.errors import ConfigError


def pad_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop of the zero-padded batch (shift by up to ``pad`` pixels) and a random horizontal flip.

    The draws come from the CPU ``generator`` whatever ``x``'s device (only the small draws move there), so a batch
    on the GPU is augmented exactly as the same batch on the CPU."""
    n, _, h, w = x.shape
    dev = x.device
    if pad:
        dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(dev)
        xp = F.pad(x, (pad, pad, pad, pad))
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, :, None]
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, :]
        x = xp[torch.arange(n, device=dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(dev)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


class TensorLoader:
    """Yields (images float (B, C, H, W) normalized, labels, skipped=0) for the given index batches."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, pad: int = 0, flip: bool = False,
                 crops: int = 1, resize: int | None = None, size: int | None = None, seed: int = 0):
        self.images, self.labels, self.pad, self.flip = images, labels, pad, flip
        self.mean = torch.tensor(mean[: images.shape[1]]).view(1, -1, 1, 1)
        self.std = torch.tensor(std[: images.shape[1]]).view(1, -1, 1, 1)
        self.crops, self.size = crops, size or images.shape[-1]
        self.resize = resize or self.size
        self.generator, self.seed = torch.Generator(), seed  # on the CPU always: the draws do not depend on device

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> TensorLoader:
        """Keep the images, labels and normalization on ``device`` (once, for the run): batches are indexed and
        augmented there, with the same random draws as on the CPU. Returns this loader."""
        self.images, self.labels = self.images.to(device), self.labels.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def __len__(self) -> int:
        return len(self.labels)

    def prepare(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        if train and (self.pad or self.flip):
            x = pad_crop_flip(x, self.pad, self.flip, self.generator)
        x = (x.float() / 255 - self.mean) / self.std
        if train and self.size != x.shape[-1]:  # the size evaluation resizes to: train and test see one scale
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        if not train and (self.resize != x.shape[-1] or self.size != x.shape[-1] or self.crops == 10):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", antialias=True,
                              align_corners=False) if self.resize != x.shape[-1] else x
            x = ten_crop(x, self.size) if self.crops == 10 else center_crop(x, self.size)
        return x

    def iterate(self, batches: list[torch.Tensor], epoch: int = 0, train: bool = True):
        """The augmentation of a batch depends only on (seed, epoch, its first image): a resumed run repeats it."""
        for idx in batches:
            self.generator.manual_seed(self.seed * 1_000_003 + epoch * 100_003 + int(idx[0]))
            on = idx.to(self.images.device, non_blocking=True)
            yield self.prepare(self.images[on], train), self.labels[on], 0

    def subset(self, n: int) -> TensorLoader:
        return self._take(_fixed_order(len(self.labels))[:n].sort().values)

    def hold_out(self, n: int, evaluation: TensorLoader) -> tuple[TensorLoader, TensorLoader]:
        """(training images minus ``n`` held-out ones, those ``n`` as an evaluation set configured like
        ``evaluation``). The held-out images are the same for every seed and model, so runs compare on one split."""
        if not 0 < n < len(self.labels):
            raise ConfigError(f"--holdout {n}: the training set has {len(self.labels)} images; hold out fewer")
        order = _fixed_order(len(self.labels))
        held = evaluation._take(order[:n].sort().values, self)
        return self._take(order[n:].sort().values), held

    def _take(self, index: torch.Tensor, source: TensorLoader | None = None) -> TensorLoader:
        source = source or self
        index = index.to(source.images.device)
        out = TensorLoader(source.images[index], source.labels[index], (0,), (1,), self.pad, self.flip, self.crops,
                           self.resize, self.size, self.seed)
        out.mean, out.std = self.mean.to(out.device), self.std.to(out.device)
        # the data set's class names and notes hold for any part of it: a subset missing a class keeps its label
        out.classes, out.notes = getattr(source, "classes", None), getattr(source, "notes", [])
        return out


def _fixed_order(n: int) -> torch.Tensor:
    """A shuffle that does not depend on the run's seed: subsets and held-out sets are the same in every run."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(12345))
