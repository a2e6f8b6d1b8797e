"""Pruning: masks as plain dicts, the criteria registry, one-level ``prune``, torch interop.

Every module of this package is imported here, before anything reads the registry, so that each
criterion registers itself: a new criterion is one file in ``maskstudy/pruning/``.
"""

import importlib
import pkgutil

from maskstudy.masks import (
    Mask,
    apply_mask_,
    density,
    full_mask,
    layer_densities,
    prunable_names,
)
from maskstudy.pruning.criteria import CRITERIA, Criterion, drop_lowest, prune, prune_count
from maskstudy.pruning.drop import back_for_target, drop_step
from maskstudy.pruning.granularity import combined_select, kernel_select, window_select
from maskstudy.pruning.interop import (
    from_torch_prune,
    plain_state_dict,
    remove_torch_prune,
    to_torch_prune,
)
from maskstudy.pruning.pca import pca_prune
from maskstudy.pruning.saliency import saliency_prune

__all__ = [
    "CRITERIA",
    "Criterion",
    "Mask",
    "apply_mask_",
    "back_for_target",
    "combined_select",
    "density",
    "drop_lowest",
    "drop_step",
    "from_torch_prune",
    "full_mask",
    "kernel_select",
    "layer_densities",
    "pca_prune",
    "plain_state_dict",
    "prunable_names",
    "prune",
    "prune_count",
    "remove_torch_prune",
    "saliency_prune",
    "to_torch_prune",
    "window_select",
]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "config":  # config builds PruneConfig from the complete registry
        importlib.import_module(f"{__name__}.{_module.name}")
