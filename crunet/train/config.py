"""Every knob of a training run in one dataclass; the run directory stores it resolved, as JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from crunet.data.sources import AUGMENTS, DECODES
from crunet.errors import ConfigError

# The paper's optimizer presets (section 5): 50-layer nets and deeper ones; reduce-on-plateau in both. A preset fills
# only the options left unset (None); an option given explicitly wins. With no preset, UNSET_DEFAULTS apply.
PRESETS = {
    "paper50": {"lr": 0.1, "weight_decay": 5e-4, "schedule": "plateau"},
    "paper-deep": {"lr": math.sqrt(0.1), "weight_decay": 2e-4, "schedule": "plateau"},
}
UNSET_DEFAULTS = {"lr": 0.2, "weight_decay": 5e-4, "schedule": "cosine"}


@dataclass
class TrainConfig:
    model: str = "crunet_small"
    model_kwargs: dict = field(default_factory=dict)  # design overrides passed to create_model (e.g. orth_lambda)
    data: str | None = None  # None: Fashion-MNIST from /usr/share/datasets/fashion-mnist
    out: str | None = None  # run directory; default runs/<model>-<date>
    epochs: int = 5
    batch_size: int = 128  # per process
    accum: int = 1  # micro-batches per optimizer step
    lr: float | None = None  # None: the preset's, else 0.2
    lr_ref_batch: int = 0  # >0: linear scaling, lr * global_batch / lr_ref_batch
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float | None = None  # None: the preset's, else 5e-4
    decay_norm_and_bias: bool = False
    preset: str | None = None  # fills lr, weight_decay and schedule where they are None (not given)
    recipe: str | None = None  # a paper's recipe (crunet.train.recipes) or a TOML file: fills the options not given
    schedule: str | None = None  # cosine, step, plateau, constant; None: the preset's, else cosine
    warmup_epochs: float = 0.5
    step_epochs: list[int] = field(default_factory=lambda: [30, 60, 80])
    gamma: float = 0.1
    step_gammas: list[float] | None = None  # one lr factor per step epoch (schedule step); None: gamma at each
    plateau_patience: int = 2
    label_smoothing: float = 0.1
    amp: str = "none"  # none, bf16, fp16 (CUDA only)
    channels_last: bool | None = None  # None: on for CPU and CUDA
    ema_decay: float = 0.0
    clip_grad: float = 0.0
    subset: int = 0
    val_subset: int = 0
    holdout: int = 0  # >0: validate on N images held out of the training set (the test set is not touched)
    augment: str = "auto"  # auto, light, rrc, paper, none: crunet.data.sources.AUGMENTS says what each does
    pad: int = 0  # augment light: random shifts of up to pad pixels (0: flips only, best for 5 epochs)
    img_size: int | None = None
    in_chans: int | None = None  # None: the data's (1 for IDX, 3 otherwise); 3 on grey data repeats its channel
    crops: int = 1
    mean: list[float] | None = None  # input normalization, one value per channel; None: the model's pretrained_cfg
    std: list[float] | None = None
    crop_pct: float | None = None  # evaluation: short side = size / crop_pct; None: the model's pretrained_cfg
    workers: int = 2
    decode: str = "cpu"  # cpu (Pillow in the workers) or device: crunet.data.sources.DECODES says what each does
    cifar100_labels: str = "fine"  # CIFAR-100: fine (100 classes) or coarse (20); refused on other data
    seed: int = 0
    strict_data: bool = False
    sync_bn: bool = False
    grad_checkpointing: bool = False
    resume: str | None = None  # a checkpoint, a run directory (its newest valid checkpoint), or auto (of --out)
    checkpoint_every: str = "30m"  # mid-epoch checkpoints: N steps, Mm minutes, or both ("500,30m"); "0": off
    log_every: int = 50
    log_shared_grads: bool = False  # metrics.csv: mean gradient norm of each shared tensor, orthogonality penalty
    tensorboard: bool = True
    plot: bool = True
    progress: str = "auto"  # auto (bar on a terminal), bar, lines, none
    device: str = "auto"
    compile: bool = False  # torch.compile the training forward (checkpoints and EMA keep the eager module)
    # distillation (crunet.train.distill): loss = (1 - kd_weight) * labels + kd_weight * KL(teacher/T || student/T) T^2
    teacher: str | None = None  # a crunet checkpoint or safetensors file of the same classes; None: off
    kd_temperature: float = 4.0
    kd_weight: float = 0.5
    # conversion (crunet.train.init_from, crunet compress): start from a trained network converted into --model
    init_from: str | None = None  # a crunet checkpoint; None: a random init
    init_method: str = "svd"  # svd or data (into its DSFB design), cru (a ResNeXt into its CRU design), norm (a
    # thinner copy: filters of largest norm)
    init_images: int = 256  # training images for the BN calibration and the data-aware bases

    def apply_preset(self) -> TrainConfig:
        """A fresh run's config: the options not given filled from ``recipe`` (``apply_recipe``), then the options
        left unset (None) from ``preset``, then from ``UNSET_DEFAULTS``: ``--preset paper50 --lr 0.05`` trains at
        0.05 with the preset's weight decay and schedule. Returns this config."""
        return self.apply_recipe()._fill_unset()

    def apply_recipe(self) -> TrainConfig:
        """Fill the options not given from ``recipe``, resolved for this data's kind and this model
        (``crunet.train.recipes``); ``model_kwargs`` merge key by key, the given keys winning. Given: the options the
        command line named (``given``), else those that differ from the defaults. Returns this config."""
        if self.recipe is None:
            return self
        from crunet.data import detect_kind
        from crunet.train.recipes import resolve

        given = self.given_options()
        for key, value in resolve(self.recipe, detect_kind(self.data), self.model).items():
            if key == "model_kwargs":
                self.model_kwargs = {**value, **(self.model_kwargs if key in given else {})}
            elif key not in given:
                setattr(self, key, value)
        return self

    def given_options(self) -> set[str]:
        """The options given explicitly: those the command line named (``TrainConfig.given``, set by ``crunet
        train``), else those that differ from the defaults. Recorded on first use, so filling is repeatable."""
        if self.__dict__.get("_given") is None:
            unset = TrainConfig()
            self.__dict__["_given"] = {f.name for f in fields(self) if getattr(self, f.name) != getattr(unset, f.name)}
        return set(self.__dict__["_given"])

    @classmethod
    def given(cls, **options) -> TrainConfig:
        """A config of these options, remembered as the given ones (a recipe or a resumed run fills the rest,
        even where a given option equals its default: ``--recipe dsfb-cifar --nesterov``)."""
        cfg = cls(**options)
        cfg.__dict__["_given"] = set(options)
        return cfg

    def _fill_unset(self) -> TrainConfig:
        for key, value in {**UNSET_DEFAULTS, **self._preset_values()}.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        return self

    def _preset_values(self) -> dict:
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r} (unknown preset)")
        return PRESETS[self.preset] if self.preset else {}

    def check(self) -> None:
        """Every option checked up front (range, finiteness, choices): one ConfigError naming the option."""
        self._preset_values()
        self._check_recipe_options()
        choices = {"schedule": ("cosine", "step", "plateau", "constant"), "amp": ("none", "bf16", "fp16"),
                   "augment": tuple(AUGMENTS), "decode": tuple(DECODES), "progress": ("auto", "bar", "lines", "none"),
                   "cifar100_labels": ("fine", "coarse"), "init_method": ("svd", "data", "norm", "cru")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed and not (key in UNSET_DEFAULTS and getattr(self, key) is None):
                raise ConfigError(f"{_flag(key)} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        for key, low, high in RANGES:
            if not (key in UNSET_DEFAULTS and getattr(self, key) is None):  # None: the preset's or the default
                _check_number(key, getattr(self, key), low, high)
        if self.img_size is not None:
            _check_number("img_size", self.img_size, 8, 8192)
        if self.in_chans is not None:
            _check_number("in_chans", self.in_chans, 1, 64)
        if self.crops not in (1, 10):
            raise ConfigError(f"--crops must be 1 or 10, got {self.crops}")
        if not isinstance(self.step_epochs, (list, tuple)) or any(
                isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in self.step_epochs):
            raise ConfigError(f"--step-epochs must be epoch numbers >= 0, got {self.step_epochs!r}")
        if not isinstance(self.model_kwargs, dict):
            raise ConfigError(f"--model-kwargs must be a JSON object such as '{{\"orth_lambda\": 0}}', "
                              f"got {self.model_kwargs!r}")
        from crunet.train.checkpoint import parse_every

        parse_every(self.checkpoint_every)
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu", "cuda") or (
                self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def _check_recipe_options(self) -> None:
        if self.recipe is not None and self.preset is not None:
            raise ConfigError(f"--recipe {self.recipe} and --preset {self.preset}: give one (a recipe sets lr, weight "
                              "decay and schedule too; options given explicitly still win over it)")
        for key in ("mean", "std", "step_gammas"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, (list, tuple)) or not value or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf for v in value)):
                raise ConfigError(f"{_flag(key)} must be positive numbers, got {value!r}")
        if self.mean is not None and (len(self.mean) not in (1, 3) or len(self.std or self.mean) != len(self.mean)):
            raise ConfigError(f"--mean and --std take one value per channel (1 or 3, as many of each), got "
                              f"{self.mean!r} and {self.std!r}")
        if self.crop_pct is not None:
            _check_number("crop_pct", self.crop_pct, 0.0, 1.0)
        if self.step_gammas is not None and len(self.step_gammas) != len(self.step_epochs):
            raise ConfigError(f"--step-gammas {self.step_gammas} needs one factor per --step-epochs "
                              f"{self.step_epochs}: give both with as many values")
        if self.recipe is not None:
            from crunet.train.recipes import load

            load(self.recipe)

    def to_dict(self) -> dict:
        return asdict(self)

    def merged_for_resume(self, saved: dict) -> TrainConfig:
        """The resumed run's config: the checkpoint's, except the options given here that differ from the defaults
        (so ``--resume last.pt`` alone continues the same run; ``--epochs 200`` extends it). A ``--preset`` given
        here that differs from the run's fills the optimizer options not given here; an option given wins. The run's
        recipe is not applied again (its values are in the checkpoint's config); a different ``--recipe`` given here
        fills the options not given here."""
        given = self.given_options()
        merged = TrainConfig.from_dict(saved)
        for f in fields(self):
            if f.name in given or f.name not in saved:
                setattr(merged, f.name, getattr(self, f.name))
        if self.preset is not None and self.preset != saved.get("preset"):
            for key, value in self._preset_values().items():
                if getattr(self, key) is None:
                    setattr(merged, key, value)
        if self.recipe is not None and self.recipe != saved.get("recipe"):
            merged.__dict__["_given"] = given
            merged.apply_recipe()
        merged.resume, merged.out = self.resume, self.out
        return merged._fill_unset()

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# (option, lowest, highest) allowed; None: unbounded. Integers where the default is an integer.
RANGES = (
    ("epochs", 1, None), ("batch_size", 1, None), ("accum", 1, None), ("lr", 0.0, None), ("lr_ref_batch", 0, None),
    ("momentum", 0.0, 1.0), ("weight_decay", 0.0, None), ("warmup_epochs", 0.0, None), ("gamma", 0.0, 1.0),
    ("plateau_patience", 0, None), ("label_smoothing", 0.0, 1.0), ("ema_decay", 0.0, 1.0), ("clip_grad", 0.0, None),
    ("subset", 0, None), ("val_subset", 0, None), ("holdout", 0, None), ("pad", 0, 1024), ("workers", 0, 256),
    ("seed", 0, 2**63 - 1), ("log_every", 1, None), ("kd_temperature", 0.0, None), ("kd_weight", 0.0, 1.0),
    ("init_images", 1, None),
)
_OPEN_BELOW = {"lr", "gamma", "kd_temperature", "crop_pct"}  # must be > lowest
_OPEN_ABOVE = {"momentum", "label_smoothing", "ema_decay"}  # must be < highest


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _check_number(key: str, value, low, high) -> None:
    integer = isinstance(low, int) and not isinstance(low, bool)
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = ok and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if key in _OPEN_BELOW else value >= low
    if ok and high is not None:
        ok = value < high if key in _OPEN_ABOVE else value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if key in _OPEN_BELOW else '>='} {low}"
        hi = "" if high is None else f"{'<' if key in _OPEN_ABOVE else '<='} {high}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise ConfigError(f"{_flag(key)} must be {kind} {bounds}, got {value!r}")
