"""The conv-structure study script (analysis/structure/figures.py) on a tiny sweep: conv2 on
synthetic 8×8 inputs, magnitude / random / L1-filter arms × 2 seeds × levels 0–2. Its tables
hold the expected columns, its structure index and combined p-values equal an independent
computation, it draws every figure, and a sweep with arms or levels missing is reported, not
a crash."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import maskstudy

SCRIPT = Path(__file__).resolve().parents[1] / "analysis" / "structure" / "figures.py"
FIGURES = ("structure_index", "kernel_histograms", "mask_images", "stability", "accuracy")
TINY_STRUCTURE_SWEEP = """
levels = 2
seeds = [0, 1]
[base]
data.name = "synthetic"
data.synthetic_shape = [1, 8, 8]
data.synthetic_size = 256
model.name = "conv2"
model.width = 0.25
train.optimizer = "sgd"
train.lr = 0.05
train.batch_size = 32
train.duration = "6it"
train.eval_every = "3it"
"prune.amount" = 0.5
[[tied]]
"prune.criterion" = ["magnitude", "random", "ln_structured"]
"prune.layer_amounts" = [{output = 0.2}, {output = 0.2}, {}]
"prune.exclude" = [[], [], ["output"]]
"""
MAGNITUDE = "magnitude · rewind θ0"
ARGS = ["--format", "png", "--permutations", "9"]


@pytest.fixture(scope="module")
def figures():
    """The script as a module (registered: its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location("structure_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


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
    "coverage": {"model", "arm", "seed", "state", "levels"},
    "structure_seeds": {"layer", "arm", "level", "seed", "unit", "dead", "expected", "p_value"},
    "structure_index": {"unit", "dead", "dead_lo", "dead_hi", "expected", "index", "index_lo",
                        "index_hi", "p_fisher", "seeds", "percent_remaining", "note"},
    "kernel_counts": {"layer", "arm", "level", "tv", "tv_lo", "tv_hi", "p_fisher",
                      "dead_or_full", "chance_dead_or_full"},
    "resemblance": {"arm", "reference", "lift", "lift_lo", "lift_hi", "p_fisher", "lift_seeds"},
    "stability": {"model", "layer", "arm", "level", "measure", "mean", "lo", "hi", "n"},
    "accuracy": {"model", "arm", "level", "percent_remaining", "mean", "lo", "hi", "n"},
    "convergence": {"model", "arm", "level", "test_acc_gain", "test_acc_gain_lo",
                    "test_acc_gain_hi", "test_acc_gain_max", "train_loss_gain"},
    "key_table": {"layer", "level", "arm", "unit", "index [95% CI]", "p", "lift [95% CI]"},
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
    assert set(report.drawn) == set(FIGURES) and not report.skipped
    assert all((out / f"{name}.png").stat().st_size > 10_000 for name in FIGURES)


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
