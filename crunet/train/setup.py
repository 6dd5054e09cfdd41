"""A training run set up once, before the loop: ``setup(cfg, ...)`` opens the data, builds and places the model,
makes the optimizer, schedule and loop state (restored whole on resume), and opens the run's records. The loop
(``crunet.train.trainer``) reads everything from the ``Run`` it returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from crunet.data import (
    IDX_KINDS,
    IN_MEMORY_KINDS,
    StepSampler,
    check_augment,
    check_labels,
    detect_kind,
    num_classes_of,
    open_split,
)
from crunet.data.classes import class_names
from crunet.errors import ConfigError
from crunet.train.checkpoint import Checkpointer, CheckpointPolicy
from crunet.train.config import TrainConfig
from crunet.train.dist import DistInfo
from crunet.train.distill import Teacher, load_teacher
from crunet.train.ema import ModelEma
from crunet.train.init_from import convert_if_fresh, record_start
from crunet.train.inputs import data_spec
from crunet.train.optim import LrSchedule, build_optimizer, scaled_lr
from crunet.train.run_dir import RunDir
from crunet.train.shared_grads import SharedGradProbe
from crunet.train.state import TrainState, seed_everything
from crunet.train.steps import unwrap, uses_channels_last


@dataclass
class Run:
    """Everything the loop uses. ``model`` is the eager module (checkpoints, EMA, logs); ``ddp_model`` wraps it
    under DDP (validation); ``train_model`` is ``ddp_model``, compiled with ``--compile`` (the training forward)."""

    cfg: TrainConfig
    info: DistInfo
    path: str  # the run directory
    model: nn.Module
    ddp_model: nn.Module
    train_model: nn.Module
    train_data: object
    val_data: object
    sampler: StepSampler
    state: TrainState
    saver: Checkpointer
    policy: CheckpointPolicy
    records: RunDir | None  # rank 0's run directory; None on the other ranks
    grad_probe: SharedGradProbe | None
    teacher: Teacher | None = None  # --teacher: distillation (crunet.train.distill)

    def say(self, message: str) -> None:
        if self.info.main:
            print(message)


def check_device_options(cfg: TrainConfig, info: DistInfo) -> None:
    if cfg.amp == "fp16" and info.device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA GPU (it needs a gradient scaler); use --amp bf16 on the CPU")
    if cfg.sync_bn and info.world > 1 and info.device.type == "cpu":
        raise ConfigError("--sync-bn needs GPUs: PyTorch's SyncBatchNorm does not run on the CPU")


def setup(cfg: TrainConfig, model: nn.Module | None, resume: dict | None, info: DistInfo, run_path: str) -> Run:
    """The run, ready for its first (or next) step; ``model``: train this one instead of ``cfg.model``."""
    seed_everything(cfg.seed)
    model, train_data, val_data, spec, num_classes = open_data(cfg, model, info)
    converted = convert_if_fresh(cfg, model, train_data, resume)  # --init-from: crunet compress
    model = place_model(cfg, model, info)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay else None
    grad_probe = SharedGradProbe(model) if cfg.log_shared_grads else None
    sampler = StepSampler(len(train_data), cfg.batch_size, info.world, info.rank, cfg.accum, True, cfg.seed)
    lr = scaled_lr(cfg, sampler.global_batch)
    optimizer = build_optimizer(model, cfg, lr)
    schedule = LrSchedule.for_run(optimizer, lr, cfg, sampler.steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    state = TrainState(model, optimizer, schedule, scaler, ema, sampler.global_batch)
    if resume is not None:
        state.load_state_dict(resume, cfg.resume, info.main)
    meta = {"config": cfg.to_dict(), "model_name": unwrap(model).name, "num_classes": num_classes,
            "in_chans": spec.in_chans, "classes": class_names(cfg.data, train_data, cfg.cifar100_labels),  # for predict
            "img_size": spec.size}
    resolved = {"lr": lr, "global_batch": sampler.global_batch, "world": info.world,
                "channels_last": uses_channels_last(cfg), "num_classes": num_classes, "in_chans": spec.in_chans,
                "img_size": spec.size, "train_images": len(train_data), "val_images": len(val_data),
                "device": str(info.device), "backend": info.backend}
    teacher = open_teacher(cfg, meta, spec, info)  # a teacher that does not fit is refused before any record
    records = open_records(cfg, info, run_path, resolved, state) if info.main else None
    ddp_model = nn.parallel.DistributedDataParallel(model) if info.world > 1 else model
    run = Run(cfg, info, run_path, model, ddp_model, torch.compile(ddp_model) if cfg.compile else ddp_model, train_data,
              val_data, sampler, state, Checkpointer(run_path, meta, state, info),
              CheckpointPolicy(cfg.checkpoint_every), records, grad_probe, teacher)
    run.say(f"training {meta['model_name']} ({sum(p.numel() for p in model.parameters()):,} params) on "
            f"{len(train_data)} images, {info.world} process(es), global batch {sampler.global_batch}, lr {lr:.4g}; "
            f"run directory {run_path}" + (f"; resumed at step {state.step} from {cfg.resume}" if resume else ""))
    if converted is not None:
        run.say(record_start(converted, model, val_data, cfg, info, run_path))
    return run


def open_data(cfg: TrainConfig, model: nn.Module | None, info: DistInfo):
    """(model, training data, validation data, DataSpec, number of classes): the model is built for the data's
    classes (a probe of the default class count first gives the input size) unless one is given. ``cfg.augment``
    becomes the augmentation this data gets (``auto`` resolved), so config.json and the checkpoints record it."""
    kind = detect_kind(cfg.data)
    cfg.augment = check_augment(kind, cfg.augment, cfg.pad)
    idx_data = kind in IDX_KINDS
    # in-memory data sets have 10 classes but CIFAR-100: a 10-class probe is the model itself, so a colour model
    # starts from the same weights on grey IDX data (--in-chans 3) as on its CIFAR look-alike
    probe = model or create(cfg, 10 if kind in IN_MEMORY_KINDS else 1000, cfg.in_chans or (1 if idx_data else 3))
    spec = data_spec(cfg, probe)
    train_data, val_data = open_split(cfg.data, "train", spec), open_split(cfg.data, "val", spec)
    for note in getattr(train_data, "notes", []) if info.main else []:  # CIFAR files not the published ones
        print(note)
    if cfg.holdout:
        train_data, val_data = hold_out(train_data, val_data, cfg.holdout)
    num_classes = num_classes_of(train_data)
    check_labels(val_data, num_classes, "validation")
    if model is None:
        model = probe if probe.num_classes == num_classes else create(cfg, num_classes, spec.in_chans)
    train_data = train_data.subset(cfg.subset) if cfg.subset else train_data
    val_data = val_data.subset(cfg.val_subset or cfg.subset) if (cfg.val_subset or cfg.subset) else val_data
    if info.device.type == "cuda":  # IDX images: on the GPU once; folders: pinned batches. The CPU path is as it was
        train_data, val_data = train_data.to(info.device), val_data.to(info.device)
        torch.backends.cudnn.benchmark = True
    for name in getattr(train_data, "empty_classes", []):
        if info.main:
            print(f"warning: class folder {name!r} is empty (its label is kept; --strict-data makes this an error)")
    return model, train_data, val_data, spec, num_classes


def open_teacher(cfg: TrainConfig, meta: dict, spec, info: DistInfo) -> Teacher | None:
    """``--teacher``'s model on the training device (in the student's memory format), or None without one."""
    if not cfg.teacher:
        return None
    teacher = load_teacher(cfg.teacher, meta["num_classes"], meta["in_chans"], spec.mean, spec.std, meta["classes"])
    fmt = torch.channels_last if uses_channels_last(cfg) else torch.contiguous_format
    return teacher.to(info.device, memory_format=fmt)


def place_model(cfg: TrainConfig, model: nn.Module, info: DistInfo) -> nn.Module:
    """Gradient checkpointing, the device and memory format, SyncBatchNorm across GPUs."""
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    fmt = torch.channels_last if uses_channels_last(cfg) else torch.contiguous_format
    model = model.to(info.device, memory_format=fmt)
    if cfg.sync_bn and info.world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def open_records(cfg: TrainConfig, info: DistInfo, run_path: str, resolved: dict, state: TrainState) -> RunDir:
    """Rank 0's run directory: config.json written (resolved), metrics.csv cut back to the epochs ``state`` has."""
    records = RunDir(run_path, cfg.tensorboard)
    records.write_config({**cfg.to_dict(), "resolved": resolved})
    records.keep_epochs(state.epoch)
    return records


def create(cfg: TrainConfig, num_classes: int, in_chans: int) -> nn.Module:
    from crunet.models import create_model

    return create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, **cfg.model_kwargs)


def hold_out(train_data, val_data, n: int):
    """Validate on ``n`` images of the training set (for choosing hyper-parameters without the test set)."""
    if not hasattr(train_data, "hold_out"):
        raise ConfigError("--holdout works with the in-memory IDX data sets (Fashion-MNIST, MNIST); with class "
                          "folders, move some training images into a folder of their own and pass that as val/")
    return train_data.hold_out(n, val_data)
