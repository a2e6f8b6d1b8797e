"""The conv-structure study's tables over a set of runs: the tests of ``structure_tests`` per
seed, conv layer and level, their summaries over seeds, and the last-epoch gains (convergence).

Every table is keyed by the identifying columns the caller gives each run (``model``, ``arm``,
``seed``: any labels, e.g. words for a config), so arms are named where the study is. A summary
over seeds is the mean with its 95 % percentile-bootstrap interval (``stats.summarize``) and the
seeds' p-values combined by Fisher's method; the structure index is mean dead / mean expected.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from scipy.stats import combine_pvalues

from maskstudy.analysis.stats import summarize
from maskstudy.analysis.structure import kernel_histogram
from maskstudy.analysis.structure_tests import (
    dead_source_test,
    dead_unit_test,
    kernel_count_test,
    removed_filter_test,
    structured_resemblance,
)
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.store import Run

__all__ = [
    "conv_masks",
    "convergence_summary",
    "dead_source_seeds",
    "dead_source_summary",
    "dead_unit_seeds",
    "fisher_p",
    "index_note",
    "kernel_count_seeds",
    "kernel_count_summary",
    "last_epoch_gains",
    "over_seeds",
    "resemblance_seeds",
    "resemblance_summary",
    "structure_index_summary",
]

KEYS = ["model", "layer", "arm", "level"]  # a summary's row: one layer of one arm at one level
SEED_COLUMNS = [*KEYS, "seed", "percent_remaining"]  # a seed-level row's identifying columns
UNITS = ("kernel", "filter", "channel")  # the conv units a dead-unit test counts
GAINS = ("val_acc", "test_acc", "train_loss")  # last evaluation − the one before, per level
FEW_CHANCE = 0.01  # expected dead units below this: the index is large by construction


# --- per seed -----------------------------------------------------------------------------------
def conv_masks(runs: Sequence[RunLike], ids: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (run, completed level, conv layer that is pruned): the run's ``ids`` (model,
    arm, seed), level, layer, % of the layer remaining and the mask: what the tests read."""
    rows = []
    for run, run_ids in zip(runs, ids, strict=True):
        for level in run.levels:
            for layer, mask in run.mask(level).items():
                arr = mask.numpy()
                if arr.ndim < 3 or arr.all():  # linear layers; a dense layer has no structure
                    continue
                rows.append({
                    **run_ids, "level": level, "layer": layer,
                    "percent_remaining": 100 * arr.mean(), "mask": arr,
                })  # fmt: skip
    return pd.DataFrame(rows)


def _seed_ids(row: Any) -> dict[str, Any]:
    """The identifying columns of a row of :func:`conv_masks`."""
    return {c: getattr(row, c) for c in SEED_COLUMNS}


def dead_unit_seeds(masks: pd.DataFrame, permutations: int) -> pd.DataFrame:
    """dead_unit_test per row of :func:`conv_masks` and conv unit: the per-seed evidence the
    structure index summarises (each seed's masks permuted with its own seed)."""
    return pd.DataFrame([
        {**_seed_ids(r), **dead_unit_test(r.mask, unit, permutations, seed=r.seed)}
        for r in masks.itertuples()
        for unit in UNITS
    ])  # fmt: skip


def kernel_count_seeds(masks: pd.DataFrame, permutations: int) -> pd.DataFrame:
    """kernel_count_test per row of :func:`conv_masks`, with the chance share of kernels dead or
    full (hypergeometric pmf at 0 and at kh·kw alive) beside the observed one."""
    rows = []
    for r in masks.itertuples():
        chance = kernel_histogram(r.mask)["expected_fraction"].to_numpy()
        rows.append({
            **_seed_ids(r), **kernel_count_test(r.mask, permutations, seed=r.seed),
            "chance_dead_or_full": chance[0] + chance[-1],
        })  # fmt: skip
    return pd.DataFrame(rows)


def resemblance_seeds(
    masks: pd.DataFrame, references: Sequence[str], permutations: int = 9999
) -> pd.DataFrame:
    """Each other arm's mask against each reference arm's mask of the same model, seed, level
    and layer: does pruning pick structured's filters? structured_resemblance (dead filters:
    overlap, lift, p_value) and removed_filter_test (the removed filters' alive weights ÷ the
    kept ones': density_ratio, density_p), defined even where no filter is dead."""
    structured = {
        (r.arm, r.model, r.seed, r.level, r.layer): r.mask
        for r in masks.itertuples()
        if r.arm in references
    }
    rows = []
    for r, ref in itertools.product(masks[~masks["arm"].isin(references)].itertuples(), references):
        other = structured.get((ref, r.model, r.seed, r.level, r.layer))
        if other is not None:
            density = removed_filter_test(r.mask, other, permutations, seed=r.seed)
            rows.append({
                **_seed_ids(r), "reference": ref,
                **structured_resemblance(r.mask, other, unit="filter"),
                "density_ratio": density["ratio"], "density_p": density["p_value"],
            })  # fmt: skip
    return pd.DataFrame(rows)


def dead_source_seeds(masks: pd.DataFrame, permutations: int) -> pd.DataFrame:
    """dead_source_test of each run's and level's consecutive pruned conv layers (in the masks'
    order) whose shapes chain, the first's filters being the second's input channels: do the
    channels that read a dead filter keep fewer weights? (Plain conv stacks, as in the study.)"""
    rows = []
    for _, group in masks.groupby(["model", "arm", "seed", "level"], sort=False):
        for before, after in itertools.pairwise(group.itertuples()):
            if before.mask.shape[0] == after.mask.shape[1]:
                test = dead_source_test(before.mask, after.mask, permutations, seed=after.seed)
                rows.append({**_seed_ids(after), "source": before.layer, **test})
    return pd.DataFrame(rows)


# --- over seeds ---------------------------------------------------------------------------------
def fisher_p(p_values: Sequence[float] | pd.Series) -> float:
    """Fisher's combination of independent p-values (one per seed): one p for all seeds; the
    seeds without a p (nan) left out, nan when none has one."""
    values = [p for p in p_values if p == p]
    return float(combine_pvalues(values, method="fisher").pvalue) if values else float("nan")


def over_seeds(seeds: pd.DataFrame, value: str, keys: Sequence[str], **extra: Any) -> pd.DataFrame:
    """Per group of ``keys``: mean of ``value`` over seeds with its 95 % bootstrap interval
    (``value``, ``value_lo``, ``value_hi``; seeds where it is nan left out), seeds, mean %
    remaining and the ``extra`` named aggregations: the common shape of the summaries."""
    keys = list(keys)
    stats = summarize(seeds, value, keys).drop(columns=["sd", "n"])
    stats = stats.rename(columns={"mean": value, "ci_low": f"{value}_lo", "ci_high": f"{value}_hi"})
    grouped = seeds.groupby(keys).agg(
        seeds=("seed", "nunique"), percent_remaining=("percent_remaining", "mean"), **extra
    )
    return grouped.reset_index().merge(stats, on=keys, how="left")


def index_note(row: pd.Series) -> str:
    """What an index that is not an ordinary ratio means (chance ≈ 0, nothing dead)."""
    if row["expected"] == 0:
        if row["dead"] > 0:
            return "index inf: units dead where chance underflows to 0"
        return "index nan: chance leaves no unit dead, and none is"
    if row["dead"] == 0:
        return "none dead"
    if row["expected"] < FEW_CHANCE:
        return f"chance expects < {FEW_CHANCE} dead: index large by construction"
    return ""


def structure_index_summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Structure index per model, layer, arm, level and unit from :func:`dead_unit_seeds`: mean
    dead over seeds ÷ the mean chance expectation, its interval from the dead counts' bootstrap
    interval, the Fisher-combined permutation p and a note where the ratio is degenerate."""
    table = over_seeds(
        seeds, "dead", [*KEYS, "unit"], groups=("groups", "first"),
        expected=("expected", "mean"), p_fisher=("p_value", fisher_p),
    )  # fmt: skip
    for suffix in ("", "_lo", "_hi"):  # pandas: x / 0 = inf, 0 / 0 = nan, both noted
        table[f"index{suffix}"] = table[f"dead{suffix}"] / table["expected"]
    table["note"] = table.apply(index_note, axis=1)
    return table


def kernel_count_summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Kernel-count law vs chance per model, layer, arm and level from
    :func:`kernel_count_seeds`: mean TV distance [interval], dead-or-full share, Fisher p."""
    return over_seeds(
        seeds, "tv", KEYS, dead_or_full=("dead_or_full", "mean"),
        chance_dead_or_full=("chance_dead_or_full", "mean"), p_fisher=("p_value", fisher_p),
    )  # fmt: skip


def resemblance_summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per arm, reference, layer and level from :func:`resemblance_seeds`: the dead-filter lift
    (mean over the seeds where it is defined [interval], Fisher p) and the removed filters'
    density ratio (mean [interval], its Fisher p as ``density_p_fisher``)."""
    keys = [*KEYS, "reference"]
    lift = over_seeds(
        seeds, "lift", keys, lift_seeds=("lift", "count"),
        dead=("dead", "mean"), removed=("removed", "mean"), overlap=("overlap", "mean"),
        p_fisher=("p_value", fisher_p),
    )  # fmt: skip
    density = over_seeds(seeds, "density_ratio", keys, density_p_fisher=("density_p", fisher_p))
    return lift.merge(density.drop(columns=["seeds", "percent_remaining"]), on=keys)


def dead_source_summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per model, layer, arm and level, from :func:`dead_source_seeds`: the ratio of alive
    weights per dead-source channel to the others' (mean over the seeds with dead sources
    [interval]), those seeds, the mean count of dead sources and the Fisher-combined p."""
    return over_seeds(
        seeds, "ratio", KEYS, ratio_seeds=("ratio", "count"),
        dead_sources=("dead_sources", "mean"), p_fisher=("p_value", fisher_p),
    )  # fmt: skip


# --- convergence --------------------------------------------------------------------------------
def last_epoch_gains(runs: Sequence[Run], ids: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per run (its ``ids``) and level: the last evaluation minus the one before, for GAINS and
    the epoch of the last: whether a level had stopped improving when it ended."""
    rows = []
    for run, run_ids in zip(runs, ids, strict=True):
        history = run.history()
        if history.empty:
            continue
        for level, evals in history.groupby("level"):
            if len(evals) < 2:
                continue
            before, last = evals.sort_values("step").iloc[-2:].to_dict("records")
            gains = {f"{g}_gain": last[g] - before[g] for g in GAINS if g in last}
            rows.append({**run_ids, "level": level, "epoch": last["epoch"], **gains})
    return pd.DataFrame(rows)


def convergence_summary(gains: pd.DataFrame) -> pd.DataFrame:
    """Per model, arm and level of :func:`last_epoch_gains`: the mean gain with its 95 %
    interval over seeds and the largest gain of any seed, per gain column."""
    keys = ["model", "arm", "level"]
    table = gains.groupby(keys).agg(seeds=("seed", "nunique"), epoch=("epoch", "max"))
    for column in [c for c in gains.columns if c.endswith("_gain")]:
        stats = summarize(gains, column, keys).set_index(keys)
        table[column] = stats["mean"]
        table[f"{column}_lo"], table[f"{column}_hi"] = stats["ci_low"], stats["ci_high"]
        table[f"{column}_max"] = gains.groupby(keys)[column].max()
    return table.reset_index()
