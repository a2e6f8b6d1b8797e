"""Forward-pass cost of a (masked) model for one input, per layer, counted from its kept weights.

Liu et al. ("Rethinking the Value of Network Pruning", 2019) give Scratch-B the training budget
of the large model in FLOPs; for unstructured pruning they count the sparse model (their
``count_model_param_flops`` counts nonzero weights). Here every Linear/Conv layer costs

    conv:   kept weights × H_out × W_out     (× D_out for 3-d convolutions)
    linear: kept weights                      (× positions, for inputs with extra dimensions)

multiply-accumulates (MACs) for one input; a weight the mask does not cover counts as kept. In
the multiply + add convention (Rethinking's ``multiply_adds=True``) FLOPs are 2 × MACs, which
leaves every ratio unchanged. ``bias=True`` adds one addition per output element of each layer
with a bias, ``norm=True`` two per output element of each normalisation layer (scale and shift,
as Rethinking's ``bn_hook``). Activations and pooling are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from maskstudy.errors import ConfigError
from maskstudy.masks import PRUNABLE_MODULES, check_mask

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class LayerFlops:
    """One layer call: kept and total weights, output positions, masked and dense MACs."""

    layer: str  # the weight's state_dict key ("fc1.weight"), or the module name of a norm layer
    kind: str  # linear | conv | norm
    kept: int  # weights kept by the mask (0 for norm layers)
    weights: int  # weights of the layer (0 for norm layers)
    positions: int  # output positions each weight is applied at, for one input
    macs: int  # kept × positions, plus the bias / norm terms asked for
    dense: int  # the same with every weight kept


def layer_flops(
    model: nn.Module,
    input_shape: tuple[int, ...],
    mask: Mapping[str, torch.Tensor] | None = None,
    *,
    bias: bool = False,
    norm: bool = False,
) -> list[LayerFlops]:
    """Per layer call in forward order: the MACs of one input of ``input_shape`` (no batch dim).

    Output sizes come from forward hooks on one zero input, run in eval mode without gradients,
    so the model (BatchNorm statistics included) is left as it was.
    """
    mask = dict(mask or {})
    check_mask(mask, dict(model.named_parameters()))
    rows: list[LayerFlops] = []
    seen: set[str] = set()

    def hook(name: str):
        def record(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            rows.append(_row(name, module, output, mask, bias=bias, norm=norm))
            seen.add(rows[-1].layer)

        return record

    handles = [
        module.register_forward_hook(hook(name))
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_MODULES) or (norm and isinstance(module, NORMS))
    ]
    param = next(model.parameters())
    was_training = model.training
    try:
        model.train(False)
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    unused = sorted(set(mask) - seen)
    if unused:
        raise ConfigError(
            f"mask entries {', '.join(unused)} name no Linear/Conv layer of the forward pass; "
            "pass a mask of this model (keys as in model.state_dict())"
        )
    return rows


def _row(
    name: str,
    module: nn.Module,
    output: torch.Tensor,
    mask: Mapping[str, torch.Tensor],
    *,
    bias: bool,
    norm: bool,
) -> LayerFlops:
    """The LayerFlops of one hooked call (batch of one)."""
    if isinstance(module, NORMS):
        extra = 2 * output.numel() if norm else 0
        return LayerFlops(name, "norm", 0, 0, output.numel(), extra, extra)
    key = f"{name}.weight" if name else "weight"
    if isinstance(module, nn.Linear):
        kind, positions = "linear", output.numel() // module.out_features
    else:
        kind, positions = "conv", math.prod(output.shape[2:])  # output (1, C_out, *spatial)
    total = module.weight.numel()
    kept = int(mask[key].sum()) if key in mask else total
    extra = output.numel() if bias and module.bias is not None else 0
    dense = total * positions + extra
    return LayerFlops(key, kind, kept, total, positions, kept * positions + extra, dense)


def count_flops(
    model: nn.Module,
    input_shape: tuple[int, ...],
    mask: Mapping[str, torch.Tensor] | None = None,
    *,
    bias: bool = False,
    norm: bool = False,
) -> int:
    """MACs of one forward pass of one input, counting only the weights ``mask`` keeps."""
    return sum(r.macs for r in layer_flops(model, input_shape, mask, bias=bias, norm=norm))


def flops_table(
    model: nn.Module,
    input_shape: tuple[int, ...],
    mask: Mapping[str, torch.Tensor] | None = None,
    *,
    bias: bool = False,
    norm: bool = False,
) -> pd.DataFrame:
    """One row per layer call (``LayerFlops`` fields), plus each layer's share of the masked MACs
    and its dense/masked ratio; a final ``total`` row sums the counts."""
    rows = [vars(r) for r in layer_flops(model, input_shape, mask, bias=bias, norm=norm)]
    table = pd.DataFrame(rows, columns=list(LayerFlops.__dataclass_fields__))
    sums = table[["kept", "weights", "macs", "dense"]].sum()
    total = {"layer": "total", "kind": "", "positions": 0, **sums.to_dict()}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    all_macs = int(sums["macs"])
    table["share"] = table["macs"] / all_macs if all_macs else 0.0
    table["ratio"] = table["dense"] / table["macs"].where(table["macs"] > 0)
    return table
