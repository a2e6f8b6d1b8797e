"""Weight stability across pruning levels (S1–S3, docs/methods.md#weight-stability-analysisstability): how far the surviving
weights of a sub-network land from the dense solution, how much consecutive levels agree,
and which weights move during training; plus one tidy table over stored runs.

Every function takes weights and masks either as single tensors/arrays or as dicts keyed like
``model.state_dict()`` (torch tensors or numpy arrays); a dict is measured over all its mask
entries together. Only the weights a mask keeps (True) take part. Numbers are float64.
The linear-mode-connectivity barrier (S4) lives in :mod:`maskstudy.analysis.lmc`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import torch

from maskstudy.errors import ConfigError
from maskstudy.runs.store import WEIGHT_FILES, Run
from maskstudy.runs.table import config_columns

__all__ = ["cross_level", "mask_persistence", "movement", "stability_table", "stability_to_pruning"]

Array = torch.Tensor | np.ndarray
Weights = Array | Mapping[str, Array]
MaskLike = Array | Mapping[str, Array]

WHOLE = "all"  # layer name of the whole-network row
NAN = float("nan")


# --- inputs ---------------------------------------------------------------------------------
def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _mask_parts(mask: MaskLike, what: str = "mask") -> dict[str, np.ndarray]:
    """The mask as {entry: numpy bool array}; a single tensor/array is one entry ``'all'``."""
    parts = dict(mask) if isinstance(mask, Mapping) else {WHOLE: mask}
    out = {}
    for name, m in parts.items():
        arr = _numpy(m)
        if arr.dtype != np.bool_:
            where = "" if name == WHOLE else f" entry {name!r}"
            raise ConfigError(
                f"{what}{where} has dtype {arr.dtype}; masks must be boolean (True = kept): "
                "pass `x != 0` or `x.bool()`"
            )
        out[name] = arr
    return out


def _kept_values(weights: Weights, mask: Mapping[str, np.ndarray], what: str) -> np.ndarray:
    """The weights kept by ``mask``, every entry flattened and concatenated, as float64."""
    single = list(mask) == [WHOLE] and not isinstance(weights, Mapping)
    if not single and not isinstance(weights, Mapping):
        raise ConfigError(
            f"{what} is a single tensor but the mask is a dict; pass a dict of weights too"
        )
    if isinstance(weights, Mapping) and list(mask) == [WHOLE] and WHOLE not in weights:
        raise ConfigError(
            f"{what} is a dict but the mask is a single tensor; pass one tensor "
            "(weights[name]) with its mask, or a mask dict"
        )
    if isinstance(weights, Mapping):
        missing = sorted(set(mask) - set(weights))
        if missing:
            raise ConfigError(
                f"{what} has no entry for mask entries {missing}; pass the full state dict "
                f"(it has: {', '.join(sorted(weights)) or 'nothing'})"
            )
    values = []
    for name, m in mask.items():
        w = _numpy(weights if single else weights[name])
        if w.shape != m.shape:
            where = "" if single else f" entry {name!r}"
            raise ConfigError(
                f"{what}{where} has shape {w.shape} but its mask has {m.shape}: "
                "weights and mask must come from the same model"
            )
        values.append(w[m].astype(np.float64))
    return np.concatenate(values) if values else np.zeros(0)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else NAN


# --- S1 -------------------------------------------------------------------------------------
def stability_to_pruning(sub: Weights, dense: Weights, init: Weights, mask: MaskLike) -> float:
    """S1: ‖M⊙(W_sub − W_dense)‖₂ / ‖M⊙(W_dense − θ_init)‖₂, the distance between the
    sub-network's trained weights and the dense ones, per unit of distance the dense weights
    travelled from the sub-network's start point ``init`` (θk for a run rewinding to step k,
    θ0 for k = 0). 0 = pruning left the surviving weights' solution unchanged; nan if the dense
    weights did not move on ``mask``."""
    m = _mask_parts(mask)
    w_sub = _kept_values(sub, m, "sub")
    w_dense = _kept_values(dense, m, "dense")
    w_init = _kept_values(init, m, "init")
    return _ratio(float(np.linalg.norm(w_sub - w_dense)), float(np.linalg.norm(w_dense - w_init)))


# --- S2 -------------------------------------------------------------------------------------
def cross_level(a: Weights, b: Weights, mask: MaskLike) -> dict[str, float]:
    """S2: agreement of two weight sets (level L−1's ``a``, level L's ``b``) on the weights
    ``mask`` keeps (level L's mask).

    Returns ``pearson``, ``spearman`` (nan for fewer than 2 weights or constant values),
    ``l2`` = ‖a−b‖/‖a‖, ``cosine`` = a·b/(‖a‖‖b‖) (nan for a zero vector), ``sign_agreement``
    = share of weights with sign(a) = sign(b) (a zero matches only a zero) and ``n`` compared.
    """
    m = _mask_parts(mask)
    x, y = _kept_values(a, m, "a"), _kept_values(b, m, "b")
    norm_x, norm_y = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    varied = len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0
    return {
        "pearson": float(scipy.stats.pearsonr(x, y).statistic) if varied else NAN,
        "spearman": float(scipy.stats.spearmanr(x, y).statistic) if varied else NAN,
        "l2": _ratio(float(np.linalg.norm(x - y)), norm_x),
        "cosine": _ratio(float(x @ y), norm_x * norm_y),
        "sign_agreement": float(np.mean(np.sign(x) == np.sign(y))) if len(x) else NAN,
        "n": len(x),
    }


# --- S3 -------------------------------------------------------------------------------------
def movement(
    final: Weights, init: Weights, mask: MaskLike, alive: MaskLike | None = None
) -> dict[str, float]:
    """S3: how far the weights travelled in training, θ_T − θ_init, split into the weights
    ``mask`` keeps and those it prunes, among the ``alive`` ones (those that trained; default all).

    Returns ``kept_l2`` / ``pruned_l2`` (L2 norms of the movement), ``kept_mean`` /
    ``pruned_mean`` (mean |θ_T − θ_init| per weight, comparable across group sizes; nan for an
    empty group), ``kept_grew`` (share of kept weights with |θ_T| > |θ_init|) and the counts
    ``kept`` / ``pruned``. LTH (App. F) finds that weights a later mask keeps moved further.
    """
    m = _mask_parts(mask)
    live = {name: np.ones_like(k) for name, k in m.items()} if alive is None else alive
    live = _mask_parts(live, "alive")
    if set(live) != set(m):
        raise ConfigError(
            f"alive has entries {sorted(live)} but mask has {sorted(m)}; "
            "pass two masks over the same tensors"
        )
    out: dict[str, float] = {}
    for group, selected in (("kept", True), ("pruned", False)):
        part = {name: live[name] & (k == selected) for name, k in m.items()}
        end, start = _kept_values(final, part, "final"), _kept_values(init, part, "init")
        moved = np.abs(end - start)
        out[f"{group}_l2"] = float(np.linalg.norm(moved))
        out[f"{group}_mean"] = float(moved.mean()) if len(moved) else NAN
        out[group] = len(moved)
        if selected:
            grew = np.abs(end) > np.abs(start)
            out["kept_grew"] = float(grew.mean()) if len(grew) else NAN
    return out


def mask_persistence(before: MaskLike, after: MaskLike) -> float:
    """Share of the weights ``after`` keeps that ``before`` kept too: |B∧A| / |A|.

    1 for nested masks (iterative magnitude pruning), ≈ the density of ``before`` for an
    ``after`` drawn at random (a ``random_mask`` branch); nan if ``after`` keeps nothing."""
    b, a = _mask_parts(before, "before"), _mask_parts(after, "after")
    if set(b) != set(a) or any(b[k].shape != a[k].shape for k in a):
        raise ConfigError("before and after must be masks over the same tensors of one model")
    both = sum(int((b[k] & a[k]).sum()) for k in a)
    return _ratio(both, sum(int(a[k].sum()) for k in a))


# --- tables over runs -----------------------------------------------------------------------
S2_COLUMNS = ("pearson", "spearman", "sign_agreement", "l2", "cosine")
MOVE_COLUMNS = {
    "kept_l2": "move_kept",
    "pruned_l2": "move_pruned",
    "kept_mean": "move_kept_mean",
    "pruned_mean": "move_pruned_mean",
    "kept_grew": "kept_grew",
}


@dataclass(frozen=True)
class _Level:
    """What one level's rows need: its mask, final and start weights, the run's dense
    reference and rewind point, and the neighbouring levels (None where the run has none)."""

    mask: Mapping[str, torch.Tensor]
    final: Mapping[str, torch.Tensor]
    start: Mapping[str, torch.Tensor]
    dense: Mapping[str, torch.Tensor] | None  # None: no dense solution from this run's θ0
    rewound: Mapping[str, torch.Tensor]
    prev_mask: Mapping[str, torch.Tensor] | None
    prev_final: Mapping[str, torch.Tensor] | None
    next_mask: Mapping[str, torch.Tensor] | None


def alive_at_both(before: MaskLike, after: MaskLike) -> MaskLike:
    """Weights both masks keep: S2 compares only weights that trained at both levels, so the
    weights a Drop Pruning step revived (pruned, hence 0, at L−1) are left out."""
    if isinstance(after, Mapping):
        return {name: before[name] & m for name, m in after.items()}
    return before & after


def _layer_row(level: int, at: _Level, layer: str | None) -> dict[str, Any]:
    """The stability numbers of one level, for one tensor (``layer``) or all together (None)."""

    def pick(x: Mapping[str, Any]) -> Any:
        return x if layer is None else x[layer]

    mask = pick(at.mask)
    row: dict[str, Any] = {"level": level, "layer": layer or WHOLE}
    row["s1"] = (
        stability_to_pruning(pick(at.final), pick(at.dense), pick(at.rewound), mask)
        if level > 0 and at.dense is not None
        else NAN
    )
    s2: dict[str, float] = {}
    persistence = NAN
    if at.prev_mask is not None and at.prev_final is not None:
        both = alive_at_both(pick(at.prev_mask), mask)  # = mask for nested (IMP) runs
        s2 = cross_level(pick(at.prev_final), pick(at.final), both)
        persistence = mask_persistence(pick(at.prev_mask), mask)
    row.update({col: s2.get(col, NAN) for col in S2_COLUMNS})
    row["persistence"] = persistence
    moved = {}
    if at.next_mask is not None:
        moved = movement(pick(at.final), pick(at.start), pick(at.next_mask), alive=mask)
    row.update({col: moved.get(key, NAN) for key, col in MOVE_COLUMNS.items()})
    return row


def _rewind_point(run: Run) -> dict[str, torch.Tensor]:
    """θk, the point of the dense trajectory the run rewinds its levels to (θ0 when it rewinds
    to 0it): S1 measures the dense weights' travel from there."""
    stored = WEIGHT_FILES["rewind"] in run.info.get("files", {})  # θk is saved iff k > 0
    return run.weights(which="rewind" if stored else "init")


def _dense_weights(run: Run) -> dict[str, torch.Tensor] | None:
    """The trained dense weights S1 compares with: the run's level 0, or for a branch that
    starts from its parent's θ0 the parent's level 0; None for a fresh-init branch (reinit,
    scratch), whose θ0' has no dense trajectory."""
    if 0 in run.levels:
        return run.weights(0)
    parent = run.parent
    if parent is None or run.config.rule.fresh_init or 0 not in parent.levels:
        return None
    return parent.weights(0)


def _run_rows(run: Run, levels: set[int] | None) -> list[dict[str, Any]]:
    done = run.levels
    wanted = [lv for lv in done if levels is None or lv in levels]
    if not wanted:
        return []
    mask = lru_cache(maxsize=3)(run.mask)  # levels L−1, L, L+1 while walking up the levels
    final = lru_cache(maxsize=2)(run.weights)  # levels L−1, L
    dense, rewound = _dense_weights(run), _rewind_point(run)
    columns = config_columns(run)
    rows = []
    for level in wanted:
        has_prev, has_next = level > 0 and level - 1 in done, level + 1 in done
        at = _Level(
            mask=mask(level),
            final=final(level),
            start=run.weights(level, which="start"),
            dense=dense,
            rewound=rewound,
            prev_mask=mask(level - 1) if has_prev else None,
            prev_final=final(level - 1) if has_prev else None,
            next_mask=mask(level + 1) if has_next else None,
        )
        for layer in [*at.mask, None]:
            rows.append({"run_id": run.run_id, **_layer_row(level, at, layer), **columns})
    return rows


def stability_table(runs: Iterable[Run], levels: Iterable[int] | None = None) -> pd.DataFrame:
    """Tidy stability table: one row per (run, level, layer), every masked tensor and 'all'.

    Columns: ``run_id``, ``level``, ``layer``;
    ``s1`` — :func:`stability_to_pruning` of the level's final weights against the run's
    level-0 (dense) final weights and its rewind point θk (θ0 for k = 0), on the level's mask
    (nan at level 0);
    ``pearson``, ``spearman``, ``sign_agreement``, ``l2``, ``cosine`` — :func:`cross_level`
    of the final weights of levels L−1 and L on the weights both levels keep (level L's mask
    when the masks are nested; nan at level 0);
    ``persistence`` — :func:`mask_persistence` of mask L−1 → L (nan at level 0);
    ``move_kept``, ``move_pruned`` (L2), ``move_kept_mean``, ``move_pruned_mean`` (per weight),
    ``kept_grew`` — :func:`movement` of level L's training (final − the level's own start
    weights) over the weights alive at L, split by what the next pruning keeps (mask L+1; nan
    at the run's last level); then the run's config columns (``criterion``, ``regime``, ``seed``,
    ... and every dotted config field) for faceting. ``levels`` limits the levels reported.

    For ``reinit_prune`` runs every level starts from its own fresh initialisation, so S1 and S2
    then compare solutions reached from different inits (θ0 and θk lie only on level 0's
    trajectory); movement always uses the level's own start weights. A branch compares with its
    parent's dense level when it starts from the parent's θ0; S1 is nan for reinit and scratch
    branches, whose fresh θ0' has no dense solution.
    """
    wanted = None if levels is None else set(levels)
    rows = [row for run in runs for row in _run_rows(run, wanted)]
    return pd.DataFrame(rows)
