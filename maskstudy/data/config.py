"""The ``data`` section of a run's config: which dataset, split and augmentation it trains on."""

from __future__ import annotations

from dataclasses import dataclass

from maskstudy.data.datasets import DATASETS
from maskstudy.fields import positive, registered


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist"
    val_size: int = 0  # training examples held out as a validation split
    augment: bool = False  # pad-4 crop + flip on training batches (CIFAR)
    synthetic_shape: tuple[int, ...] = (1, 8, 8)  # only for name = "synthetic"
    synthetic_classes: int = 10
    synthetic_size: int = 2048

    def __post_init__(self) -> None:
        registered(DATASETS, self.name, "data.name")
        positive(self.val_size, "data.val_size", zero_ok=True)
