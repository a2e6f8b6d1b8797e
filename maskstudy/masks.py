"""Masks are plain ``dict[str, torch.BoolTensor]`` keyed like ``model.state_dict()``; True = kept."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from maskstudy.errors import ConfigError

Mask = dict[str, torch.Tensor]

PRUNABLE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the weights of every Linear/Conv module (never biases or norm layers)."""
    return [
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_MODULES)
    ]


def full_mask(model: nn.Module, exclude: tuple[str, ...] = ()) -> Mask:
    """An all-True mask over the prunable weights of ``model`` minus ``exclude``."""
    params = dict(model.named_parameters())
    return {
        name: torch.ones_like(params[name], dtype=torch.bool)
        for name in prunable_names(model)
        if name not in exclude
    }


def check_mask(mask: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]) -> None:
    """Raise ConfigError unless every mask entry is a bool tensor shaped like its weight."""
    for name, m in mask.items():
        if name not in weights:
            raise ConfigError(
                f"mask entry {name!r} names no parameter of the model; "
                f"parameters: {', '.join(sorted(weights))}"
            )
        if m.dtype != torch.bool:
            raise ConfigError(f"mask entry {name!r} has dtype {m.dtype}; masks must be torch.bool")
        if tuple(m.shape) != tuple(weights[name].shape):
            raise ConfigError(
                f"mask entry {name!r} has shape {tuple(m.shape)} but the weight has shape "
                f"{tuple(weights[name].shape)}: the mask belongs to another model"
            )


@torch.no_grad()
def apply_mask_(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Set the pruned weights of ``model`` to +0.0 in place (a fused multiply, then + 0.0, which
    turns the −0.0 that negative weights times 0 give into +0.0 and leaves every other value as
    it is). +0.0 stays +0.0 under masked SGD and Adam steps, so a level's pruned weights are
    all +0.0 and its weight file stores the kept values only (files.pack_weights)."""
    params = dict(model.named_parameters())
    check_mask(mask, params)
    names = list(mask)
    if names:
        tensors = [params[n] for n in names]
        torch._foreach_mul_(tensors, [mask[n].to(params[n].dtype) for n in names])
        torch._foreach_add_(tensors, 0.0)


def kept_total(mask: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(kept, total) weight counts over all entries of ``mask``."""
    kept = sum(int(m.sum()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    return kept, total


def density(mask: Mapping[str, torch.Tensor]) -> float:
    """Fraction of masked weights that are kept (1.0 for an empty mask)."""
    kept, total = kept_total(mask)
    return kept / total if total else 1.0


def layer_densities(mask: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Kept fraction per mask entry."""
    return {name: float(m.float().mean()) for name, m in mask.items()}
