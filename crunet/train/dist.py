"""torch.distributed set-up for ``torchrun``: NCCL on GPUs, Gloo on CPUs; one process per device.

Every collective is entered by every rank in the same order: the loop agrees on its decisions (stop, checkpoint,
skip an empty step, a non-finite loss) with one small all-reduce, so no rank can leave the others waiting. The
process group has a timeout (``CRUNET_DIST_TIMEOUT`` seconds, default 600), so a dead peer ends the run with an
error instead of a hang, and a finished run meets at a barrier before the group is destroyed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from crunet.errors import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # the process group's (nccl on CUDA, gloo on the CPU); None: no group

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str = "auto") -> bool:
    """Whether to use CUDA; an unknown or unavailable ``--device`` is an error, never a silent CPU fallback."""
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    return torch.cuda.is_available() if device == "auto" else device.startswith("cuda")


def setup_distributed(device: str = "auto") -> DistInfo:
    """Read torchrun's environment; initialise the process group when there is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device)
    index = int(device[5:]) if device.startswith("cuda:") and world == 1 else local_rank
    dev = torch.device("cuda", index) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    # under torchrun the group is made even for one process: ``--nproc_per_node 1`` checks the NCCL set-up of a
    # one-GPU machine (a plain ``crunet train`` makes none; with one process the loop takes no collective either way)
    if (world > 1 or "TORCHELASTIC_RUN_ID" in os.environ) and not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("CRUNET_DIST_TIMEOUT", "600")))
        dist.init_process_group(backend=backend_for(dev), timeout=timeout, device_id=dev if use_cuda else None)
    return DistInfo(rank, world, local_rank, dev, dist.get_backend() if dist.is_initialized() else None)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs (one process per GPU, on cuda:LOCAL_RANK), Gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    if info.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flags: list[bool], info: DistInfo) -> list[bool]:
    """Each flag, true if it is true on any rank (one all-reduce for all of them)."""
    if info.world == 1:
        return [bool(f) for f in flags]
    t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def from_main(obj, info: DistInfo):
    """Rank 0's value of ``obj`` on every rank."""
    if info.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(info: DistInfo, finished: bool = True) -> None:
    """A finished run waits for every rank before the group goes (a rank that leaves early makes the others'
    last collective fail at shutdown); a failed one leaves at once."""
    if (info.world > 1 or info.backend) and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
