"""A learnable synthetic dataset of any input shape: class-conditional Gaussians."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from maskstudy.data.base import Split
from maskstudy.data.normalise import standardised_splits
from maskstudy.errors import ConfigError


def load_synthetic(
    root: Path,
    *,
    shape: tuple[int, ...] = (1, 8, 8),
    classes: int = 10,
    size: int = 2048,
    data_seed: int = 0,
    separation: float = 4.0,
) -> tuple[Split, Split, int]:
    """``size`` train and ``size // 4`` test inputs: unit Gaussian noise around per-class means.

    Each class mean is a random direction scaled to length ``separation``; with the default 4.0
    and many input dimensions the classes are ~5.7 noise deviations apart, so a small net learns
    them far above chance. Everything is fixed by ``data_seed``; ``root`` is unused.
    """
    shape = _check_shape(shape)
    _check_int(classes, "classes", 2)
    _check_int(size, "size", max(classes, 4))
    _check_int(data_seed, "data_seed", 0)
    if isinstance(separation, bool) or not isinstance(separation, (int, float)) or separation <= 0:
        raise ConfigError(f"synthetic option separation = {separation!r} must be a number > 0")

    generator = torch.Generator().manual_seed(data_seed)
    means = torch.randn(classes, math.prod(shape), generator=generator)
    means *= separation / means.norm(dim=1, keepdim=True)

    def draw(n: int) -> tuple[Any, Any]:
        y = torch.randperm(n, generator=generator) % classes  # balanced classes, shuffled
        x = means[y] + torch.randn(n, means.shape[1], generator=generator)
        return x.reshape(n, *shape).numpy(), y.numpy()

    train_x, train_y = draw(size)
    test_x, test_y = draw(size // 4)
    return (*standardised_splits(train_x, train_y, test_x, test_y), classes)


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"synthetic option {name} = {value!r} must be an integer >= {minimum}")


def _check_shape(shape: Any) -> tuple[int, ...]:
    ok = isinstance(shape, (tuple, list)) and len(shape) > 0
    if not ok or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ConfigError(
            f"synthetic option shape = {shape!r} must be a non-empty list of positive integers, "
            "e.g. [1, 8, 8]"
        )
    return tuple(shape)
