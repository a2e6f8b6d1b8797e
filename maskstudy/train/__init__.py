"""Training: the loop (exact masks, resumable data order, evaluation), optimizers, schedules."""

from maskstudy.train.loop import (
    Diverged,
    TrainResult,
    evaluate,
    iterations_per_epoch,
    train,
    training_batches,
)
from maskstudy.train.optim import build_optimizer, lr_factor

__all__ = [
    "Diverged",
    "TrainResult",
    "build_optimizer",
    "evaluate",
    "iterations_per_epoch",
    "lr_factor",
    "train",
    "training_batches",
]
