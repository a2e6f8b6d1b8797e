"""Every paper figure a set of runs supports, drawn from tidy tables computed once (and only
when a figure needs them), saved as ``out/<name>.<fmt>``; figures the runs cannot support are
reported with the reason."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from maskstudy.analysis.embedding import MIN_RUNS, mask_embedding
from maskstudy.analysis.report import TABLES
from maskstudy.errors import ConfigError, StoreError, did_you_mean
from maskstudy.plots.accuracy import accuracy_vs_remaining
from maskstudy.plots.density import density_vs_level
from maskstudy.plots.embedding import mask_map
from maskstudy.plots.overlap import (
    criterion_heatmap,
    regime_overlap,
    seed_overlap,
    with_run_columns,
)
from maskstudy.plots.stability import stability_vs_level, weight_scatter
from maskstudy.plots.structure import (
    CONV_UNITS,
    LINEAR_UNITS,
    conv_mask_images,
    dead_units_vs_level,
)
from maskstudy.plots.style import CRITERIA, REGIMES, WHOLE, ordered, study_title
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.table import ALIASES, config_columns, flatten, runs_frame, varying_fields

FORMATS = ("pdf", "png", "svg")
MAX_PANELS = 6  # runs drawn side by side in P5 / P7 scatters


@dataclass
class FigureReport:
    """What :func:`draw_figures` did: files per drawn figure, reason per skipped one."""

    drawn: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"drew {len(self.drawn)} figure(s), skipped {len(self.skipped)}"]
        lines += [
            f"  {name} ({', '.join(p.suffix[1:] for p in paths)})"
            for name, paths in self.drawn.items()
        ]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


class Unsupported(Exception):
    """A figure the runs do not support; the message says why."""


class Tables:
    """The tidy tables of ``runs``, each computed on first use; ``given`` ones are reused.

    'runs' = ``runs_frame``, and every table of ``analysis.report.TABLES`` ('overlap' gets
    each pair's run columns joined)."""

    BUILDERS: dict[str, Callable[[list[RunLike]], pd.DataFrame]] = {"runs": runs_frame, **TABLES}

    def __init__(self, runs: list[RunLike], given: Mapping[str, pd.DataFrame] | None) -> None:
        unknown = sorted(set(given or {}) - set(self.BUILDERS))
        if unknown:
            raise ConfigError(f"unknown tables {unknown}; pass any of: {', '.join(self.BUILDERS)}")
        self.runs = runs
        self._frames = dict(given or {})
        self._joined = False

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._frames:
            self._frames[name] = self.BUILDERS[name](self.runs)
        if name == "overlap" and not self._joined:
            frame = self._frames[name]
            if not frame.empty:
                self._frames[name] = with_run_columns(frame, self["runs"])
            self._joined = True
        return self._frames[name]


# --- what each figure needs -------------------------------------------------------------------
def _pairs(t: Tables, along: str, why: str) -> pd.DataFrame:
    """The overlap table, if it compares runs along ``along`` at some pruned level."""
    overlap = t["overlap"]
    if overlap.empty or not ((overlap["along"] == along) & (overlap["level"] > 0)).any():
        raise Unsupported(why)
    return overlap


NO_SEEDS = "one seed per configuration: no seed pairs to compare"
NO_CRITERIA = "one pruning criterion: nothing to compare"
NO_REGIMES = "one regime: P4 compares the masks of regimes (rewind / finetune / reinit_prune ...)"


def _units(t: Tables, units: tuple[str, ...], why: str) -> pd.DataFrame:
    structure = t["structure"]
    if structure.empty or not set(units) & set(structure["unit"]):
        raise Unsupported(why)
    return structure


def _dead_units(t: Tables, units: tuple[str, ...], why: str) -> Figure:
    """P6, unless no unit of these kinds is entirely pruned anywhere (nothing to compare)."""
    structure = _units(t, units, why)
    shown = structure[structure["unit"].isin(units) & (structure["density"] < 1)]  # pruned
    if not (shown["dead"] > 0).any():
        raise Unsupported(
            f"no {' / '.join(units)} is entirely pruned at any level: nothing differs from "
            "chance to show (prune further to see dead units appear)"
        )
    return dead_units_vs_level(structure, units=units)


def _showcase(runs: Sequence[RunLike], criteria: Sequence[str] | None = None) -> list[RunLike]:
    """One run per criterion × regime × scope (of ``criteria`` if given), the lowest seed,
    in the fixed criterion / regime order: the runs drawn side by side."""
    chosen: dict[tuple[str, str, str], tuple[int, RunLike]] = {}
    for run in runs:
        c = config_columns(run)
        if criteria is not None and c["criterion"] not in criteria:
            continue
        key = (c["criterion"], c["regime"], c["scope"])
        if key not in chosen or c["seed"] < chosen[key][0]:
            chosen[key] = (c["seed"], run)
    order = [
        (c, r, s)
        for c in ordered([k[0] for k in chosen], CRITERIA)
        for r in ordered([k[1] for k in chosen], REGIMES)
        for s in ordered([k[2] for k in chosen], ("layer", "global"))
    ]
    return [chosen[key][1] for key in order if key in chosen][:MAX_PANELS]


def _common_level(runs: Sequence[RunLike]) -> int:
    """The deepest level every one of ``runs`` completed."""
    return min(max(run.levels) for run in runs)


def _conv_masks(t: Tables) -> Figure:
    structure = _units(t, ("kernel",), "no conv layers: P5 draws conv kernels")
    kernels = structure[structure["unit"] == "kernel"]
    layer = kernels.sort_values("groups", kind="stable").iloc[-1]["layer"]  # most kernels
    shown = _showcase(t.runs)
    level = _common_level(shown)
    if level == 0:
        raise Unsupported("no pruned level yet: every kernel is dense")
    return conv_mask_images(shown, level, layer)


def _weight_scatter(t: Tables) -> Figure:
    criterion = ordered([run.config.prune.criterion for run in t.runs], CRITERIA)[0]
    shown = [run for run in _showcase(t.runs, [criterion]) if len(run.levels) > 1]
    if not shown:
        raise Unsupported("no run has two levels: the scatter compares level t with t + 1")
    return weight_scatter(shown, _common_level(shown))


def _seed_layers(t: Tables) -> Figure:
    overlap = _pairs(t, "seed", NO_SEEDS)
    if overlap["layer"].nunique() <= 2:
        raise Unsupported("one masked layer: the whole-network figure shows it")
    return seed_overlap(overlap, metrics=("lift",), layers=None)


def _criterion_layers(t: Tables) -> Figure:
    overlap = _pairs(t, "prune.criterion", NO_CRITERIA)
    layers = [lay for lay in dict.fromkeys(overlap["layer"]) if lay != WHOLE]
    if len(layers) < 2:
        raise Unsupported("one masked layer: the whole-network heatmap shows it")
    return criterion_heatmap(overlap, layers=layers, value="lift")


def _layerwise_vs_global_density(t: Tables) -> Figure:
    frame = t["runs"]
    scopes = set(frame["scope"])
    if len(scopes) < 2:
        raise Unsupported(
            f"one pruning scope ({', '.join(map(str, scopes))}): P8 compares layerwise with "
            "global pruning"
        )
    both = frame.groupby(["criterion", "regime"])["scope"].transform("nunique") > 1
    if not both.any():
        raise Unsupported("no criterion × regime was run under both pruning scopes")
    return density_vs_level(frame[both])


def _mask_map(t: Tables) -> Figure:
    """Masks of the runs with a pruned level, at the deepest level all of them completed."""
    pruned = [run for run in t.runs if max(run.levels) > 0]
    if len(pruned) < MIN_RUNS:
        raise Unsupported(
            f"{len(pruned)} run(s) with a pruned level: a map of masks needs at least {MIN_RUNS}"
        )
    return mask_map(mask_embedding(pruned, _common_level(pruned)))


def _method_pairs(t: Tables) -> pd.DataFrame:
    """P4's rows: runs compared along the regime, and branches along their kind (with their
    parent and with each other), each side named as the figures name its method."""
    overlap = t["overlap"]
    if overlap.empty:
        raise Unsupported(NO_REGIMES)
    rows = overlap[overlap["along"].isin(["regime", "branch.kind"]) & (overlap["level"] > 0)]
    if rows.empty:
        raise Unsupported(NO_REGIMES)
    method = t["runs"].drop_duplicates("run_id").set_index("run_id")["regime"]
    return rows.assign(
        along="regime", value_a=rows["run_a"].map(method), value_b=rows["run_b"].map(method)
    )


def _early_stop(t: Tables) -> Figure:
    frame = t["runs"]
    if "early_stop_step" not in frame or frame["early_stop_step"].isna().all():
        raise Unsupported("the runs record no early-stop iteration")
    if "step" in frame and (frame["early_stop_step"] == frame["step"]).all():
        raise Unsupported(
            "every level was evaluated once, at its end, so its early-stop iteration is its "
            "last step: evaluate more often (train.eval_every) to see when each level peaks"
        )
    # steps are multiples of the evaluation period: bands of such values hide the lines
    return accuracy_vs_remaining(frame, metric="early_stop_step", band="none")


def _stability(t: Tables) -> Figure:
    stability = t["stability"]
    if stability.empty or not (stability["level"] > 0).any():
        raise Unsupported("no pruned level: stability compares levels t − 1 and t")
    return stability_vs_level(stability)


# Figure name → how to draw it from the tables (raising Unsupported when the runs cannot).
FIGURES: dict[str, Callable[[Tables], Figure]] = {
    "p1_accuracy": lambda t: accuracy_vs_remaining(t["runs"]),
    "p1_early_stop": _early_stop,
    "p2_seed_overlap": lambda t: seed_overlap(_pairs(t, "seed", NO_SEEDS)),
    "p2_seed_overlap_layers": _seed_layers,
    "p3_criterion_heatmap": lambda t: criterion_heatmap(
        _pairs(t, "prune.criterion", NO_CRITERIA), value="lift"
    ),
    "p3_criterion_heatmap_layers": _criterion_layers,
    "p4_regime_overlap": lambda t: regime_overlap(_method_pairs(t)),
    "p5_conv_masks": _conv_masks,
    "p6_dead_conv_units": lambda t: _dead_units(
        t, CONV_UNITS, "no conv layers: no kernels, filters or channels"
    ),
    "p6_dead_linear_units": lambda t: _dead_units(t, LINEAR_UNITS, "no linear layers"),
    "p7_stability": _stability,
    "p7_weight_scatter": _weight_scatter,
    "p8_layer_density": _layerwise_vs_global_density,
    "mds_masks": _mask_map,
}


# Figures that compare runs across the other config fields (drawn once over all runs).
ACROSS = ("p8_layer_density",)
# what the figures themselves tell apart (a branch is its own method: runs.regimes.method_name)
METHOD_FIELDS = (
    "prune.criterion",
    "regime",
    "seed",
    "branch.kind",
    "branch.parent",
    "branch.first",
)


def split_runs(runs: Sequence[RunLike]) -> list[tuple[str, str, list[RunLike]]]:
    """(file suffix, title, runs) per combination of the config fields that vary besides
    criterion, regime and seed (scope, learning rate, …): figures average over seeds only,
    never over those. The title names the group in words (model, dataset, seed count and the
    other fields: 'Conv-2 (width 0.25) on scikit-learn digits, 2 seeds, scope global'); the
    suffix is '' when nothing else varies, else e.g. '__scope-global' or, with two fields,
    '__model-conv2__width-0.25'."""
    fields = [f for f in varying_fields(runs) if f not in METHOD_FIELDS]
    groups: dict[tuple[str, ...], list[RunLike]] = {}
    for run in runs:
        flat = flatten(run.config.to_dict())
        groups.setdefault(tuple(str(flat[f]) for f in fields), []).append(run)
    named = []
    for key, members in sorted(groups.items()):
        pairs = [(ALIASES.get(f, f), value) for f, value in zip(fields, key, strict=True)]
        suffix = "".join(f"__{name.split('.')[-1]}-{value}" for name, value in pairs)
        shown = [(n, v) for n, v in pairs if n not in ("model", "model.width", "dataset")]
        extra = ", ".join(
            f"{name.split('.')[-1].replace('_', ' ')} {value}" for name, value in shown
        )
        named.append((re.sub(r"[^A-Za-z0-9._\-]+", "-", suffix), _title(members, extra), members))
    return named


def _title(runs: Sequence[RunLike], extra: str) -> str:
    """The group's model, dataset and seed count in words (figures.style.study_title)."""
    first = runs[0].config
    seeds = len({run.config.seed for run in runs})
    return study_title(first.model.name, first.model.width, first.data.name, seeds, extra)


def _subset(tables: Mapping[str, pd.DataFrame] | None, runs: list[RunLike]) -> dict:
    """The rows of ``tables`` that belong to ``runs`` (an overlap row: by its first run)."""
    ids = {config_columns(run)["run_id"] for run in runs}
    return {
        name: frame[frame["run_a" if name == "overlap" else "run_id"].isin(ids)]
        for name, frame in (tables or {}).items()
        if not frame.empty
    }


def draw_figures(
    runs: Sequence[RunLike],
    out: str | Path,
    formats: Sequence[str] = ("pdf", "png"),
    tables: Mapping[str, pd.DataFrame] | None = None,
    names: Sequence[str] | None = None,
) -> FigureReport:
    """Draw every figure of :data:`FIGURES` (or of ``names``) that ``runs`` support into
    ``out/<name>.<fmt>``, close it, and report which were drawn and which skipped, and why.

    Runs without a completed level are left out. When config fields other than criterion,
    regime and seed vary (e.g. scope), each figure is drawn per combination of them, named
    ``<name>__<field>-<value>`` (see :func:`split_runs`); P8 compares scopes over all runs.
    ``tables`` may hold any of 'runs', 'overlap', 'structure', 'stability' (e.g. from
    ``maskstudy analyze``); the others are computed once, when a figure first needs them.
    Figures: P1 accuracy and early-stop iteration vs % remaining, P2 seed overlap (whole
    network; lift per layer), P3 criterion heatmaps, P4 regime overlap, P5 conv mask images,
    P6 dead conv / linear groups, P7 stability curves and weight scatter, P8 per-layer
    density by scope, the MDS map of masks.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(
            f"formats = {tuple(formats)!r}: {', '.join(map(repr, bad)) or 'none given'} not "
            f"supported; choose from: {', '.join(FORMATS)}"
        )
    names = list(FIGURES) if names is None else list(names)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        hints = "".join(did_you_mean(n, FIGURES) for n in unknown)
        raise ConfigError(f"unknown figures {unknown}{hints}; choose from: {', '.join(FIGURES)}")
    done = [run for run in runs if run.levels]
    if not done:
        raise StoreError("no completed level in these runs: nothing to draw yet")
    plan = [(name, "", "", Tables(done, tables)) for name in names if name in ACROSS]
    for suffix, title, members in split_runs(done):
        t = Tables(members, _subset(tables, members) if suffix else tables)
        plan += [(name, suffix, title, t) for name in names if name not in ACROSS]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = FigureReport()
    for name, suffix, title, t in plan:
        try:
            fig = FIGURES[name](t)
        except (Unsupported, ConfigError) as why:  # the runs lack what the figure needs
            report.skipped[name + suffix] = str(why)
            continue
        if title:  # name the group on the figure too, before its own title
            own = fig.get_suptitle()
            fig.suptitle(f"{title}: {own}" if own else title, fontsize=8)
        report.drawn[name + suffix] = save_figure(fig, out, name + suffix, formats)
    return report


def save_figure(fig: Figure, out: Path, name: str, formats: Sequence[str]) -> list[Path]:
    """Write ``fig`` as ``out/<name>.<format>`` for each format, then close it; the paths."""
    try:
        paths = [Path(out) / f"{name}.{fmt}" for fmt in formats]
        for path in paths:
            fig.savefig(path)
    finally:
        plt.close(fig)
    return paths
