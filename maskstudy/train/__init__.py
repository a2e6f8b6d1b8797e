"""Training: the loop (exact masks, resumable data order, evaluation), optimizers, schedules."""

from maskstudy.train.loop import (
    Diverged,
    TrainResult,
    cpu_threads,
    evaluate,
    evaluate_replicas,
    iterations_per_epoch,
    train,
    train_replicas,
    training_batches,
)
from maskstudy.train.optim import build_optimizer, lr_factor
from maskstudy.train.plan import TrainPlan
from maskstudy.train.replicas import Replicas, replica_net

__all__ = [
    "Diverged",
    "TrainPlan",
    "TrainResult",
    "build_optimizer",
    "cpu_threads",
    "Replicas",
    "evaluate",
    "evaluate_replicas",
    "iterations_per_epoch",
    "lr_factor",
    "replica_net",
    "train",
    "train_replicas",
    "training_batches",
]
