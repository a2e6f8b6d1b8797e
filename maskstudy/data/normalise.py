"""Turn raw arrays into normalised splits: float32 inputs standardised with training statistics."""

from __future__ import annotations

import numpy as np
import torch

from maskstudy.data.base import Split


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (dim 1) mean and population std of ``x``, shaped to broadcast against it."""
    dims = [d for d in range(x.dim()) if d != 1]
    std, mean = torch.std_mean(x, dim=dims, correction=0, keepdim=True)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def standardised_splits(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> tuple[Split, Split]:
    """Float32 inputs standardised per channel with the training set's mean/std; int64 labels."""
    train = torch.from_numpy(np.array(train_x, dtype=np.float32))
    test = torch.from_numpy(np.array(test_x, dtype=np.float32))
    mean, std = channel_stats(train)
    train.sub_(mean).div_(std)
    test.sub_(mean).div_(std)
    return (
        Split(train, torch.from_numpy(np.array(train_y, dtype=np.int64))),
        Split(test, torch.from_numpy(np.array(test_y, dtype=np.int64))),
    )
