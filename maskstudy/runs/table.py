"""Many runs read as one tidy table: one row per (run, level), config fields flattened into columns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from maskstudy.runs.regimes import method_name
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.store import Run

# Short column names for the fields every comparison groups by.
ALIASES = {
    "model.name": "model",
    "data.name": "dataset",
    "prune.criterion": "criterion",
    "prune.scope": "scope",
    "regime": "regime",
    "seed": "seed",
}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 0.1}} → {"train.lr": 0.1}; lists and dicts become strings (hashable)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not key.endswith("layer_amounts"):
            out.update(flatten(value, path + "."))
        elif isinstance(value, (list, dict)):
            out[path] = str(value)
        else:
            out[path] = value
    return out


def run_name(run: Any) -> str:
    """The run's id (``run.run_id`` when it has one, else the hash of its config)."""
    return getattr(run, "run_id", None) or run.config.run_id()


def config_columns(run: Any) -> dict[str, Any]:
    """run_id, the aliases (model, criterion, regime, seed, ...), ``branch`` (the branch kind,
    "" for a run) and ``parent`` (its parent's run id), and every dotted config field.

    A branch's ``regime`` column is its kind, so tables and figures show a control as its own
    method beside its parent; ``parent_regime`` keeps the regime that found its masks."""
    flat = flatten(run.config.to_dict())
    flat |= dict.fromkeys(getattr(run, "unknown", ()), "unknown")  # an import's untold fields
    kind = flat["branch.kind"]
    return {
        "run_id": run_name(run),
        **{a: flat[k] for k, a in ALIASES.items()},
        **flat,
        "branch": kind,
        "parent": flat["branch.parent"],
        "parent_regime": flat["regime"] if kind else "",
        "regime": method_name(flat["regime"], kind),
    }


def varying_fields(runs: Sequence[RunLike]) -> list[str]:
    """Dotted config fields that differ between ``runs`` (how many levels, and which run a
    branch comes from, aside)."""
    flats = [flatten(run.config.to_dict()) for run in runs]
    keys = sorted(
        {key for flat in flats for key in flat} - {"levels", "branch.parent", "branch.first"}
    )
    return [key for key in keys if len({repr(flat.get(key)) for flat in flats}) > 1]


def runs_frame(runs: Iterable[Run]) -> pd.DataFrame:
    """Tidy frame over ``runs``: config columns + the level metrics of each completed level."""
    frames = []
    for run in runs:
        metrics = run.metrics()
        if metrics.empty:
            continue
        for key, value in config_columns(run).items():
            metrics[key] = value
        frames.append(metrics)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def with_parent_dense(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each branch's parent's dense level 0 copied under the branch's method:
    branches train the pruned levels only, and a curve over % remaining starts at the dense
    network they share with their parent (seed for seed)."""
    branches = frame[frame["branch"].fillna("") != ""]
    own = set(branches.loc[branches["level"] == 0, "run_id"])  # a rewind branch to a new k
    branches = branches[~branches["run_id"].isin(own)]
    if branches.empty:
        return frame
    dense = frame[(frame["level"] == 0) & (frame["branch"].fillna("") == "")]
    pairs = branches[["parent", "regime"]].drop_duplicates()
    copies = pairs.merge(dense.drop(columns="regime"), left_on="parent", right_on="run_id")
    copies = copies.drop(columns="parent_x").rename(columns={"parent_y": "parent"})
    return pd.concat([frame, copies[frame.columns]], ignore_index=True)
