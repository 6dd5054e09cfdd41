"""Every knob of a training run in one dataclass; the run directory stores it resolved, as JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

# The paper's optimizer presets (section 5): 50-layer nets and deeper ones; reduce-on-plateau in both.
PRESETS = {
    "paper50": {"lr": 0.1, "weight_decay": 5e-4, "schedule": "plateau"},
    "paper-deep": {"lr": math.sqrt(0.1), "weight_decay": 2e-4, "schedule": "plateau"},
}


@dataclass
class TrainConfig:
    model: str = "crunet_small"
    model_kwargs: dict = field(default_factory=dict)  # design overrides passed to create_model (e.g. orth_lambda)
    data: str | None = None  # None: Fashion-MNIST from /usr/share/datasets/fashion-mnist
    out: str | None = None  # run directory; default runs/<model>-<date>
    epochs: int = 5
    batch_size: int = 128  # per process
    accum: int = 1  # micro-batches per optimizer step
    lr: float = 0.2
    lr_ref_batch: int = 0  # >0: linear scaling, lr * global_batch / lr_ref_batch
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False
    preset: str | None = None
    schedule: str = "cosine"  # cosine, step, plateau, constant
    warmup_epochs: float = 0.5
    step_epochs: list[int] = field(default_factory=lambda: [30, 60, 80])
    gamma: float = 0.1
    plateau_patience: int = 2
    label_smoothing: float = 0.1
    amp: str = "none"  # none, bf16, fp16 (CUDA only)
    channels_last: bool | None = None  # None: on for CPU and CUDA
    ema_decay: float = 0.0
    clip_grad: float = 0.0
    subset: int = 0
    val_subset: int = 0
    holdout: int = 0  # >0: validate on N images held out of the training set (the test set is not touched)
    augment: str = "light"  # light, rrc, paper, none
    pad: int = 0  # light augmentation: random shifts of up to pad pixels (0: flips only, best for 5 epochs)
    img_size: int | None = None
    crops: int = 1
    workers: int = 2
    seed: int = 0
    strict_data: bool = False
    sync_bn: bool = False
    grad_checkpointing: bool = False
    resume: str | None = None
    log_every: int = 50
    log_shared_grads: bool = False  # metrics.csv: mean gradient norm of each shared tensor, orthogonality penalty
    tensorboard: bool = True
    plot: bool = True
    progress: str = "auto"  # auto (bar on a terminal), bar, lines, none
    device: str = "auto"

    def apply_preset(self) -> TrainConfig:
        if self.preset:
            if self.preset not in PRESETS:
                raise ValueError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
            for key, value in PRESETS[self.preset].items():
                setattr(self, key, value)
        return self

    def check(self) -> None:
        choices = {"schedule": ("cosine", "step", "plateau", "constant"), "amp": ("none", "bf16", "fp16"),
                   "augment": ("light", "rrc", "paper", "none"), "progress": ("auto", "bar", "lines", "none")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"--{key.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, key)!r}")
        for key in ("epochs", "batch_size", "accum"):
            if getattr(self, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be at least 1")
        if self.lr <= 0 or not 0 <= self.ema_decay < 1 or self.crops not in (1, 10):
            raise ValueError("need lr > 0, 0 <= ema-decay < 1 and crops 1 or 10")
        if not isinstance(self.model_kwargs, dict):
            raise ValueError(f"--model-kwargs must be a JSON object such as '{{\"orth_lambda\": 0}}', "
                             f"got {self.model_kwargs!r}")
        if self.holdout < 0:
            raise ValueError(f"--holdout must be 0 (off) or a number of training images, got {self.holdout}")

    def to_dict(self) -> dict:
        return asdict(self)

    def merged_for_resume(self, saved: dict) -> TrainConfig:
        """The resumed run's config: the checkpoint's, except the options given here that differ from the defaults
        (so ``--resume last.pt`` alone continues the same run; ``--epochs 200`` extends it)."""
        defaults = TrainConfig()
        merged = TrainConfig.from_dict(saved)
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(defaults, f.name) or f.name not in saved:
                setattr(merged, f.name, value)
        merged.resume, merged.out = self.resume, self.out
        return merged

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
