"""What the conv-structure study's tables are computed from, and how it travels between
machines: per run, the conv masks of every completed level, test accuracy, stability and the
last epoch's gains per level, and the LMC barriers (``Inputs``). figures.py writes them beside
its tables, so a results folder can stand in for its sweep directories where the runs are gone,
and it merges several, so a study run in pieces (some seeds on one machine, the rest on
another) is summarised as one: the per-seed tests are seeded by the run's seed and the
summaries read the seeds in order, so a merged study gives the tables of one sweep holding
every run, to the last digit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from structure_arms import (
    Arm,
    Study,
    lmc_seeds,
    stability_seeds,
    with_ids,
)

from maskstudy.analysis.structure_study import conv_masks, last_epoch_gains
from maskstudy.errors import ConfigError
from maskstudy.runs.table import runs_frame

RUN = ["model", "arm", "seed"]  # a run of the study (model names its dataset where several)
COVERAGE = "coverage.csv"
MASKS = "conv_masks.npz"  # packed bits of each mask, and an index of what each one is
FRAMES = {  # Inputs.frames by name: the CSV each is saved as
    "accuracy": "accuracy_seeds.csv",
    "stability": "stability_seeds.csv",
    "gains": "convergence_seeds.csv",
    "lmc": "lmc_seeds.csv",
}
STATES = ("done", "partial", "failed", "pending")  # coverage states, most advanced first


@dataclass
class Inputs:
    """The study's arms and planned runs (``study``), the conv masks of every completed level
    (conv_masks rows) and the per-run frames (FRAMES), each row labelled with model, arm and
    seed."""

    study: Study
    masks: pd.DataFrame
    frames: dict[str, pd.DataFrame]

    @property
    def empty(self) -> bool:
        return self.masks.empty and self.frames["accuracy"].empty


def by_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each group's seeds in ascending order (a stable sort): the order the
    summaries over seeds read them in, whichever folder a run came from."""
    return frame.sort_values("seed", kind="stable", ignore_index=True) if "seed" in frame else frame


def no_inputs(study: Study) -> Inputs:
    """Inputs of a study none of whose runs has completed a level."""
    return Inputs(study, pd.DataFrame(), {name: pd.DataFrame() for name in FRAMES})


def inputs_from_runs(study: Study) -> Inputs:
    """The inputs of a study read from its sweeps' runs (each completed level of each run)."""
    members = [m for m in study.members if m.run.levels]
    if not members:
        return no_inputs(study)
    runs, ids = [m.run for m in members], [m.ids for m in members]
    frame = with_ids(runs_frame(runs), members)
    frames = {
        "accuracy": frame[[*RUN, "level", "percent_remaining", "test_acc"]],
        "stability": stability_seeds(members, frame),
        "gains": last_epoch_gains(runs, ids),
        "lmc": lmc_seeds(members, frame),
    }
    masks = conv_masks(runs, ids)
    return Inputs(study, by_seed(masks), {k: by_seed(v) for k, v in frames.items()})


def is_saved(folder: Path) -> bool:
    """Whether ``folder`` holds saved inputs (a results folder of figures.py)."""
    return (folder / COVERAGE).is_file() and (folder / MASKS).is_file()


def save_inputs(inputs: Inputs, out: Path) -> None:
    """Write the inputs into ``out``: coverage.csv (the planned runs with their arms' parts and
    dataset), conv_masks.npz and a CSV per frame (empty frames left out)."""
    inputs.study.coverage.to_csv(out / COVERAGE, index=False)
    masks = inputs.masks
    index = [
        {**{c: getattr(r, c) for c in (*RUN, "level", "layer")}, "shape": list(r.mask.shape)}
        for r in masks.itertuples()
    ]
    bits = {f"mask{i}": np.packbits(m.ravel()) for i, m in enumerate(masks.get("mask", []))}
    np.savez_compressed(out / MASKS, index=np.array(json.dumps(index)), **bits)
    for name, file in FRAMES.items():
        if not inputs.frames[name].empty:
            inputs.study.arrange(inputs.frames[name]).to_csv(out / file, index=False)


def load_masks(path: Path) -> pd.DataFrame:
    """The conv_masks rows saved in ``path`` (no pickle: index JSON and packed bits)."""
    with np.load(path, allow_pickle=False) as saved:
        rows = []
        for i, entry in enumerate(json.loads(str(saved["index"]))):
            shape = tuple(entry.pop("shape"))
            mask = np.unpackbits(saved[f"mask{i}"], count=int(np.prod(shape))).astype(bool)
            mask = mask.reshape(shape)
            rows.append({**entry, "percent_remaining": 100 * mask.mean(), "mask": mask})
    columns = [*RUN, "level", "layer", "percent_remaining", "mask"]
    return pd.DataFrame(rows, columns=columns)[columns]


def study_of(coverage: pd.DataFrame) -> Study:
    """The Study (arms, models, datasets in order; no runs on disk) of a saved coverage table."""
    missing = {"criterion", "scope", "regime", "late", "dataset"} - set(coverage)
    if missing:
        raise ConfigError(
            f"coverage.csv lacks {', '.join(sorted(missing))}: it was written by an older "
            "figures.py; run figures.py on the sweep directories again to save the inputs"
        )
    parts = coverage[["arm", "criterion", "scope", "regime", "late"]].drop_duplicates()
    arms = sorted(
        {Arm(r.arm, r.criterion, r.scope, r.regime, bool(r.late)) for r in parts.itertuples()},
        key=lambda a: a.order,
    )
    models = list(dict.fromkeys(coverage["model"]))
    return Study([], arms, models, list(dict.fromkeys(coverage["dataset"])), coverage)


def load_inputs(folder: Path) -> Inputs:
    """The inputs saved in ``folder`` by :func:`save_inputs`."""
    if not is_saved(folder):
        raise ConfigError(
            f"{folder} holds no saved study ({COVERAGE} and {MASKS}): give a sweep directory or "
            "a folder figures.py wrote"
        )
    frames = {
        name: pd.read_csv(folder / file) if (folder / file).is_file() else pd.DataFrame()
        for name, file in FRAMES.items()
    }
    return Inputs(study_of(pd.read_csv(folder / COVERAGE)), load_masks(folder / MASKS), frames)


def levels_held(inputs: Inputs) -> pd.Series:
    """Completed levels per run (model, arm, seed) in these inputs."""
    accuracy = inputs.frames["accuracy"]
    if accuracy.empty:
        return pd.Series(dtype=int)
    return accuracy.groupby(RUN)["level"].nunique()


def merged_coverage(coverages: Sequence[pd.DataFrame], source: pd.DataFrame) -> pd.DataFrame:
    """Each planned run once, in the order the parts plan them: its row from the part that
    supplies its data (``source``: run and part), else its most advanced state."""
    coverage = pd.concat([c.assign(part=i) for i, c in enumerate(coverages)], ignore_index=True)
    supplier = {tuple(r[:-1]): r[-1] for r in source[[*RUN, "part"]].itertuples(index=False)}
    supplies = [supplier.get((r.model, r.arm, r.seed)) == r.part for r in coverage.itertuples()]
    rank = coverage["state"].map({s: i for i, s in enumerate(STATES)}).fillna(len(STATES))
    coverage = coverage.assign(
        rank=np.where(supplies, -1, rank), order=coverage.groupby("run_id", sort=False).ngroup()
    )
    coverage = coverage.sort_values(["rank", "part"], kind="stable").drop_duplicates("run_id")
    return coverage.sort_values("order").drop(columns=["rank", "order", "part"])


def merge_inputs(parts: Sequence[Inputs], names: Sequence[str], notes: list[str]) -> Inputs:
    """One study from several: each run's rows from the part that holds most of its levels
    (the first of those on a tie; a note counts the runs held twice), coverage from that part too (the
    most advanced state for a run no part holds). Parts of different datasets are refused: a
    model would then need its dataset in its name, which the saved tables do not carry."""
    if len(parts) == 1:
        return parts[0]
    datasets = [p.study.datasets for p in parts]
    if any(sorted(d) != sorted(datasets[0]) for d in datasets):
        found = "; ".join(f"{n}: {', '.join(d)}" for n, d in zip(names, datasets, strict=True))
        raise ConfigError(f"these study folders hold different datasets ({found}); run figures.py "
                          "once per dataset")  # fmt: skip
    held = pd.DataFrame(
        [(i, *run, n) for i, p in enumerate(parts) for run, n in levels_held(p).items()],
        columns=["part", *RUN, "levels"],
    )
    source = held.sort_values(["levels", "part"], ascending=[False, True]).drop_duplicates(RUN)
    twice = len(held) - len(source)
    if twice:
        notes.append(f"{twice} run(s) held by more than one folder: each read from the one "
                     "holding most of its levels (the first given on a tie)")  # fmt: skip
    picked = [source.loc[source["part"] == i, RUN] for i in range(len(parts))]

    def joined(name: str) -> pd.DataFrame:
        tables = [p.masks if name == MASKS else p.frames[name] for p in parts]
        chosen = [t.merge(picked[i], on=RUN) for i, t in enumerate(tables) if not t.empty]
        return by_seed(pd.concat(chosen, ignore_index=True)) if chosen else pd.DataFrame()

    coverage = merged_coverage([p.study.coverage for p in parts], source)
    frames = {name: joined(name) for name in FRAMES}
    return Inputs(study_of(coverage), joined(MASKS), frames)
