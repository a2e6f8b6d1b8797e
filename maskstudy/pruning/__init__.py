"""Pruning: masks as plain dicts, the criteria registry, one-level ``prune``, torch interop."""

from maskstudy.pruning.criteria import CRITERIA, Criterion, prune, prune_count
from maskstudy.pruning.interop import (
    from_torch_prune,
    plain_state_dict,
    remove_torch_prune,
    to_torch_prune,
)
from maskstudy.pruning.masks import (
    Mask,
    apply_mask_,
    density,
    full_mask,
    layer_densities,
    prunable_names,
)

__all__ = [
    "CRITERIA",
    "Criterion",
    "Mask",
    "apply_mask_",
    "density",
    "from_torch_prune",
    "full_mask",
    "layer_densities",
    "plain_state_dict",
    "prunable_names",
    "prune",
    "prune_count",
    "remove_torch_prune",
    "to_torch_prune",
]
