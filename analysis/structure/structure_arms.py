"""The conv-structure study's runs and tables: its arms named in words, the runs of one or more
sweeps read as a ``Study``, and the tables over seeds and the key table the figure script
(figures.py) writes and prints. Also read by lmc.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import maskstudy
from maskstudy.analysis.lmc import error_barrier
from maskstudy.analysis.stability import stability_table
from maskstudy.analysis.structure_study import KEYS
from maskstudy.plots.bands import mean_band
from maskstudy.plots.structure import CONV_UNITS
from maskstudy.plots.style import CRITERIA, DATASET_NAMES, MODEL_NAMES, REGIMES
from maskstudy.runs.store import Run
from maskstudy.runs.table import flatten
from maskstudy.steps import Steps

REFERENCE = "ln_structured"  # the structured arm the others are compared with
TICKET = ("magnitude", "layer", "rewind", False)  # (criterion, scope, regime, late rewind)
RANDOM = ("random", "layer", "rewind", False)
FINETUNE = ("magnitude", "layer", "finetune", False)
REINIT = ("magnitude", "layer", "reinit_prune", False)
STABILITY = ("s1", "pearson", "sign_agreement", "persistence")  # the table's measures
LMC_FILES = "lmc_level??_seeds1-2.csv"  # lmc.py's curves (from the level's own start)
KEY_LEVELS = 3  # the sparsest levels of each model in the printed key table
ONE_INPUT = "one input channel: a filter is a kernel"  # the key table's note
DENSITY = "L1-removed filter density [95% CI]"  # their alive weights ÷ the other filters'
MIN_EXPECTED = 0.5  # an index is given (and drawn) only where chance expects this many dead units
REGIME_WORDS = {"finetune": "finetune", "reinit_prune": "reinit, prune again"}
REWIND_WORDS = {"rewind": "rewind", "lr_rewind": "LR rewind"}


# --- arms and runs ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """One training recipe of the study (criterion, scope, regime, rewind point), named in words."""

    name: str
    criterion: str
    scope: str
    regime: str
    late: bool  # rewinds to a step k > 0

    @property
    def variant(self) -> int:
        """0 for layerwise from θ0; else a line style of its own (style.method_style)."""
        return int(self.late) + 2 * (self.scope != "layer")

    @property
    def key(self) -> tuple[str, str, str, bool]:
        return (self.criterion, self.scope, self.regime, self.late)

    @property
    def order(self) -> tuple[Any, ...]:
        """Sort key: criteria and regimes in the figures' fixed order, layerwise scope first."""
        criterion = CRITERIA.index(self.criterion) if self.criterion in CRITERIA else len(CRITERIA)
        regime = REGIMES.index(self.regime) if self.regime in REGIMES else len(REGIMES)
        return (criterion, self.scope != "layer", regime, self.late, self.name)


def duration_words(text: str) -> str:
    """'1ep' → '1 ep', '2ep50it' → '2 ep 50 it': a rewind point as a legend writes it."""
    steps = Steps.parse(text, "rewind_to")
    parts = [f"{steps.epochs:g} ep"] if steps.epochs else []
    return " ".join(parts + ([f"{steps.iterations} it"] if steps.iterations else []))


def rewinds_late(flat: dict[str, Any]) -> bool:
    """Whether the run's levels restart from a step k > 0 (θk) of the dense trajectory."""
    return flat["regime"] in REWIND_WORDS and not Steps.parse(flat["rewind_to"]).is_zero


def criterion_words(flat: dict[str, Any]) -> str:
    """'magnitude', 'magnitude (global)', 'L1 filters (ln_structured)': criterion and scope."""
    criterion = flat["prune.criterion"]
    if criterion in ("ln_structured", "random_structured"):
        units = "filters" if flat["prune.dim"] == 0 else "input channels"
        norm = f"L{flat['prune.n']}" if criterion == "ln_structured" else "random"
        criterion = f"{norm} {units} ({criterion})"
    return criterion + (" (global)" if flat["prune.scope"] == "global" else "")


def regime_words(flat: dict[str, Any]) -> str:
    """'rewind θ0', 'rewind θk (1 ep)', 'finetune', 'reinit, prune again': where levels start."""
    regime = flat["regime"]
    if regime not in REWIND_WORDS:
        return REGIME_WORDS.get(regime, regime)
    point = f"θk ({duration_words(flat['rewind_to'])})" if rewinds_late(flat) else "θ0"
    return f"{REWIND_WORDS[regime]} {point}"


def arm_of(flat: dict[str, Any]) -> Arm:
    """The arm of a flattened run config."""
    name = f"{criterion_words(flat)} · {regime_words(flat)}"
    return Arm(
        name, flat["prune.criterion"], flat["prune.scope"], flat["regime"], rewinds_late(flat)
    )


def model_words(flat: dict[str, Any]) -> str:
    """'LeNet-5', 'Conv-2 (width 0.25)': the model as titles name it."""
    width = flat["model.width"]
    name = MODEL_NAMES.get(flat["model.name"], flat["model.name"])
    return name + (f" (width {width:g})" if width != 1 else "")


def dataset_words(name: str) -> str:
    """'Fashion-MNIST': a dataset as titles name it."""
    return DATASET_NAMES.get(name, name)


@dataclass(frozen=True)
class Member:
    """A run of the study with its model and arm."""

    run: Run
    model: str
    arm: Arm
    seed: int

    @property
    def ids(self) -> dict[str, Any]:
        return {"model": self.model, "arm": self.arm.name, "seed": self.seed}


@dataclass
class Study:
    """The started ordinary runs of the sweeps (branches aside), the arms and models the
    sweeps plan in order, and the state of every planned run."""

    members: list[Member]
    arms: list[Arm]
    models: list[str]
    datasets: list[str]
    coverage: pd.DataFrame

    def arm(self, key: tuple[str, str, str, bool]) -> Arm | None:
        """The arm with this (criterion, scope, regime, late) key, if the sweeps plan it."""
        return next((a for a in self.arms if a.key == key), None)

    @property
    def references(self) -> list[Arm]:
        return [a for a in self.arms if a.criterion == REFERENCE]

    @property
    def dataset(self) -> str:
        return " and ".join(map(dataset_words, self.datasets))

    def arrange(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame``'s rows in study order: model, layer, level, arm, unit, seed."""
        ranks = {
            "model": {m: i for i, m in enumerate(self.models)},
            "arm": {a.name: i for i, a in enumerate(self.arms)},
            "unit": {u: i for i, u in enumerate(CONV_UNITS)},
        }
        keys = [c for c in ("model", "layer", "level", "arm", "unit", "seed") if c in frame]
        return frame.sort_values(
            keys, key=lambda c: c.map(ranks[c.name]) if c.name in ranks else c, ignore_index=True
        )


def trained_on(run: Run | None) -> str:
    """The CPU the run's config.json records ('x86_64 AVX2'; '' for runs not started or
    created before maskstudy recorded it): a seed trains other bytes on another vector unit."""
    return "" if run is None else run.info.get("versions", {}).get("cpu", "")


def read_study(sweep_dirs: Sequence[Path]) -> Study:
    """Every ordinary run the sweeps plan (a run in two sweeps once), its arm and model (named
    with its dataset when the sweeps hold several), and its state on disk."""
    planned: dict[str, tuple[dict[str, Any], pd.Series, Run | None, Path]] = {}
    for path in sweep_dirs:
        sweep = maskstudy.open_sweep(path)
        started = {run.run_id: run for run in sweep.runs}
        status = sweep.status().set_index("run_id")
        for cfg in sweep.spec.configs:
            run_id = cfg.run_id()
            if not cfg.is_branch and run_id not in planned:
                planned[run_id] = (
                    flatten(cfg.to_dict()),
                    status.loc[run_id],
                    started.get(run_id),
                    path,
                )
    datasets = list(dict.fromkeys(flat["data.name"] for flat, *_ in planned.values()))
    members, states = [], []
    for run_id, (flat, state, run, path) in planned.items():
        where = f" · {dataset_words(flat['data.name'])}" if len(datasets) > 1 else ""
        ids = {"model": model_words(flat) + where, "arm": arm_of(flat), "seed": flat["seed"]}
        arm = ids["arm"]
        states.append({**ids, "arm": arm.name, "run_id": run_id, "sweep": str(path),
                       "state": state["state"], "levels": state["levels"],
                       "criterion": arm.criterion, "scope": arm.scope, "regime": arm.regime,
                       "late": arm.late, "dataset": flat["data.name"],
                       "cpu": trained_on(run)})  # fmt: skip
        if run is not None:
            members.append(Member(run, **ids))
    arms = sorted({arm_of(flat) for flat, *_ in planned.values()}, key=lambda a: a.order)
    models = list(dict.fromkeys(s["model"] for s in states))
    return Study(members, arms, models, datasets, pd.DataFrame(states))


def missing_report(study: Study) -> str:
    """Per model and arm: how many runs are done, and the seeds of the others by state and
    levels done ('pending (0/8): s3, s4')."""
    lines = []
    for (model, arm), rows in study.arrange(study.coverage).groupby(["model", "arm"], sort=False):
        rest = rows[rows["state"] != "done"].groupby(["state", "levels"], sort=False)["seed"]
        others = [
            f"{state} ({levels}): s{', s'.join(map(str, seeds))}" for (state, levels), seeds in rest
        ]
        done = f"{(rows['state'] == 'done').sum()}/{len(rows)} done"
        lines.append(f"  {model} · {arm}: {'; '.join([done, *others])}")
    return "\n".join(lines)


# --- tables over seeds ------------------------------------------------------------------------
def with_ids(table: pd.DataFrame, members: Sequence[Member]) -> pd.DataFrame:
    """``table`` (with a run_id column) with the study's model, arm and seed of each run in
    place of the config columns of those names."""
    ids = pd.DataFrame([{"run_id": m.run.run_id, **m.ids} for m in members])
    own = [c for c in ids.columns if c != "run_id" and c in table]
    return table.drop(columns=own).merge(ids, on="run_id")


def stability_seeds(members: Sequence[Member], frame: pd.DataFrame) -> pd.DataFrame:
    """stability_table of the runs' pruned levels: per run (model, arm, seed), layer ('all' =
    whole network) and level, the STABILITY measures at the level's % of the network remaining."""
    table = stability_table([m.run for m in members])
    table = with_ids(table[table["level"] > 0], members)
    table = table.merge(frame[["run_id", "level", "percent_remaining"]], on=["run_id", "level"])
    measures = [m for m in STABILITY if m in table]
    return table[["model", "arm", "seed", "layer", "level", "percent_remaining", *measures]]


def stability_summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per model, layer, arm, level and measure of :func:`stability_seeds`: the mean and 95 %
    interval over seeds, at the level's mean % remaining."""
    keys = ["model", "layer", "arm", "level"]
    x = seeds.groupby(keys)["percent_remaining"].mean().reset_index()
    parts = [
        mean_band(seeds, measure, keys).assign(measure=measure).merge(x, on=keys)
        for measure in STABILITY
        if measure in seeds and seeds[measure].notna().any()
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def lmc_seeds(members: Sequence[Member], frame: pd.DataFrame) -> pd.DataFrame:
    """Per run and level probed by lmc.py (RUN/analysis/lmc_levelLL_seeds1-2.csv): the error
    barriers on the test and train splits (fractions) at the level's % remaining."""
    rows = []
    for member in members:
        for path in sorted((member.run.path / "analysis").glob(LMC_FILES)):
            curve = pd.read_csv(path)
            level = int(path.stem.removeprefix("lmc_level")[:2])
            barriers = {
                f"barrier_{split}": error_barrier(curve[curve["split"] == split])
                for split in ("test", "train")
            }
            rows.append({**member.ids, "run_id": member.run.run_id, "level": level, **barriers})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).merge(frame[["run_id", "level", "percent_remaining"]])
    return table.drop(columns="run_id")


def lmc_summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """The test error barrier per model, arm and level: mean over seeds [95 % interval], in
    the mean_band columns the curve figures read."""
    keys = ["model", "arm", "level"]
    x = seeds.groupby(keys)["percent_remaining"].mean().reset_index()
    return mean_band(seeds, "barrier_test", keys).merge(x, on=keys)


def accuracy_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy per model, arm and level: mean and 95 % interval over seeds, % remaining."""
    keys = ["model", "arm", "level"]
    x = frame.groupby(keys)["percent_remaining"].mean().reset_index()
    return mean_band(frame, "test_acc", keys).merge(x, on=keys)


# --- the key table -----------------------------------------------------------------------------
def interval(mean: float, low: float, high: float) -> str:
    """'3.21 [2.1, 4.5]' (3 significant digits); the mean alone without an interval (one
    value) or with a collapsed one (every seed the same)."""
    if not np.isfinite(low) or low == high == mean:
        return f"{mean:.3g}"
    return f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def lift_cell(row: Any) -> str:
    """A resemblance row's lift [interval], with the seeds it is defined for when not all."""
    cell = interval(row.lift, row.lift_lo, row.lift_hi)
    return (
        cell if row.lift_seeds == row.seeds else f"{cell} ({row.lift_seeds} of {row.seeds} seeds)"
    )


def index_cell(row: Any) -> str:
    """The index [interval]; where chance expects fewer than MIN_EXPECTED dead units (a huge
    ratio by construction) the mean dead count [interval] and the chance expectation instead."""
    if row.expected >= MIN_EXPECTED or row.dead == 0:
        return interval(row.index, row.index_lo, row.index_hi)
    return f"{interval(row.dead, row.dead_lo, row.dead_hi)} dead (chance {row.expected:.1g})"


def lift_cells(resemblance: pd.DataFrame) -> pd.DataFrame:
    """Per model, layer, arm and level (unit filter): the dead-filter lift cell(s)."""
    lifts = resemblance.dropna(subset=["lift"])
    lifts = lifts.assign(cell=[lift_cell(r) for r in lifts.itertuples()])
    cells = lifts.groupby(KEYS)["cell"].agg("; ".join).reset_index().assign(unit="filter")
    return cells.rename(columns={"cell": "lift [95% CI]"})


def density_cells(resemblance: pd.DataFrame) -> pd.DataFrame:
    """Per model, layer, arm and level (unit filter): the removed filters' density ratio
    [interval] p=… cell(s)."""
    rows = resemblance.dropna(subset=["density_ratio"])
    cell = [
        f"{interval(r.density_ratio, r.density_ratio_lo, r.density_ratio_hi)} "
        f"p={r.density_p_fisher:.2g}"
        for r in rows.itertuples()
    ]
    cells = rows.assign(cell=cell).groupby(KEYS)["cell"].agg("; ".join).reset_index()
    return cells.assign(unit="filter").rename(columns={"cell": DENSITY})


def key_table(index: pd.DataFrame, resemblance: pd.DataFrame) -> pd.DataFrame:
    """Per model, layer, level, arm and unit: index [interval] (dead count where chance expects
    almost none), Fisher p and, for filters, the lift over chance of the dead-filter overlap
    with the reference arm [interval] and the alive weights of the filters it removed ÷ of
    the others (DENSITY)."""
    table = index.assign(
        left=index["percent_remaining"].round(1),
        cell=[index_cell(r) for r in index.itertuples()],
        p=index["p_fisher"].map(lambda p: f"{p:.2g}"),
    )
    lift, density = "lift [95% CI]", DENSITY
    if resemblance.empty:
        table[lift], table[density] = "", ""
    else:
        for column, cells in (
            (lift, lift_cells(resemblance)),
            (density, density_cells(resemblance)),
        ):
            table = table.merge(cells, on=[*KEYS, "unit"], how="left")
            table = table.astype({column: object}).fillna({column: ""})  # no cell: float nan
    single = pd.MultiIndex.from_frame(
        index.loc[(index["unit"] == "channel") & (index["groups"] == 1), ["model", "layer"]]
    )
    one_input = (table["unit"] == "filter") & pd.MultiIndex.from_frame(
        table[["model", "layer"]]
    ).isin(single)
    table["note"] = table["note"].where(~one_input, ONE_INPUT)
    table = table.rename(columns={"left": "% of layer left", "cell": "index [95% CI]"})
    columns = ["model", "layer", "level", "% of layer left", "arm", "unit", "seeds"]
    return table[[*columns, "index [95% CI]", "p", lift, density, "note"]]


def key_wide(key: pd.DataFrame) -> pd.DataFrame:
    """The key table as printed: a row per model, layer, level and arm, a column per unit
    holding 'index [95% CI] p=…' ('none dead'; '–' where no unit can die by chance), then
    the filter lift."""
    rows = ["model", "layer", "level", "% of layer left", "arm", "seeds"]
    cell = (key["index [95% CI]"] + " p=" + key["p"]).where(key["note"] != "none dead", "none dead")
    cell = cell.where(~key["note"].str.startswith("index nan"), "–")
    cells = key.assign(cell=cell.where(key["note"] != ONE_INPUT, "= kernel"))
    wide = cells.set_index([*rows, "unit"])["cell"].unstack("unit")
    wide = wide.reindex(pd.MultiIndex.from_frame(cells[rows].drop_duplicates()))
    filters = cells[cells["unit"] == "filter"].set_index(rows)["lift [95% CI]"]
    wide["filter lift"] = filters.reindex(wide.index).fillna("")
    densities = cells[cells["unit"] == "filter"].set_index(rows)[DENSITY]
    wide["L1-removed density"] = densities.reindex(wide.index).fillna("")
    units = [u for u in CONV_UNITS if u in wide]
    return wide[[*units, "filter lift", "L1-removed density"]].reset_index()


def sparsest(table: pd.DataFrame, levels: int = KEY_LEVELS) -> pd.DataFrame:
    """The rows of each model's ``levels`` highest (sparsest) levels."""
    deepest = table.groupby("model")["level"].transform(
        lambda lv: lv >= sorted(lv.unique())[-levels:][0]
    )
    return table[deepest.astype(bool)]
