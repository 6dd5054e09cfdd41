"""The trainer's numerics, pinned: a fixed-seed short CPU run of ``crunet train`` ends with final weights (last.pt)
bit-identical to the plain reference loop below, built from the library's own parts.

The reference loop is the specification of what one training step is; ``crunet.train`` may be restructured freely
as long as these tests pass bit for bit. CPU numerics differ between machines, so nothing here is a stored golden
value: both sides run on this machine, and the check is ``torch.equal`` on every tensor of the state dict (weights,
BN running statistics, ``num_batches_tracked``), never a tolerance.

What the reference fixes, in order:
  1. ``seed_everything(seed)``, then the model is created (its initialization draws from the global RNG);
  2. the training split opened as the trainer opens it (``data_spec`` of the model, ``open_split``; ``subset``);
  3. the model in channels_last (the trainer's default on the CPU), inputs made channels_last likewise;
  4. ``StepSampler(n, batch, seed=seed)`` batches per epoch; a batch's augmentation (flips + shifts) is seeded by
     (seed, epoch, its first index) inside the loader;
  5. SGD (nesterov, weight decay on >1-D tensors only) at ``scaled_lr``; ``LrSchedule`` (warm-up x cosine) set to the
     step's lr before the step;
  6. per step: zero grads, forward, ``cross_entropy(logits.float(), y, label_smoothing)`` + the sum of the model's
     ``extra_losses()`` (DSFB: its orthogonality term), backward, ``optimizer.step()``.
Validation between epochs, the shared-gradient probe and checkpoints must not change the weights.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crunet.data import StepSampler, open_split
from crunet.models import create_model
from crunet.train import TrainConfig, load_checkpoint, train
from crunet.train.inputs import data_spec
from crunet.train.optim import LrSchedule, build_optimizer, scaled_lr
from crunet.train.state import seed_everything

# tiny versions of a CRU-Net (shared factors) and a DSFB net (shared bases, orthogonality loss)
MODELS = {
    "crunet_small": {"stem_chs": 8, "stages": [
        {"depth": 1, "out_chs": 16, "width": 8, "groups": 2, "stride": 1},
        {"depth": 3, "out_chs": 32, "width": 8, "groups": None, "share_every": 3},
        {"depth": 3, "out_chs": 32, "width": 8, "groups": None, "share_every": 3}]},
    "dsfb_resnet32_s8u1": {"depths": [2, 2, 2], "widths": [8, 8, 16], "shared_rank": 4},
}


def make_cfg(fmnist, out, model: str, seed: int = 0) -> TrainConfig:
    """2 epochs of 4 steps of 16 images: warm-up (2 steps) then cosine, flips + shifts, label smoothing, nesterov,
    weight decay, the shared-gradient probe; plain CPU, no mid-epoch checkpoints."""
    return TrainConfig(model=model, model_kwargs=MODELS[model], data=str(fmnist), out=str(out), epochs=2,
                       batch_size=16, subset=64, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                       schedule="cosine", warmup_epochs=0.5, label_smoothing=0.1, augment="light", pad=2,
                       log_shared_grads=True, seed=seed, device="cpu", workers=0, checkpoint_every="0",
                       progress="none", tensorboard=False, plot=False)


def reference_run(cfg: TrainConfig) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[float]]:
    """The specification: (initial state dict, final state dict, the extra-loss values seen per step)."""
    seed_everything(cfg.seed)
    model = create_model(cfg.model, num_classes=10, in_chans=1, **cfg.model_kwargs)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    data = open_split(cfg.data, "train", data_spec(cfg, model)).subset(cfg.subset)
    model = model.to(memory_format=torch.channels_last)  # the trainer's CPU default (bits equal contiguous here)

    sampler = StepSampler(len(data), cfg.batch_size, seed=cfg.seed)
    lr = scaled_lr(cfg, sampler.global_batch)
    optimizer = build_optimizer(model, cfg, lr)
    schedule = LrSchedule(optimizer, lr, cfg.schedule, sampler.steps_per_epoch, cfg.epochs, cfg.warmup_epochs)

    step, extras_seen = 0, []
    for epoch in range(cfg.epochs):
        model.train()
        for x, y, _ in data.iterate(sampler.batches(epoch), epoch, train=True):
            schedule.set(step)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x.contiguous(memory_format=torch.channels_last))
            data_loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            extras = model.extra_losses() if hasattr(model, "extra_losses") else {}
            loss = data_loss + sum(extras.values())
            loss.backward()
            optimizer.step()
            extras_seen.append(sum(v.item() for v in extras.values()))
            step += 1
    assert step == cfg.epochs * 4
    return initial, model.state_dict(), extras_seen


def trainer_run(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    summary = train(cfg)
    assert summary["steps"] == cfg.epochs * 4
    return load_checkpoint(f"{cfg.out}/last.pt")["model"]


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors not bit-identical (dtype, shape and every value), and of any missing on either side."""
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def runs(fmnist, tmp_path_factory):
    """Trainer runs by (model, seed), each done once for the module."""
    done = {}

    def get(model: str, seed: int = 0) -> dict[str, torch.Tensor]:
        if (model, seed) not in done:
            out = tmp_path_factory.mktemp(f"{model}-seed{seed}") / "run"
            done[model, seed] = trainer_run(make_cfg(fmnist, out, model, seed))
        return done[model, seed]

    return get


@pytest.mark.parametrize("model", list(MODELS))
def test_trainer_equals_the_reference_loop_bit_for_bit(model, runs, fmnist, tmp_path):
    initial, expected, extras = reference_run(make_cfg(fmnist, tmp_path / "unused", model))
    got = runs(model)
    assert not differing(got, expected), f"not bit-identical to the reference loop: {differing(got, expected)}"
    # the run did something: the weights moved, and a DSFB net's orthogonality term was in the loss
    assert differing(initial, expected)
    if model.startswith("dsfb"):
        assert all(e > 0 for e in extras)


def test_the_same_seed_twice_gives_identical_weights(runs, fmnist, tmp_path):
    again = trainer_run(make_cfg(fmnist, tmp_path / "run", "crunet_small"))
    assert not differing(runs("crunet_small"), again)


def test_a_different_seed_gives_different_weights(runs, fmnist, tmp_path):
    """So the equality above can fail: the seed reaches the weights (initialization, order, augmentation)."""
    seed0, seed1 = runs("crunet_small", 0), runs("crunet_small", 1)
    changed = differing(seed0, seed1)
    assert len(changed) > len(seed0) // 2, changed
    _, reference1, _ = reference_run(make_cfg(fmnist, tmp_path / "unused", "crunet_small", seed=1))
    assert not differing(seed1, reference1) and differing(seed0, reference1)
