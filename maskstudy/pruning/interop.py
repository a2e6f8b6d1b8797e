"""Both ways between maskstudy masks and torch.nn.utils.prune's ``<name>_orig``/``<name>_mask``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from maskstudy.errors import ConfigError
from maskstudy.masks import Mask

MASK_SUFFIX, ORIG_SUFFIX = "_mask", "_orig"


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding tensor ``name`` ('fc1.weight') and the tensor's local name."""
    module_name, _, local = name.rpartition(".")
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        module = None
    if module is None or not hasattr(module, local):
        raise ConfigError(
            f"mask entry {name!r} names no tensor of the model; check the mask belongs to it"
        )
    return module, local


@torch.no_grad()
def to_torch_prune(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> nn.Module:
    """Attach ``mask`` to ``model`` with torch.nn.utils.prune (``custom_from_mask``), in place.

    A tensor already pruned by torch gets its ``_mask`` buffer replaced by ``mask`` (not
    combined with it), so the model ends up masked exactly as the maskstudy mask says.
    """
    for name, m in mask.items():
        module, local = _owner(model, name)
        current = getattr(module, local)
        if tuple(m.shape) != tuple(current.shape):
            raise ConfigError(
                f"mask entry {name!r} has shape {tuple(m.shape)}, the model's tensor {tuple(current.shape)}"
            )
        existing = getattr(module, local + MASK_SUFFIX, None)
        if existing is None:
            torch_prune.custom_from_mask(module, local, m.to(current.device))
        else:
            existing.copy_(m)
            setattr(module, local, getattr(module, local + ORIG_SUFFIX) * existing)
    return model


def _pruned_tensors(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(full name, module, local name) of every tensor torch.nn.utils.prune has reparametrised."""
    found = []
    for module_name, module in model.named_modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod):
                local = hook._tensor_name
                found.append((f"{module_name}.{local}" if module_name else local, module, local))
    return found


def from_torch_prune(model: nn.Module) -> Mask:
    """The masks of a model pruned with torch.nn.utils.prune, keyed by the plain tensor name."""
    return {
        name: getattr(module, local + MASK_SUFFIX).detach().bool().clone()
        for name, module, local in _pruned_tensors(model)
    }


def remove_torch_prune(model: nn.Module) -> Mask:
    """Make the pruning of ``model`` permanent (plain parameters with zeros); return its mask."""
    mask = from_torch_prune(model)
    for _, module, local in _pruned_tensors(model):
        torch_prune.remove(module, local)
    return mask


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with torch-pruned tensors as ``<name>`` = orig × mask.

    The keys are those of the unpruned model, so the result loads into a fresh instance and
    pairs with ``from_torch_prune(model)``; the model itself is left untouched.
    """
    pruned = {name for name, _, _ in _pruned_tensors(model)}
    state = model.state_dict()
    out = {}
    for key, value in state.items():
        if key.endswith(MASK_SUFFIX) and key[: -len(MASK_SUFFIX)] in pruned:
            continue
        if key.endswith(ORIG_SUFFIX) and key[: -len(ORIG_SUFFIX)] in pruned:
            name = key[: -len(ORIG_SUFFIX)]
            out[name] = (value * state[name + MASK_SUFFIX]).detach().clone()
        else:
            out[key] = value
    return out
