"""The one training loop (:mod:`.loop`), its batches, logging and checkpoints."""

from .loop import Trainer, TrainResult, train

__all__ = ["Trainer", "TrainResult", "train"]
