"""The run the torchrun worker scripts beside this file share (imported from the script's own folder)."""

from crunet.train import TrainConfig


def small_run(data: str, out: str, **changes) -> TrainConfig:
    """One short crunet_small epoch on 128 images, deterministic (no augmentation, no warm-up, no loader workers)."""
    settings = dict(model="crunet_small", data=data, out=out, epochs=1, batch_size=16, subset=128, val_subset=64,
                    augment="none", lr=0.05, warmup_epochs=0.0, progress="none", tensorboard=False, plot=False,
                    workers=0)
    return TrainConfig(**{**settings, **changes})
