"""Noise2Noise training of the cryo-CARE U-Net and its checkpoints."""

from .checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from .loop import TrainResult, train

__all__ = ["LoadedCheckpoint", "TrainResult", "load_checkpoint", "save_checkpoint", "train"]
