"""Knowledge distillation (Hinton et al. 2015): a frozen teacher's soft targets mixed into the label loss.

loss = (1 - w) * label loss + w * KL(softmax(teacher / T) || softmax(student / T)) * T^2

The teacher is any crunet training checkpoint or crunet safetensors file for the same classes. It runs in eval mode
without gradients, on the student's (augmented) batch, on the training device, under the same autocast. It is
never part of the student: not in the optimizer, the EMA or the checkpoints; a resumed run reads it again from
``--teacher`` (its config keeps the path), and in eval mode it computes the same logits, so resume stays exact.

Both networks see the same raw batch. The data pipeline normalizes it with the student's mean and std; a teacher
trained with another normalization gets the batch re-normalized to its own (a per-channel affine map), so it sees
what it saw in training.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crunet.errors import ConfigError, FileFormatError, MissingFileError
from crunet.io.checkpoint import checkpoint_weights, load_checkpoint, load_model_state, model_kwargs
from crunet.io.normalization import config_normalization, parse_normalization
from crunet.io.safetensors_file import is_safetensors

SAFETENSORS_FORMAT = "crunet-weights-v1"  # what crunet.interop.weights writes (interop is this tier's sibling)


class Teacher(nn.Module):
    """A frozen classifier that answers the student's batches: re-normalized to its own mean and std, no grad,
    always in eval mode (``train()`` does not switch it)."""

    def __init__(self, model: nn.Module, scale: Tensor | None = None, shift: Tensor | None = None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if self.scale is not None:
            x = x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
        return self.model(x)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) * T^2, averaged over the batch, in float32."""
    t = float(temperature)
    student = F.log_softmax(student_logits.float() / t, dim=1)
    teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * (t * t)


def distill_terms(teacher: Teacher, x: Tensor, logits: Tensor, temperature: float, weight: float
                  ) -> tuple[float, dict[str, Tensor]]:
    """The label loss's weight (1 - w) and the soft term, already weighted, as ``loss_kd`` (a metrics.csv column)."""
    return 1.0 - weight, {"loss_kd": weight * kd_loss(logits, teacher(x), temperature)}


def load_teacher(path: str, num_classes: int, in_chans: int, mean: tuple[float, ...], std: tuple[float, ...],
                 classes: list[str] | None = None) -> Teacher:
    """The teacher in ``path`` (a crunet checkpoint or safetensors file), for a student with ``num_classes`` classes
    (named ``classes`` when known) and ``in_chans`` channels, fed batches normalized with ``mean`` and ``std``.
    Refuses, in one line, a missing file, a file that is neither, and a teacher of other classes or channels."""
    source = Path(path)
    if not source.is_file():
        raise MissingFileError(f"--teacher {path} does not exist: give a crunet checkpoint (RUN_DIR/best.pt) or "
                               f"a safetensors file written by crunet export")
    name, kwargs, state, names, norm = _read(source)
    from crunet.models import create_model

    got = int(kwargs.get("num_classes", -1))
    if got != num_classes or (classes and names and list(names) != list(classes)):
        what = f"{got} classes" if got != num_classes else f"the classes {', '.join(names[:3])} ..."
        raise ConfigError(f"--teacher {path} predicts {what} but the data has {num_classes} "
                          f"({', '.join((classes or [])[:3])} ...): distil from a teacher trained on the same classes")
    if int(kwargs.get("in_chans", in_chans)) != in_chans:
        raise ConfigError(f"--teacher {path} takes {kwargs['in_chans']} input channels but the data has {in_chans}")
    with torch.random.fork_rng(devices=[]):  # its random init, overwritten at once, must not move the run's RNG
        model = create_model(name, **kwargs)
    load_model_state(model, state, str(source), name)
    own = {**model.pretrained_cfg, **norm}
    return Teacher(model, *_renormalization(mean, std, tuple(own["mean"]), tuple(own["std"]), in_chans))


def _renormalization(mean, std, t_mean, t_std, chans: int) -> tuple[Tensor | None, Tensor | None]:
    """(scale, shift) taking the student's normalized input to the teacher's; (None, None) when they agree."""
    m, s = torch.tensor(mean[:chans]), torch.tensor(std[:chans])
    tm, ts = torch.tensor(t_mean[:chans]), torch.tensor(t_std[:chans])
    if torch.equal(m, tm) and torch.equal(s, ts):
        return None, None
    return (s / ts).view(1, -1, 1, 1), ((m - tm) / ts).view(1, -1, 1, 1)


def _read(path: Path) -> tuple[str, dict, dict, list[str] | None, dict]:
    """(model name, create_model keywords, weights, class names, the run's own normalization: empty when it used
    the model's pretrained_cfg)."""
    if is_safetensors(path):
        return _read_safetensors(path)
    ckpt = load_checkpoint(path)
    return (ckpt["model_name"], model_kwargs(ckpt), checkpoint_weights(ckpt, path), ckpt.get("classes"),
            config_normalization(ckpt.get("config")))


def _read_safetensors(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta, state = dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # SafetensorError, OSError, and whatever else a hostile header provokes
        raise FileFormatError(f"--teacher {path} is not a safetensors file: {' '.join(str(err).split())[:200]}") \
            from None
    if meta.get("format") != SAFETENSORS_FORMAT or not meta.get("model"):
        raise FileFormatError(f"--teacher {path} was not written by crunet (no model name in its metadata): "
                              f"export it with crunet export")
    kwargs = {k: int(meta[k]) for k in ("num_classes", "in_chans") if meta.get(k, "").isdigit()}
    try:
        kwargs.update(json.loads(meta.get("model_kwargs") or "{}"))
        names = json.loads(meta.get("classes") or "null")
    except json.JSONDecodeError as err:
        raise FileFormatError(f"--teacher {path}: its metadata is not JSON ({err})") from None
    try:
        norm = parse_normalization(meta.get("normalization"))
    except ValueError as err:
        raise FileFormatError(f"--teacher {path}: its normalization metadata {err}") from None
    return meta["model"], kwargs, state, names, norm
