"""Models: the registry of architectures (zoo.py), their initialisation and FLOPs counting."""

from __future__ import annotations

from maskstudy.models.flops import LayerFlops, count_flops, flops_table, layer_flops
from maskstudy.models.zoo import MODELS, build, build_meta, prunable_weight_count

__all__ = [
    "MODELS",
    "LayerFlops",
    "build",
    "build_meta",
    "count_flops",
    "flops_table",
    "layer_flops",
    "prunable_weight_count",
]
