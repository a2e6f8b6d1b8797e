"""In-memory datasets: tensors on the training device, batches as index slices, batched augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Split:
    """One split of a dataset: normalised float inputs ``x`` (N, *shape) and int64 labels ``y``."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"split has {len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.x[index], self.y[index])


@dataclass
class Data:
    """A dataset ready to train on: splits on one device plus what models need to know."""

    name: str
    train: Split
    test: Split
    num_classes: int
    val: Split | None = None
    augment: bool = False  # CIFAR-style pad-4 random crop + horizontal flip on training batches

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.train.x.device

    def to(self, device: torch.device | str) -> Data:
        val = self.val.to(device) if self.val is not None else None
        return Data(
            self.name,
            self.train.to(device),
            self.test.to(device),
            self.num_classes,
            val,
            self.augment,
        )


def hold_out(train: Split, val_size: int, seed: int = 0) -> tuple[Split, Split]:
    """Split ``val_size`` random examples off ``train`` (fixed by ``seed``) as a validation set."""
    if not 0 < val_size < len(train):
        raise ValueError(f"val_size must be in (0, {len(train)}), got {val_size}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    order = order.to(train.x.device)
    return train.subset(order[val_size:]), train.subset(order[:val_size])


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device``; to a GPU from pinned memory without blocking, so the host does
    not wait for the device's queued work (a pageable copy would)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Pad-and-random-crop plus random horizontal flip of a batch (B, C, H, W), in one batched op."""
    b, _, h, w = x.shape
    shifts = to_device(torch.randint(0, 2 * pad + 1, (2, b), generator=generator), x.device)
    flips = to_device(torch.rand(b, generator=generator), x.device) < 0.5
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = shifts[0][:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = shifts[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()
