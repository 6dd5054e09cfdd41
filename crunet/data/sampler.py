"""Which samples each process takes, step by step: resumable mid-epoch, distributed, accumulation-aware.

Step s of an epoch consumes the global chunk ``perm[s*G:(s+1)*G]`` with G = batch * world * accum; micro-batch m
of rank r takes slice ``m*world + r`` of it. So one process with ``accum=2`` sees exactly the batches two processes
see together, and a resumed run skips exactly the batches it already trained on.
"""

from __future__ import annotations

import torch

from crunet.errors import ConfigError


class StepSampler:
    def __init__(self, n: int, batch_size: int, world: int = 1, rank: int = 0, accum: int = 1,
                 shuffle: bool = True, seed: int = 0):
        self.n, self.batch_size, self.world, self.rank, self.accum = n, batch_size, world, rank, accum
        self.shuffle, self.seed = shuffle, seed
        self.global_batch = batch_size * world * accum
        if n < self.global_batch:
            raise ConfigError(f"the training set has {n} images, fewer than one global batch of {self.global_batch} "
                             f"(batch {batch_size} x {world} processes x {accum} accumulation steps)")

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.global_batch

    def __len__(self) -> int:
        """Local batches per epoch."""
        return self.steps_per_epoch * self.accum

    def batches(self, epoch: int, start: int = 0) -> list[torch.Tensor]:
        """This rank's batches of ``epoch``, from local batch ``start`` on (the sampler position of a resume)."""
        if self.shuffle:
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
        else:
            perm = torch.arange(self.n)
        out = []
        for i in range(start, len(self)):
            step, micro = divmod(i, self.accum)
            chunk = step * self.global_batch + (micro * self.world + self.rank) * self.batch_size
            out.append(perm[chunk:chunk + self.batch_size])
        return out


def eval_shard(n: int, batch_size: int, world: int = 1, rank: int = 0) -> list[torch.Tensor]:
    """Evaluation batches of this rank: every image exactly once over all ranks."""
    idx = torch.arange(rank, n, world)
    return list(idx.split(batch_size))
