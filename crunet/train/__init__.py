"""Training: the trainer, optimizer and schedule presets, EMA, checkpoints, distributed set-up, run directory."""

from crunet.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from crunet.train.config import PRESETS, TrainConfig
from crunet.train.ema import ModelEma
from crunet.train.steps import NonFiniteLossError
from crunet.train.trainer import TrainingInterrupted, train

__all__ = ["CheckpointError", "ModelEma", "NonFiniteLossError", "PRESETS", "TrainConfig", "TrainingInterrupted",
           "load_checkpoint", "save_checkpoint", "train"]
