"""The conv-structure study's library (maskstudy.analysis.structure_study) against independent
references on hand-made masks and frames, and its script (analysis/structure/figures.py) on a tiny sweep: conv2 on
synthetic 8×8 inputs, magnitude / random / L1-filter arms × 2 seeds × levels 0–2. Its tables
hold the expected columns, its structure index and combined p-values equal an independent
computation, it draws every figure, and a sweep with arms or levels missing is reported, not
a crash."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_CONV_BASE
from scipy import stats

import maskstudy
from maskstudy.analysis.stats import bootstrap_ci
from maskstudy.analysis.structure_study import (
    conv_masks,
    convergence_summary,
    dead_unit_seeds,
    fisher_p,
    last_epoch_gains,
    over_seeds,
    structure_index_summary,
)
from maskstudy.errors import ConfigError

SCRIPT = Path(__file__).resolve().parents[1] / "analysis" / "structure" / "figures.py"
FIGURES = (
    "structure_index",
    "dead_units",
    "kernel_histograms",
    "mask_images",
    "stability",
    "accuracy",
)
TINY_STRUCTURE_SWEEP = (
    TINY_CONV_BASE
    + """
[[tied]]
"prune.criterion" = ["magnitude", "random", "ln_structured"]
"prune.layer_amounts" = [{output = 0.2}, {output = 0.2}, {}]
"prune.exclude" = [[], [], ["output"]]
"""
)
MAGNITUDE = "magnitude · rewind θ0"
ARGS = ["--format", "png", "--permutations", "9"]


def study_script(file: str, name: str) -> ModuleType:
    """One of analysis/structure/'s scripts, loaded as a module registered under ``name`` (its
    dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(file))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def figures():
    """figures.py as a module, unregistered after the module's tests."""
    module = study_script("figures.py", "structure_figures")
    yield module
    del sys.modules[module.__name__]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    from maskstudy.runs.executors import run_sweep

    root = tmp_path_factory.mktemp("structure_sweep")
    (root / "structure.toml").write_text(TINY_STRUCTURE_SWEEP)
    run_sweep(root / "structure.toml", root / "sweep", jobs=1, progress=False)
    return root / "sweep"


@pytest.fixture(scope="module")
def study(figures, sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return out, figures.main([str(sweep), "--out", str(out), *ARGS])


COLUMNS = {
    "coverage": {"model", "arm", "seed", "state", "levels", "criterion", "scope", "regime", "late",
                 "dataset", "cpu"},
    "structure_seeds": {"layer", "arm", "level", "seed", "unit", "dead", "expected", "p_value"},
    "structure_index": {"unit", "dead", "dead_lo", "dead_hi", "expected", "index", "index_lo",
                        "index_hi", "p_fisher", "seeds", "percent_remaining", "note"},
    "kernel_counts": {"layer", "arm", "level", "tv", "tv_lo", "tv_hi", "p_fisher",
                      "dead_or_full", "chance_dead_or_full"},
    "resemblance": {"arm", "reference", "lift", "lift_lo", "lift_hi", "p_fisher", "lift_seeds",
                    "density_ratio", "density_ratio_lo", "density_ratio_hi", "density_p_fisher"},
    "stability": {"model", "layer", "arm", "level", "measure", "mean", "lo", "hi", "n"},
    "accuracy": {"model", "arm", "level", "percent_remaining", "mean", "lo", "hi", "n"},
    "convergence": {"model", "arm", "level", "test_acc_gain", "test_acc_gain_lo",
                    "test_acc_gain_hi", "test_acc_gain_max", "train_loss_gain"},
    "key_table": {"layer", "level", "arm", "unit", "index [95% CI]", "p", "lift [95% CI]",
                  "L1-removed filter density [95% CI]"},
    "dead_sources": {"model", "layer", "arm", "level", "ratio", "ratio_lo", "ratio_hi",
                     "ratio_seeds", "dead_sources", "p_fisher"},
    "dead_sources_seeds": {"layer", "source", "seed", "dead_sources", "alive_dead_source",
                           "alive_live_source", "ratio", "p_value", "picks"},
}  # fmt: skip


def test_tables_hold_their_columns(study):
    out, _ = study
    for name, columns in COLUMNS.items():
        table = pd.read_csv(out / f"{name}.csv")
        assert columns <= set(table.columns), (name, columns - set(table.columns))
        assert len(table), name
    arms = set(pd.read_csv(out / "structure_index.csv")["arm"])
    assert arms == {MAGNITUDE, "random · rewind θ0", "L1 filters (ln_structured) · rewind θ0"}


def test_index_is_mean_dead_over_the_hypergeometric_expectation(study, sweep):
    out, _ = study
    runs = maskstudy.open_sweep(sweep).select(criterion="magnitude")
    masks = [run.mask(2)["conv2.weight"].numpy() for run in runs]
    dead = [int((~m.any(axis=(2, 3))).sum()) for m in masks]  # kernels with no weight kept
    expected = [m.shape[0] * m.shape[1] * stats.hypergeom(m.size, m.sum(), 9).pmf(0) for m in masks]
    index = pd.read_csv(out / "structure_index.csv")
    row = index[
        (index["arm"] == MAGNITUDE) & (index["layer"] == "conv2.weight")
        & (index["level"] == 2) & (index["unit"] == "kernel")
    ].iloc[0]  # fmt: skip
    assert len(runs) == 2 and row["seeds"] == 2
    assert row["expected"] == pytest.approx(np.mean(expected), rel=1e-9)
    assert row["index"] == pytest.approx(np.mean(dead) / np.mean(expected), rel=1e-9)
    assert row["index_lo"] <= row["index"] <= row["index_hi"]


def test_combined_p_is_fishers_over_the_seeds(study):
    out, _ = study
    for summary, seeds, keys in (
        ("structure_index", "structure_seeds", ["layer", "arm", "level", "unit"]),
        ("kernel_counts", "kernel_counts_seeds", ["layer", "arm", "level"]),
        ("resemblance", "resemblance_seeds", ["layer", "arm", "level", "reference"]),
    ):
        per_seed = pd.read_csv(out / f"{seeds}.csv")
        for _, row in pd.read_csv(out / f"{summary}.csv").iterrows():
            mine = per_seed[(per_seed[keys] == row[keys]).all(axis=1)]
            assert len(mine) == row["seeds"] == 2
            fisher = stats.combine_pvalues(mine["p_value"], method="fisher").pvalue
            assert row["p_fisher"] == pytest.approx(fisher, rel=1e-12)


def test_every_figure_is_drawn(study):
    out, report = study
    assert set(report.drawn) == set(FIGURES)
    assert set(report.skipped) == {"lmc"}  # no lmc.py curve in this sweep: its own test below
    assert all((out / f"{name}.png").stat().st_size > 10_000 for name in FIGURES)


def test_every_arm_has_its_own_colour(figures):
    arms = [figures.Arm("x", *key) for key in figures.ARM_COLOURS]
    colours = {figures.arm_style(a)["color"] for a in arms}
    assert len(colours) == len(figures.ARM_COLOURS)


def test_key_cells_count_dead_units_where_chance_expects_almost_none(figures):
    row = pd.Series({"index": 3e4, "index_lo": 0.0, "index_hi": 7e4, "dead": 0.6,
                     "dead_lo": 0.0, "dead_hi": 1.4, "expected": 2e-5})  # fmt: skip
    cell = sys.modules["structure_arms"].index_cell(next(pd.DataFrame([row]).itertuples()))
    assert cell == "0.6 [0, 1.4] dead (chance 2e-05)"
    common = row.copy()
    common[["index", "index_lo", "index_hi", "expected"]] = [1.2, 1.1, 1.3, 0.5]
    assert (
        sys.modules["structure_arms"].index_cell(next(pd.DataFrame([common]).itertuples()))
        == "1.2 [1.1, 1.3]"
    )


def test_a_filter_of_a_one_input_layer_is_noted_as_a_kernel(study):
    out, _ = study
    key = pd.read_csv(out / "key_table.csv").fillna("")
    index = pd.read_csv(out / "structure_index.csv")
    single = index[(index["unit"] == "channel") & (index["groups"] == 1)]["layer"].unique()
    assert len(single) > 0  # conv1 sees one grey channel
    filters = key[(key["unit"] == "filter")]
    assert (
        filters[filters["layer"].isin(single)]["note"] == "one input channel: a filter is a kernel"
    ).all()
    assert not (
        filters[~filters["layer"].isin(single)]["note"] == "one input channel: a filter is a kernel"
    ).any()


def test_mask_images_set_layers_with_several_inputs_side_by_side_when_two_exist(figures):
    arm, inputs = MAGNITUDE, {"conv1": 1, "conv2": 4, "conv3": 8}
    channels = [{"arm": arm, "unit": "channel", "model": "m", "layer": name, "level": 2,
                 "groups": n, "index": np.nan} for name, n in inputs.items()]  # fmt: skip
    index = pd.DataFrame([
        {"arm": arm, "unit": "kernel", "model": "m", "layer": layer, "level": level, "index": value}
        for layer, level, value in [("conv1", 2, 0.5), ("conv2", 1, 0.2), ("conv2", 2, 1.3),
                                    ("conv3", 2, 1.1), ("conv3", 1, np.nan)]
    ] + channels)  # fmt: skip
    picks = figures.most_and_least_structured(index, arm)
    assert [(p["layer"], p["index"]) for p in picks] == [("conv2", 1.3), ("conv3", 1.1)]
    one_wide = index[index["layer"] != "conv3"]
    picks = figures.most_and_least_structured(one_wide, arm)
    assert [(p["layer"], p["index"]) for p in picks] == [("conv2", 1.3), ("conv1", 0.5)]
    with pytest.raises(figures.Unsupported, match="1 conv layer"):
        figures.most_and_least_structured(index[index["layer"] == "conv2"], arm)


def tables_of(folder: Path) -> dict[str, str]:
    """Every CSV figures.py wrote into ``folder`` but coverage (it names the sweep folders)."""
    return {p.name: p.read_text() for p in sorted(folder.glob("*.csv")) if p.name != "coverage.csv"}


def test_a_study_run_in_pieces_gives_the_tables_of_one_sweep(figures, sweep, tmp_path):
    """Seed 0 in one sweep folder, seed 1 in another (two machines), each summarised by
    figures.py, then the two results folders merged: every table, LMC included, is the one the
    whole sweep gives, to the last digit; a results folder read again gives its own tables."""
    whole = tmp_path / "whole"
    shutil.copytree(sweep, whole)
    lmc = study_script("lmc.py", "structure_lmc_pieces")
    assert lmc.main([str(whole), "--model", "conv2", "--levels", "1", "--seeds", "0", "1"]) == 0
    figures.main([str(whole), "--out", str(tmp_path / "reference"), *ARGS])
    reference = tables_of(tmp_path / "reference")
    assert {"lmc.csv", "lmc_seeds.csv", "accuracy_seeds.csv", "stability_seeds.csv"} <= set(
        reference
    )
    for seed, other in ((0, 1), (1, 0)):
        shutil.copytree(whole, tmp_path / f"s{seed}",
                        ignore=lambda _, names, o=other: [n for n in names if f"-s{o}-" in n])  # fmt: skip
        figures.main([str(tmp_path / f"s{seed}"), "--out", str(tmp_path / f"piece{seed}"), *ARGS])
    assert tables_of(tmp_path / "piece0") != reference  # one seed alone is another study
    report = figures.main(
        [
            str(tmp_path / "piece1"),
            str(tmp_path / "piece0"),
            "--out",
            str(tmp_path / "merged"),
            *ARGS,
        ]
    )
    assert tables_of(tmp_path / "merged") == reference
    assert {*FIGURES, "lmc"} <= set(report.drawn)
    coverage = pd.read_csv(tmp_path / "merged" / "coverage.csv")
    assert (coverage["state"] == "done").all() and len(coverage) == 6
    assert coverage["cpu"].str.endswith(torch.backends.cpu.get_cpu_capability()).all()
    figures.main([str(tmp_path / "reference"), "--out", str(tmp_path / "again"), *ARGS])
    assert tables_of(tmp_path / "again") == reference


def test_pieces_of_different_datasets_or_from_an_older_script_are_refused(figures, study, tmp_path):
    out, _ = study
    other = tmp_path / "other"
    shutil.copytree(out, other)
    coverage = pd.read_csv(other / "coverage.csv")
    coverage.assign(dataset="mnist").to_csv(other / "coverage.csv", index=False)
    with pytest.raises(ConfigError, match="different datasets .* once per dataset"):
        figures.main([str(out), str(other), "--out", str(tmp_path / "x"), *ARGS])
    coverage.drop(columns=["criterion", "dataset"]).to_csv(other / "coverage.csv", index=False)
    with pytest.raises(ConfigError, match="lacks criterion, dataset: .* older figures.py"):
        figures.main([str(other), "--out", str(tmp_path / "y"), *ARGS])


def test_lmc_script_probes_once_and_the_figures_read_its_barriers(figures, sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    lmc = study_script("lmc.py", "structure_lmc")
    argv = [str(copy), "--model", "conv2", "--levels", "1", "--seeds", "0"]
    assert lmc.main(argv) == 0
    curves = sorted(copy.glob("*/analysis/lmc_level01_seeds1-2.csv"))
    assert len(curves) == 1 and "magnitude-rewind-s0" in curves[0].parent.parent.name
    stamp = curves[0].stat().st_mtime_ns
    assert lmc.main(argv) == 0 and curves[0].stat().st_mtime_ns == stamp  # resumed, not redone
    report = figures.main([str(copy), "--out", str(tmp_path / "out"), *ARGS])
    assert "lmc" in report.drawn
    curve = pd.read_csv(curves[0])
    test = curve[curve["split"] == "test"].sort_values("alpha")["error"]
    barrier = test.max() - (test.iloc[0] + test.iloc[-1]) / 2
    row = pd.read_csv(tmp_path / "out" / "lmc.csv").iloc[0]
    assert (row["arm"], row["level"], row["n"]) == (MAGNITUDE, 1, 1)
    assert row["mean"] == pytest.approx(barrier, abs=1e-12)


def test_a_lone_point_shows_its_interval_as_an_error_bar_and_a_line_as_a_band(figures):
    import matplotlib.pyplot as plt

    arm = figures.Arm(MAGNITUDE, "magnitude", "layer", "rewind", False)
    lone = pd.DataFrame({"percent_remaining": [2.9], "mean": [8.0], "lo": [6.0], "hi": [11.0]})
    fig, (left, right) = plt.subplots(1, 2)
    figures.banded_line(left, lone, arm, "mean", "lo", "hi")
    (bar,) = left.containers
    (segment,) = bar.lines[2][0].get_segments()
    assert segment[:, 1].tolist() == [6.0, 11.0]
    assert list(left.collections) == [bar.lines[2][0]]  # the error bar's segment, no band
    line = pd.concat([lone, lone.assign(percent_remaining=4.6)])
    figures.banded_line(right, line, arm, "mean", "lo", "hi")
    assert not right.containers and len(right.collections) == 1  # the band
    plt.close(fig)


@pytest.mark.parametrize(
    ("low", "high", "labels"),
    [(0.3, 3, ["0.5", "1", "2"]), (0.01, 1000, ["0.01", "0.1", "1", "10", "100", "1000"])],
)
def test_a_log_axis_is_labelled_between_decades_only_where_it_spans_few(figures, low, high, labels):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [low, high])
    figures.log_y(ax)
    fig.canvas.draw()
    ticks = [*ax.get_yticklabels(), *ax.get_yticklabels(minor=True)]
    shown = {t.get_position()[1]: t.get_text() for t in ticks if t.get_text()}
    assert [shown[v] for v in sorted(shown) if low <= v <= high] == labels
    plt.close(fig)


def test_convergence_pairs_each_long_run_with_its_twin_and_compares_per_level(sweep, tmp_path):
    from maskstudy.runs.executors import run_sweep

    convergence = study_script("convergence.py", "structure_conv")
    long_toml = (
        TINY_CONV_BASE.replace('"6it"', '"12it"') + '"prune.layer_amounts" = {output = 0.2}\n'
    )
    (tmp_path / "long.toml").write_text(long_toml)
    run_sweep(tmp_path / "long.toml", tmp_path / "long", jobs=1, progress=False)
    pairs = convergence.paired_runs(sweep, tmp_path / "long")
    assert len(pairs) == 2
    for short, long in pairs:
        assert (short.config.seed, short.config.prune.criterion) == (long.config.seed, "magnitude")
        assert short.config.train.duration == "6it" and long.config.train.duration == "12it"
    assert convergence.main([str(sweep), str(tmp_path / "long"), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "convergence_long.csv")
    gains = [
        pair[1].level_metrics(2)["test_acc"] - pair[0].level_metrics(2)["test_acc"]
        for pair in pairs
    ]
    row = table[(table["what"] == "test accuracy") & (table["level"] == 2)].iloc[0]
    assert row["gain"] == pytest.approx(np.mean(gains), abs=1e-12) and row["seeds"] == 2
    kernels = table[(table["what"] == "kernel index") & (table["level"] == 2)]
    assert set(kernels["layer"]) == {"conv1.weight", "conv2.weight"}
    short = pairs[0][0].mask(2)["conv2.weight"].numpy()
    expected = (~short.any(axis=(2, 3))).sum() / conv_expected(short)
    assert convergence.kernel_index(pairs[0][0].mask(2)["conv2.weight"]) == pytest.approx(expected)


def conv_expected(mask: np.ndarray) -> float:
    """Expected dead kernels of a random mask with the same kept count, by scipy."""
    kernels, size = mask.shape[0] * mask.shape[1], mask.shape[2] * mask.shape[3]
    return kernels * stats.hypergeom(mask.size, int(mask.sum()), size).pmf(0)


def test_run_all_resumes_the_sweeps_then_probes_and_draws_everything(sweep, tmp_path):
    run_all = study_script("run_all.py", "structure_all")
    shutil.copytree(sweep, tmp_path / "sweeps" / "tiny")
    (tmp_path / "tiny.toml").write_text(TINY_STRUCTURE_SWEEP)
    done = {p: p.stat().st_mtime_ns for p in (tmp_path / "sweeps").glob("*/*/levels/*/DONE")}
    argv = ["--root", str(tmp_path / "sweeps"), "--out", str(tmp_path / "out")]
    argv += ["--permutations", "9", "--lmc-levels", "1", "--jobs", "1"]
    assert run_all.main(argv, study={str(tmp_path / "tiny.toml"): "tiny"}) == 0
    assert {p: p.stat().st_mtime_ns for p in done} == done  # every run read back, none retrained
    times = pd.read_csv(tmp_path / "out" / "wall_times.csv")
    assert list(times["step"]) == ["sweep tiny.toml", "lmc probes", "figures"]
    assert (times["exit_codes"].astype(str) == "0").all() and (times["seconds"] > 0).all()
    curves = sorted((tmp_path / "sweeps").glob("*/*/analysis/lmc_level01_seeds1-2.csv"))
    probed = [maskstudy.open_run(c.parents[1]).config for c in curves]  # the ticket's two seeds
    assert [(c.seed, c.prune.criterion, c.regime) for c in probed] == [
        (0, "magnitude", "rewind"),
        (1, "magnitude", "rewind"),
    ]
    drawn = {p.name for p in (tmp_path / "out").iterdir()}
    assert {f"{name}.png" for name in (*FIGURES, "lmc")} <= drawn


def test_missing_arms_and_levels_are_reported_not_a_crash(figures, sweep, tmp_path, capsys):
    partial = tmp_path / "sweep"
    shutil.copytree(  # only the magnitude runs, and one of them without its last level
        sweep, partial, ignore=lambda _, names: [n for n in names if "-random-" in n or "-ln_" in n]
    )
    (next(partial.glob("*-magnitude-rewind-s1-*")) / "levels" / "02" / "DONE").unlink()
    report = figures.main([str(partial), "--out", str(tmp_path / "out"), *ARGS])
    printed = capsys.readouterr().out
    assert "random · rewind θ0" in report.skipped["kernel_histograms"]
    assert {"structure_index", "mask_images", "stability", "accuracy"} <= set(report.drawn)
    assert f"{MAGNITUDE}: 1/2 done; partial (2/3): s1" in printed
    assert "random · rewind θ0: 0/2 done; pending (0/3): s0, s1" in printed
    assert "no pruned level done by both" in report.skipped["kernel_histograms"]
    assert "resemblance: skipped" in printed and not (tmp_path / "out" / "resemblance.csv").exists()
    index = pd.read_csv(tmp_path / "out" / "structure_index.csv")
    assert index.loc[index["level"] == 2, "seeds"].eq(1).all()  # level 2 from seed 0 alone


def test_the_command_line_takes_several_sweeps_and_the_permutations(figures, tmp_path):
    args, sweeps, permutations = figures.parse_args(["a", "b", "--out", "o", "--permutations", "5"])
    assert sweeps == [Path("a"), Path("b")] and args.out == Path("o") and permutations == 5
    args, sweeps, permutations = figures.parse_args(["--format", "png", "a"])
    assert sweeps == [Path("a")] and args.out == Path("a") / "study" and args.formats == ["png"]
    assert permutations == figures.PERMUTATIONS


# --- the library on hand-made masks and frames ---------------------------------------------------
def small_mask() -> np.ndarray:
    """A 3×2×2×2 conv mask keeping 11 of 24 weights: filter 0 and kernel (1, 1) entirely pruned."""
    mask = np.zeros((3, 2, 2, 2), dtype=bool)
    mask[1, 0].flat[:3] = True
    mask[2] = True
    return mask


def mask_frame(masks: list[np.ndarray]) -> pd.DataFrame:
    """The frame conv_masks returns: one layer of one arm at level 1, a row per seed."""
    return pd.DataFrame([
        {"model": "m", "arm": "a", "seed": seed, "level": 1, "layer": "conv.weight",
         "percent_remaining": 100 * m.mean(), "mask": m}
        for seed, m in enumerate(masks)
    ])  # fmt: skip


def test_structure_index_of_one_mask_is_dead_over_the_hypergeometric_chance():
    mask = small_mask()
    index = structure_index_summary(dead_unit_seeds(mask_frame([mask]), permutations=9))
    n, k = mask.size, int(mask.sum())
    for unit, groups, size, dead in (
        ("kernel", 6, 4, 3),
        ("filter", 3, 8, 1),
        ("channel", 2, 12, 0),
    ):
        row = index[index["unit"] == unit].iloc[0]
        expected = groups * stats.hypergeom(n, k, size).pmf(0)  # P(a group keeps none of K)
        assert row["dead"] == dead and row["groups"] == groups and row["seeds"] == 1
        assert row["expected"] == pytest.approx(expected, rel=1e-12)
        assert row["index"] == pytest.approx(dead / expected, rel=1e-12)
        assert np.isnan(row["index_lo"]) and np.isnan(row["index_hi"])  # one seed: no interval
    assert index.set_index("unit")["note"].to_dict() == {  # 3 filters expect 0.005 dead
        "kernel": "", "filter": "chance expects < 0.01 dead: index large by construction",
        "channel": "none dead",
    }  # fmt: skip


def seed_frame() -> pd.DataFrame:
    """Dead-unit rows of 3 seeds of one layer, arm, level and unit, made by hand."""
    return pd.DataFrame({
        "model": "m", "layer": "conv.weight", "arm": "a", "level": 2, "unit": "kernel",
        "seed": [0, 1, 2], "percent_remaining": [10.0, 11.0, 12.0], "dead": [4, 6, 11],
        "groups": 20, "expected": [2.0, 2.5, 3.0], "p_value": [0.04, 0.2, 0.01],
    })  # fmt: skip


def test_over_seed_summary_of_three_seeds():
    seeds = seed_frame()
    table = structure_index_summary(seeds)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["seeds"] == 3 and row["groups"] == 20
    assert row["percent_remaining"] == pytest.approx(11.0)
    assert row["dead"] == pytest.approx(7.0) and row["expected"] == pytest.approx(2.5)
    assert row["index"] == pytest.approx(7.0 / 2.5)
    assert row["index_lo"] == pytest.approx(row["dead_lo"] / 2.5)
    assert row["index_hi"] == pytest.approx(row["dead_hi"] / 2.5)
    assert row["note"] == ""
    other = seeds.assign(level=3, dead=[5, 5, 5])  # a second group is summarised on its own
    both = structure_index_summary(pd.concat([seeds, other], ignore_index=True))
    assert both["level"].tolist() == [2, 3]
    assert both.iloc[0].drop("note").equals(row.drop("note"))
    assert both.iloc[1][["dead", "dead_lo", "dead_hi"]].tolist() == [5.0, 5.0, 5.0]


def test_bootstrap_interval_holds_the_mean_and_is_bootstrap_ci():
    seeds = seed_frame()
    row = over_seeds(seeds, "dead", ["model", "layer", "arm", "level"]).iloc[0]
    mean, low, high = bootstrap_ci(seeds["dead"].to_numpy())
    assert (row["dead"], row["dead_lo"], row["dead_hi"]) == (mean, low, high)
    assert low < row["dead"] < high


def test_combined_p_is_scipys_fisher():
    seeds = seed_frame()
    reference = stats.combine_pvalues([0.04, 0.2, 0.01], method="fisher").pvalue
    assert fisher_p(seeds["p_value"]) == pytest.approx(reference, rel=1e-12)
    assert structure_index_summary(seeds)["p_fisher"].iloc[0] == pytest.approx(reference, rel=1e-12)


class FakeRun:
    """A run with two levels: conv masks (one left dense) and a history of two evaluations."""

    levels = [0, 1]

    def mask(self, level: int) -> dict[str, torch.Tensor]:
        conv = torch.from_numpy(small_mask() if level else np.ones((3, 2, 2, 2), dtype=bool))
        return {"conv.weight": conv, "fc.weight": torch.zeros(4, 3, dtype=torch.bool)}

    def history(self) -> pd.DataFrame:
        return pd.DataFrame({
            "level": [0, 0, 1, 1], "step": [10, 20, 10, 20], "epoch": [1, 2, 1, 2],
            "test_acc": [0.5, 0.6, 0.4, 0.45], "train_loss": [1.0, 0.8, 1.2, 1.1],
        })  # fmt: skip


def test_conv_masks_and_last_epoch_gains_label_each_run_with_its_ids():
    runs, ids = [FakeRun(), FakeRun()], [{"model": "m", "arm": "a", "seed": s} for s in (0, 1)]
    masks = conv_masks(runs, ids)  # the dense level-0 conv and the linear layer left out
    assert masks[["seed", "level", "layer"]].values.tolist() == [[0, 1, "conv.weight"],
                                                                [1, 1, "conv.weight"]]  # fmt: skip
    assert masks["percent_remaining"].tolist() == pytest.approx([100 * 11 / 24] * 2)
    gains = last_epoch_gains(runs, ids)
    assert gains["test_acc_gain"].tolist() == pytest.approx([0.1, 0.05, 0.1, 0.05])
    assert "val_acc_gain" not in gains
    table = convergence_summary(gains)
    assert table["seeds"].tolist() == [2, 2] and table["epoch"].tolist() == [2, 2]
    assert table["train_loss_gain"].tolist() == pytest.approx([-0.2, -0.1])
    assert table["test_acc_gain_max"].tolist() == pytest.approx([0.1, 0.05])
