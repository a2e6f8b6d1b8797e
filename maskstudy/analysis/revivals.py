"""Non-nested mask trajectories (Drop Pruning): what each step revived and
removed, how much consecutive masks overlap, and how often each weight flipped.

IMP masks are nested, so a step only removes weights and J(Mᵗ, Mᵗ⁺¹) is just the density
ratio. Drop Pruning also revives pruned weights, so these numbers carry information: a weight
can be pruned and revived several times along one run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from maskstudy.analysis.overlap import WHOLE, jaccard
from maskstudy.errors import ConfigError
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.table import config_columns

__all__ = ["flip_counts", "flip_table", "revival_table"]

Masks = Sequence[Mapping[str, torch.Tensor]]
NAN = float("nan")


def flip_counts(masks: Masks) -> dict[str, torch.Tensor]:
    """Per weight, how many times its bit changed (pruned ↔ alive) along ``masks`` in order."""
    if not masks:
        raise ConfigError("flip_counts needs at least one mask")
    first = masks[0]
    for m in masks[1:]:
        if m.keys() != first.keys() or any(m[n].shape != first[n].shape for n in first):
            raise ConfigError("every mask of a trajectory must cover the same tensors")
    counts = {name: torch.zeros(m.shape, dtype=torch.int64) for name, m in first.items()}
    for before, after in zip(masks, masks[1:], strict=False):
        for name, count in counts.items():
            count += (before[name] != after[name]).cpu()
    return counts


def _count(bits: Mapping[str, torch.Tensor], names: list[str]) -> int:
    return sum(int(bits[n].sum()) for n in names)


def _rows(masks: dict[int, dict[str, torch.Tensor]]) -> list[dict[str, Any]]:
    """One row per (level, layer and 'all') of one run's masks keyed by level."""
    rows: list[dict[str, Any]] = []
    revivals = {n: torch.zeros(m.shape, dtype=torch.int64) for n, m in masks[min(masks)].items()}
    flips = {n: torch.zeros_like(r) for n, r in revivals.items()}
    for level, mask in sorted(masks.items()):
        before, after = masks.get(level - 1), masks.get(level + 1)
        if before is not None:
            for name, m in mask.items():
                revivals[name] += (m & ~before[name]).cpu()
                flips[name] += (m != before[name]).cpu()
        for layer in [*mask, WHOLE]:
            names = list(mask) if layer == WHOLE else [layer]
            weights = sum(mask[n].numel() for n in names)
            row: dict[str, Any] = {"level": level, "layer": layer, "kept": _count(mask, names)}
            row["total"] = weights
            row.update(revived=NAN, removed=NAN, jaccard_prev=NAN, jaccard_next=NAN)
            if before is not None:
                row["revived"] = _count({n: mask[n] & ~before[n] for n in names}, names)
                row["removed"] = _count({n: before[n] & ~mask[n] for n in names}, names)
                row["jaccard_prev"] = jaccard(_part(before, names), _part(mask, names))
            if after is not None:
                row["jaccard_next"] = jaccard(_part(mask, names), _part(after, names))
            row["revived_ever"] = _count({n: revivals[n] > 0 for n in names}, names)
            row["flips_mean"] = _count(flips, names) / weights
            row["flips_max"] = max(int(flips[n].max()) for n in names)
            rows.append(row)
    return rows


def _part(mask: Mapping[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    return {n: mask[n] for n in names}


def revival_table(runs: Iterable[RunLike], levels: Iterable[int] | None = None) -> pd.DataFrame:
    """Tidy table: one row per (run, level, layer), every masked tensor and 'all'.

    Columns: ``run_id``, ``level``, ``layer``, ``kept`` and ``total`` weights; ``revived`` /
    ``removed`` — weights the step from level L−1 to L revived (0→1) / removed (1→0), and
    ``jaccard_prev`` = J(Mᴸ⁻¹, Mᴸ) (all nan at level 0); ``jaccard_next`` = J(Mᴸ, Mᴸ⁺¹) (nan
    at the run's last level); ``revived_ever`` — weights revived at least once by level L;
    ``flips_mean`` / ``flips_max`` — per-weight prune↔revive flips over levels 0..L; then the
    run's config columns (``criterion``, ``regime``, ``seed``, ...). Counts at L describe the
    stored masks exactly: kept(L) = kept(L−1) − removed + revived. ``levels`` limits the rows.
    """
    wanted = None if levels is None else set(levels)
    rows = []
    for run in runs:
        done = run.levels
        masks = {lv: run.mask(lv) for lv in done}
        if not masks:
            continue
        columns = config_columns(run)
        for row in _rows(masks):
            if wanted is None or row["level"] in wanted:
                rows.append({"run_id": columns["run_id"], **row, **columns})
    return pd.DataFrame(rows)


def flip_table(runs: Iterable[RunLike]) -> pd.DataFrame:
    """Tidy histogram of per-weight flips over each run's whole stored trajectory: one row per
    (run, layer and 'all', flips) with ``weights`` = how many weights changed bit that often."""
    rows = []
    for run in runs:
        counts = flip_counts([run.mask(lv) for lv in run.levels]) if run.levels else {}
        if not counts:
            continue
        columns = config_columns(run)
        groups = {**{n: [c] for n, c in counts.items()}, WHOLE: list(counts.values())}
        for layer, parts in groups.items():
            flat = torch.cat([c.reshape(-1) for c in parts])
            values, weights = torch.unique(flat, return_counts=True)
            for flips, n in zip(values.tolist(), weights.tolist(), strict=True):
                rows.append(
                    {"run_id": columns["run_id"], "layer": layer, "flips": flips, "weights": n}
                    | columns
                )
    return pd.DataFrame(rows)
