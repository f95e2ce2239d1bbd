"""Noise2Noise training of the cryo-CARE U-Net and its checkpoints."""

from .checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from .fit import train
from .result import TrainResult

__all__ = ["LoadedCheckpoint", "TrainResult", "load_checkpoint", "save_checkpoint", "train"]
