"""Overlap tables over runs: every two runs that differ in one config field, or every two
levels of one run, compared at matched levels per layer and over the whole network."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any

import pandas as pd

from maskstudy.analysis.bitcount import layer_counts
from maskstudy.analysis.overlap import WHOLE, pair_rows
from maskstudy.errors import ConfigError
from maskstudy.runs.config import field_paths
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.table import ALIASES, flatten, run_name

LEVEL = "level"


def along_field(along: str) -> str:
    """The dotted config field named by ``along`` (an alias such as 'criterion', or a path)."""
    fields = {p: p for p in field_paths() if p != "levels"}
    fields.update({alias: path for path, alias in ALIASES.items()})
    if along not in fields:
        raise ConfigError(
            f"along = {along!r}; choose 'level', an alias ({', '.join(ALIASES.values())}) "
            f"or a config field ({', '.join(p for p in field_paths() if p != 'levels')})"
        )
    return fields[along]


def _selected_layers(mask: Mapping[str, Any], layers: Iterable[str] | None) -> list[str]:
    if layers is None:
        return [*mask, WHOLE]
    layers = list(layers)
    unknown = sorted(set(layers) - set(mask) - {WHOLE})
    if unknown:
        raise ConfigError(f"layers {unknown} are not mask entries; entries: {', '.join(mask)}")
    return [*(name for name in mask if name in layers), WHOLE]


def _wanted(levels: Iterable[int] | None, available: Iterable[int]) -> list[int]:
    return sorted(set(available) if levels is None else set(available) & set(levels))


def overlap_table(
    runs: Iterable[RunLike],
    along: str = "seed",
    levels: Iterable[int] | None = None,
    layers: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Tidy overlap table: one row per (pair of masks, level, layer), whole network as 'all'.

    ``along`` = a config field ('seed', 'criterion', 'regime', or any dotted field path):
    compare, at each matched level, every two runs whose configs differ only in that field
    (columns ``value_a``/``value_b`` hold the two values). ``along='level'``: compare levels
    L < L' of the same run (``level``, ``level_b``).

    Pitfall: inside one IMP run the masks are nested (M^{t+1} ⊂ M^t), so J(M^t, M^{t+1}) equals
    the density ratio (0.8 at amount 0.2) by construction, and the lift over *independent*
    random masks is meaningless. Rows whose kept sets are nested get ``nested=True``; read
    them as a sanity check, not as similarity. ``layers`` limits the per-layer rows (the 'all'
    row is always there); ``levels`` limits the levels compared.
    """
    runs = list(runs)
    rows: list[dict[str, Any]] = []
    if along == LEVEL:
        for run in runs:
            chosen = _wanted(levels, run.levels)
            masks = [run.mask(level) for level in chosen]
            if len(masks) < 2:
                continue
            counts = layer_counts(masks)
            labels = {"run": [run_name(run)] * len(chosen), "value": chosen, "level": chosen}
            rows += pair_rows(
                counts,
                combinations(range(len(chosen)), 2),
                _selected_layers(masks[0], layers),
                labels,
            )
    else:
        field = along_field(along)
        groups: dict[tuple[Any, ...], list[tuple[RunLike, Any]]] = {}
        for run in runs:
            flat = flatten(run.config.to_dict())
            value = flat.pop(field)
            for how_much in ("levels", "branch.parent", "branch.first"):  # not what a run is
                flat.pop(how_much, None)
            groups.setdefault(tuple(sorted(flat.items())), []).append((run, value))
        for members in groups.values():
            rows += _group_rows(members, levels, layers)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.rename(columns={"level_a": "level"})
    first = ["run_a", "run_b", "value_a", "value_b", "level", "level_b", "layer"]
    return frame[first + [c for c in frame.columns if c not in first]]


def _group_rows(
    members: list[tuple[RunLike, Any]], levels: Iterable[int] | None, layers: Iterable[str] | None
) -> list[dict[str, Any]]:
    """Rows for every two runs of one group (same config but the ``along`` field) per level."""
    rows: list[dict[str, Any]] = []
    all_levels = _wanted(levels, {lv for run, _ in members for lv in run.levels})
    for level in all_levels:
        present = [(run, value) for run, value in members if level in run.levels]
        pairs = [
            (i, j)
            for i, j in combinations(range(len(present)), 2)
            if present[i][1] != present[j][1]
        ]
        if not pairs:
            continue
        masks = [run.mask(level) for run, _ in present]
        labels = {
            "run": [run_name(run) for run, _ in present],
            "value": [value for _, value in present],
            "level": [level] * len(present),
        }
        rows += pair_rows(layer_counts(masks), pairs, _selected_layers(masks[0], layers), labels)
    return rows
