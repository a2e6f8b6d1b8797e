"""Emergent structure in masks: entirely pruned filters, channels, kernels and units, read
against what a random mask with the same number of kept weights would give; and effective
sparsity (kept weights that no input→output path uses).

Chance model: a layer keeps K of its N weights uniformly at random, so a fixed group of g
weights is entirely pruned with probability C(N−g, K) / C(N, K), and the alive count of a
kernel is Hypergeometric(N, K, g). The structure index is observed fraction ÷ that
probability: ≫ 1 means pruning removed whole groups far more often than chance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from maskstudy.analysis.chance import alive_count_pmf, log_prob_all_pruned
from maskstudy.errors import ConfigError
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.table import config_columns

__all__ = [
    "conv_structure",
    "effective_mask",
    "effective_sparsity",
    "kernel_histogram",
    "layer_structure",
    "linear_structure",
    "structure_table",
    "unit_axes",
]

# Modules a feed-forward chain may hold besides Linear/Conv: they keep each channel or
# feature separate, so they neither connect nor disconnect units.
PASSTHROUGH = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
WHOLE = "all"


def _bool_array(mask: Any, what: str = "mask") -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.dtype != np.bool_:
        raise ConfigError(f"{what} has dtype {arr.dtype}; masks must be boolean (True = kept)")
    return arr


def _dead_rows(mask: np.ndarray, groups: dict[str, tuple[int, ...]]) -> list[dict[str, Any]]:
    """One row per unit kind: groups entirely pruned (reducing over ``axes``) vs chance."""
    total, kept = mask.size, int(mask.sum())
    rows = []
    for unit, axes in groups.items():
        dead = ~mask.any(axis=axes)
        size = total // dead.size
        log_p = float(log_prob_all_pruned(total, kept, size))
        expected = float(np.exp(log_p))
        fraction = float(dead.mean())
        rows.append({
            "unit": unit,
            "groups": dead.size,
            "group_size": size,
            "dead": int(dead.sum()),
            "fraction": fraction,
            "expected": expected,
            "log10_expected": log_p / np.log(10),
            "structure_index": _index(fraction, expected),
            "density": kept / total,
        })  # fmt: skip
    return rows


def unit_axes(mask: np.ndarray) -> dict[str, tuple[int, ...]]:
    """The axes each kind of unit of a layer mask reduces over: a conv mask (out, in, *kernel)
    has filters, input channels and kernels; a Linear mask (out, in) units and inputs."""
    if mask.ndim == 2:
        return {"unit": (1,), "input": (0,)}
    kernel = tuple(range(2, mask.ndim))
    return {"filter": (1, *kernel), "channel": (0, *kernel), "kernel": kernel}


def _index(fraction: float, expected: float) -> float:
    """fraction / expected; inf if chance underflows to 0 (< 1e-308) but groups are dead,
    nan if no group can be dead by chance (then none is)."""
    if expected > 0:
        return fraction / expected
    return float("inf") if fraction > 0 else float("nan")


def conv_structure(mask: Any) -> pd.DataFrame:
    """Fractions of entirely pruned filters (dim 0), input channels (dim 1) and kernels
    ((o, i) slices) of a conv mask (out, in, *kernel), each beside its chance expectation.

    Columns: unit, groups, group_size, dead, fraction, expected, log10_expected,
    structure_index (= fraction / expected; inf when chance underflows float64, nan when chance and
    observation are both impossible), density.
    """
    m = _bool_array(mask)
    if m.ndim < 3:
        raise ConfigError(
            f"conv_structure needs a conv mask (out, in, *kernel); got shape {m.shape}: "
            "use linear_structure for Linear weights"
        )
    return pd.DataFrame(_dead_rows(m, unit_axes(m)))


def linear_structure(mask: Any) -> pd.DataFrame:
    """Dead units (output rows entirely pruned) and dead inputs (input columns entirely
    pruned) of a Linear mask (out, in), beside chance; columns as :func:`conv_structure`."""
    m = _bool_array(mask)
    if m.ndim != 2:
        raise ConfigError(
            f"linear_structure needs a Linear mask (out, in); got shape {m.shape}: "
            "use conv_structure for conv weights"
        )
    return pd.DataFrame(_dead_rows(m, unit_axes(m)))


def layer_structure(mask: Any) -> pd.DataFrame:
    """:func:`linear_structure` for 2-D masks, :func:`conv_structure` for conv masks."""
    ndim = _bool_array(mask).ndim
    return linear_structure(mask) if ndim == 2 else conv_structure(mask)


def kernel_histogram(mask: Any) -> pd.DataFrame:
    """How many kernels have 0..kh·kw weights alive, beside the Hypergeometric expectation.

    Structure shows as a bimodal histogram (0 and kh·kw) instead of the chance shape.
    Columns: alive, kernels, fraction, expected (kernels), expected_fraction.
    """
    m = _bool_array(mask)
    if m.ndim < 3:
        raise ConfigError(f"kernel_histogram needs a conv mask (out, in, *kernel); got {m.shape}")
    size = int(np.prod(m.shape[2:]))
    alive = m.reshape(-1, size).sum(axis=1)
    counts = np.bincount(alive, minlength=size + 1)
    chance = alive_count_pmf(m.size, int(m.sum()), size)
    return pd.DataFrame({
        "alive": np.arange(size + 1),
        "kernels": counts,
        "fraction": counts / len(alive),
        "expected": chance * len(alive),
        "expected_fraction": chance,
    })  # fmt: skip


# --- effective sparsity ---------------------------------------------------------------------
def _chain(model: nn.Module) -> list[tuple[str, nn.Module | None]]:
    """(weight name, module) per Linear/Conv of a sequential model, (name, None) per Flatten."""
    if not isinstance(model, nn.Sequential):
        raise ConfigError(
            f"effective sparsity follows nn.Sequential chains only (lenet*, conv*, vgg*); "
            f"{type(model).__name__} is not one. ResNets are not supported: their residual "
            "connections keep units alive that the chain analysis would call dead"
        )
    chain: list[tuple[str, nn.Module | None]] = []
    for name, module in model.named_children():
        if isinstance(module, WEIGHTED):
            if getattr(module, "groups", 1) != 1:
                raise ConfigError(f"layer {name!r} is a grouped conv; only groups=1 is supported")
            chain.append((f"{name}.weight", module))
        elif isinstance(module, nn.Flatten):
            chain.append((name, None))
        elif not isinstance(module, PASSTHROUGH):
            raise ConfigError(
                f"layer {name!r} ({type(module).__name__}) is not supported in an effective-"
                "sparsity chain; supported: Linear, Conv, Flatten and elementwise/channelwise "
                "layers (activations, pooling, BatchNorm, Dropout)"
            )
    if not any(module is not None for _, module in chain):
        raise ConfigError("the model has no Linear/Conv layer; nothing to analyse")
    return chain


def _expand(alive: np.ndarray, width: int, flattened: bool, where: str) -> np.ndarray:
    """Units of one layer's output as the next layer's ``width`` inputs (a flattened channel
    spans width / channels consecutive features)."""
    if len(alive) == width:
        return alive
    if flattened and width % len(alive) == 0:
        return np.repeat(alive, width // len(alive))
    raise ConfigError(
        f"{where}: {len(alive)} units feed {width} inputs; the layers do not form a chain"
    )


def _collapse(alive: np.ndarray, units: int, flattened: bool, where: str) -> np.ndarray:
    """The inverse of :func:`_expand`: a channel is alive if any of its features is."""
    if len(alive) == units:
        return alive
    if flattened and len(alive) % units == 0:
        return alive.reshape(units, -1).any(axis=1)
    raise ConfigError(f"{where}: {units} units feed {len(alive)} inputs; the layers do not chain")


def effective_mask(mask: Mapping[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """The kept weights that lie on some input→output path through kept weights.

    Equivalent to removing, until nothing changes, every kept weight whose input unit has no
    kept incoming weight or whose output unit has no kept outgoing weight (Vysogorets & Kempe);
    computed exactly with one forward and one backward reachability sweep. Units are
    neurons and conv channels (spatial positions are not tracked, so this never calls a
    connected weight dead); after Flatten a channel owns its block of consecutive features.
    Biases and BatchNorm shifts are ignored: a dead unit passes a constant, not the input.
    Layers of the chain missing from ``mask`` count as dense; only ``mask``'s entries are
    returned. Sequential models only (see :func:`_chain`).
    """
    params = dict(model.named_parameters())
    chain = _chain(model)
    links = []  # (name, mask array, connectivity out×in, flattened before this layer)
    flattened = False
    for name, module in chain:
        if module is None:
            flattened = True
            continue
        shape = tuple(params[name].shape)
        m = _bool_array(mask[name], f"mask[{name!r}]") if name in mask else np.ones(shape, bool)
        if m.shape != shape:
            raise ConfigError(f"mask[{name!r}] has shape {m.shape}, the weight {shape}")
        links.append((name, m, m.reshape(shape[0], shape[1], -1).any(axis=2), flattened))
        flattened = False
    reach_in = []  # per layer: inputs reachable from the network input
    reach: np.ndarray | None = None
    for name, _, conn, flat in links:
        r = (
            np.ones(conn.shape[1], bool)
            if reach is None
            else _expand(reach, conn.shape[1], flat, name)
        )
        reach_in.append(r)
        reach = (conn & r[None, :]).any(axis=1)
    live_out: list[np.ndarray] = [np.empty(0, bool)] * len(links)  # outputs reaching the output
    live: np.ndarray | None = None
    for index in range(len(links) - 1, -1, -1):
        name, _, conn, _ = links[index]
        flat_next = index + 1 < len(links) and links[index + 1][3]
        c = (
            np.ones(conn.shape[0], bool)
            if live is None
            else _collapse(live, conn.shape[0], flat_next, name)
        )
        live_out[index] = c
        live = (conn & c[:, None]).any(axis=0)
    out = {}
    for (name, m, conn, _), r, c in zip(links, reach_in, live_out, strict=True):
        if name in mask:
            keep = (c[:, None] & r[None, :]).reshape(conn.shape + (1,) * (m.ndim - 2))
            out[name] = torch.from_numpy(m & keep)
    return out


def effective_sparsity(mask: Mapping[str, Any], model: nn.Module) -> pd.DataFrame:
    """Nominal vs effective density per mask entry and for the whole network (``'all'``).

    Columns: layer, weights, kept, effective_kept, density, effective_density; see
    :func:`effective_mask` for what counts as effective and which models are supported.
    """
    effective = effective_mask(mask, model)
    rows = []
    for name, eff in effective.items():
        m = _bool_array(mask[name])
        rows.append(
            {
                "layer": name,
                "weights": m.size,
                "kept": int(m.sum()),
                "effective_kept": int(eff.sum()),
            }
        )
    frame = pd.DataFrame(rows)
    total = frame[["weights", "kept", "effective_kept"]].sum()
    frame.loc[len(frame)] = {"layer": WHOLE, **total.to_dict()}
    frame["density"] = frame["kept"] / frame["weights"]
    frame["effective_density"] = frame["effective_kept"] / frame["weights"]
    return frame


# --- tables over runs -----------------------------------------------------------------------
def structure_table(runs: Iterable[RunLike], levels: Iterable[int] | None = None) -> pd.DataFrame:
    """Tidy structure table over (run, level, layer, unit): :func:`layer_structure` rows plus
    the run id and the config columns (model, dataset, criterion, scope, regime, seed, ...)."""
    wanted = None if levels is None else set(levels)
    frames = []
    for run in runs:
        ids = config_columns(run)
        for level in run.levels:
            if wanted is not None and level not in wanted:
                continue
            for layer, m in run.mask(level).items():
                frame = layer_structure(m)
                frame.insert(0, "layer", layer)
                frame.insert(0, "level", level)
                frame.insert(0, "run_id", ids["run_id"])
                for col, value in ids.items():
                    frame[col] = value
                frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
