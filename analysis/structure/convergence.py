"""The conv-structure study's convergence check: does twice the training per level change the
test accuracy, or the structure of the masks, that the study's budget gives?

Pairs every run of the long sweep (fmnist_long.toml) with the run of the study's sweep that has
the same config but for ``train.duration`` and ``train.milestones`` (same model, arm and seed),
and per level compares their final test accuracy and, per conv layer, their kernel structure
index (dead kernels ÷ the chance expectation). Differences long − short are averaged over the
seeds with a 95 % bootstrap interval and a paired sign-flip p-value. Writes
convergence_long.csv and prints it:

    python analysis/structure/convergence.py STUDY_SWEEP LONG_SWEEP [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import maskstudy
from maskstudy.analysis.stats import permutation_test, summarize
from maskstudy.analysis.structure import conv_structure
from maskstudy.runs.store import Run
from maskstudy.runs.table import flatten

BUDGET = ("train.duration", "train.milestones")  # what the long sweep changes


def pairing_key(run: Run) -> tuple[tuple[str, str], ...]:
    """The run's flattened config without its training budget (nor data_root, a location)."""
    flat = flatten(run.config.to_dict())
    return tuple(sorted((k, repr(v)) for k, v in flat.items() if k not in BUDGET))


def paired_runs(study: Path, long: Path) -> list[tuple[Run, Run]]:
    """(study run, long run) for every started long run whose study twin has started."""
    short = {pairing_key(r): r for r in maskstudy.open_sweep(study).runs}
    pairs = [(short.get(pairing_key(r)), r) for r in maskstudy.open_sweep(long).runs]
    return [(s, lng) for s, lng in pairs if s is not None]


def kernel_index(mask: Any) -> float:
    """Dead kernels ÷ their chance expectation under a random mask of the same density."""
    table = conv_structure(mask)
    return float(table.loc[table["unit"] == "kernel", "structure_index"].iloc[0])


def level_rows(short: Run, long: Run) -> list[dict[str, Any]]:
    """Per level both runs completed: test accuracy of each, and per pruned conv layer the
    kernel index of each, as (what, layer) rows with short, long and long − short."""
    cfg = short.config
    rows = []
    for level in sorted(set(short.levels) & set(long.levels)):
        ids = {"model": cfg.model.name, "seed": cfg.seed, "level": level}
        accuracy = [run.level_metrics(level)["test_acc"] for run in (short, long)]
        rows.append({**ids, "what": "test accuracy", "layer": "all", "short": accuracy[0],
                     "long": accuracy[1]})  # fmt: skip
        if level == 0:
            continue
        masks = short.mask(level), long.mask(level)
        for layer in masks[0]:
            if masks[0][layer].ndim < 3:
                continue
            index = [kernel_index(m[layer]) for m in masks]
            rows.append({**ids, "what": "kernel index", "layer": layer, "short": index[0],
                         "long": index[1]})  # fmt: skip
    return rows


def compare(pairs: Sequence[tuple[Run, Run]]) -> pd.DataFrame:
    """Per model, quantity, layer and level: the mean of short and long over seeds and their
    difference long − short with its 95 % bootstrap interval and paired sign-flip p."""
    seeds = pd.DataFrame([row for pair in pairs for row in level_rows(*pair)])
    seeds = seeds.dropna(subset=["short", "long"]).assign(gain=lambda t: t["long"] - t["short"])
    keys = ["model", "what", "layer", "level"]
    table = summarize(seeds, "gain", keys).rename(
        columns={"mean": "gain", "ci_low": "gain_lo", "ci_high": "gain_hi", "n": "seeds"}
    )
    means = seeds.groupby(keys)[["short", "long"]].mean().reset_index()
    tests = [
        {**dict(zip(keys, key, strict=True)),
         "p": permutation_test(g["long"], g["short"], paired=True)[1]}
        for key, g in seeds.groupby(keys)
    ]  # fmt: skip
    table = means.merge(table.drop(columns="sd"), on=keys).merge(pd.DataFrame(tests), on=keys)
    return table.sort_values(["model", "what", "layer", "level"], ignore_index=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="the study's sweep (fmnist.toml's)")
    parser.add_argument("long", type=Path, help="the long-training sweep (fmnist_long.toml's)")
    parser.add_argument("--out", type=Path, help="folder of convergence_long.csv (default: long)")
    args = parser.parse_args(argv)
    pairs = paired_runs(args.study, args.long)
    if not pairs:
        print(f"no run of {args.long} has a twin in {args.study} yet")
        return 1
    table = compare(pairs)
    out = (args.out or args.long) / "convergence_long.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(f"{len(pairs)} run pairs; long − short per level (mean over seeds, 95 % bootstrap "
              f"interval, paired sign-flip p):\n{table.round(4).to_string(index=False)}\n{out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
