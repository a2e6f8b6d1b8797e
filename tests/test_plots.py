"""Paper figures: each figure function on small hand-made tidy tables (lines, panels, values,
chance lines, colours), and draw_figures on a tiny real sweep (files written, skips explained)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb

from maskstudy.errors import ConfigError
from maskstudy.plots.accuracy import accuracy_vs_remaining
from maskstudy.plots.density import density_vs_level
from maskstudy.plots.embedding import mask_map
from maskstudy.plots.figures import FIGURES, Tables, Unsupported, draw_figures, split_runs
from maskstudy.plots.overlap import criterion_heatmap, regime_overlap, seed_overlap
from maskstudy.plots.stability import stability_vs_level, weight_scatter
from maskstudy.plots.structure import conv_mask_images, dead_units_vs_level, kernel_counts
from maskstudy.plots.style import (
    criterion_color,
    method_label,
    method_line,
    regime_color,
    regime_linestyle,
    study_title,
)
from maskstudy.runs.config import PruneConfig, RunConfig
from maskstudy.runs.discover import open_runs

CRITERIA = ("magnitude", "random")
REGIMES = ("rewind", "finetune")
SEEDS = (0, 1)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- helpers ----------------------------------------------------------------------------------
def lines_by_label(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines()}


def method_lines(ax) -> dict[str, object]:
    return {k: v for k, v in lines_by_label(ax).items() if " · " in k}


def band(ax, index: int = 0) -> dict[float, tuple[float, float]]:
    """x → (lowest, highest) y of the ``index``-th shaded band of ``ax``."""
    poly = [c for c in ax.collections if isinstance(c, PolyCollection)][index]
    out: dict[float, list[float]] = {}
    for x, y in poly.get_paths()[0].vertices:
        out.setdefault(round(float(x), 6), []).append(float(y))
    return {x: (min(ys), max(ys)) for x, ys in out.items()}


def runs_table() -> pd.DataFrame:
    """(run, level) rows: accuracy 0.9 + 0.01·level − 0.02·[random] + 0.004·seed."""
    rows = []
    for c in CRITERIA:
        for r in REGIMES:
            for s in SEEDS:
                for level in range(3):
                    rows.append({
                        "run_id": f"{c}-{r}-{s}",
                        "criterion": c,
                        "regime": r,
                        "seed": s,
                        "scope": "layer",
                        "level": level,
                        "percent_remaining": 100 * 0.8**level,
                        "test_acc": 0.9 + 0.01 * level - 0.02 * (c == "random") + 0.004 * s,
                        "early_stop_step": 100 * (level + 1) + 10 * s,
                    })  # fmt: skip
    return pd.DataFrame(rows)


def seed_pairs() -> pd.DataFrame:
    """along='seed' overlap rows: 3 seed pairs per criterion, levels 0–2, fc1 and 'all'."""
    rows = []
    for c in CRITERIA:
        for k, (a, b) in enumerate(combinations(range(3), 2)):
            for level in range(3):
                for layer in ("fc1.weight", "all"):
                    expected = 0.8**level / 2 if level else 1.0
                    j = expected + 0.01 * (k + 1) * level + (0.05 if c == "magnitude" else 0)
                    rows.append({
                        "along": "seed", "run_a": f"{c}-{a}", "run_b": f"{c}-{b}",
                        "value_a": str(a), "value_b": str(b), "level": level, "level_b": level,
                        "layer": layer, "jaccard": j, "expected_jaccard": expected,
                        "lift": j / expected, "criterion": c, "regime": "rewind",
                    })  # fmt: skip
    return pd.DataFrame(rows)


# --- P1 ---------------------------------------------------------------------------------------
def test_accuracy_lines_bands_dense_and_log_axis():
    frame = runs_table()
    fig = accuracy_vs_remaining(frame, band="minmax")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    lines = method_lines(ax)
    assert len(lines) == len(CRITERIA) * len(REGIMES)
    line = lines[method_label("random", "finetune")]
    np.testing.assert_allclose(line.get_xdata(), [100, 80, 64])
    # mean of seeds 0 and 1: 0.9 + 0.01·level − 0.02 + 0.002, in %
    np.testing.assert_allclose(line.get_ydata(), [88.2, 89.2, 90.2])
    assert line.get_linestyle() == ":"  # finetune
    dense = lines_by_label(ax)["dense"]
    np.testing.assert_allclose(dense.get_ydata(), 100 * frame.query("level == 0").test_acc.mean())
    first = band(ax)  # magnitude · rewind: seeds give 0.9 + 0.01·level and + 0.004
    assert first[80.0] == pytest.approx((91.0, 91.4))


def test_accuracy_ci_of_two_seeds_is_their_range_and_none_draws_no_band():
    # two values a, b: bootstrap means are a, (a+b)/2, b with probability 1/4, 1/2, 1/4, so the
    # 2.5 % and 97.5 % percentiles are a and b
    ax = accuracy_vs_remaining(runs_table(), band="ci").axes[0]
    assert band(ax)[64.0] == pytest.approx((92.0, 92.4))
    ax = accuracy_vs_remaining(runs_table(), band="none").axes[0]
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_a_method_line_of_one_point_shows_its_band_as_an_error_bar():
    fig, ax = plt.subplots()
    method_line(ax, [2.9], [8.0], "magnitude", "rewind", band=([6.0], [11.0]))
    (bar,) = ax.containers
    (segment,) = bar.lines[2][0].get_segments()
    assert segment[:, 1].tolist() == [6.0, 11.0]
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    method_line(ax, [4.6], [8.0], "random", "rewind", band=([8.0], [8.0]))  # no width: no bar
    method_line(ax, [1.0], [8.0], "random", "rewind", band=([np.nan], [np.nan]))  # unknown
    assert len(ax.containers) == 1
    plt.close(fig)


def test_early_stop_variant_is_not_scaled():
    ax = accuracy_vs_remaining(runs_table(), metric="early_stop_step", band="none").axes[0]
    line = method_lines(ax)[method_label("magnitude", "rewind")]
    np.testing.assert_allclose(line.get_ydata(), [105, 205, 305])
    assert ax.get_ylabel() == "early-stop iteration"


def test_accuracy_bad_input_names_the_problem():
    with pytest.raises(ConfigError, match="test_acc"):
        accuracy_vs_remaining(runs_table().drop(columns="test_acc"))
    with pytest.raises(ConfigError, match="band"):
        accuracy_vs_remaining(runs_table(), band="sd")


# --- P2 ---------------------------------------------------------------------------------------
def test_seed_overlap_means_and_labelled_chance_lines():
    pairs = seed_pairs()
    fig = seed_overlap(pairs)
    jac, lift = fig.axes
    assert len(method_lines(jac)) == 2
    line = method_lines(jac)[method_label("magnitude", "rewind")]
    np.testing.assert_array_equal(line.get_xdata(), [1, 2])  # the dense level 0 is left out
    # mean over pairs k = 0, 1, 2 of 0.8^L / 2 + 0.01 (k + 1) L + 0.05
    np.testing.assert_allclose(line.get_ydata(), [0.4 + 0.02 + 0.05, 0.32 + 0.04 + 0.05])
    chance = lines_by_label(jac)["chance"]
    np.testing.assert_allclose(chance.get_ydata(), [0.4, 0.32])
    assert chance.get_linewidth() > 2 * line.get_linewidth()  # broad and pale: unmistakable
    np.testing.assert_allclose(lines_by_label(lift)["chance"].get_ydata(), [1, 1])
    low, high = lift.get_ylim()  # never zoomed in below 1 ± 0.1: a null effect stays flat
    assert low <= 0.9 and high >= 1.1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "chance" in labels and "magnitude · rewind" in labels


def test_seed_overlap_panels_per_layer_and_method():
    pairs = seed_pairs()
    fig = seed_overlap(pairs, layers=None)
    assert [ax.get_title() for ax in fig.axes] == ["fc1", "fc1", "whole network", "whole network"]
    fig = seed_overlap(pairs, metrics=("jaccard",), split_methods=True)
    assert len(fig.axes) == 2
    assert [len(method_lines(ax)) for ax in fig.axes] == [1, 1]
    with pytest.raises(ConfigError, match="jaccard"):
        seed_overlap(pairs, metrics=("dice",))
    with pytest.raises(ConfigError, match="prune.criterion"):
        criterion_heatmap(pairs)


def test_same_criterion_same_colour_in_every_figure():
    acc = method_lines(accuracy_vs_remaining(runs_table()).axes[0])
    over = method_lines(seed_overlap(seed_pairs()).axes[0])
    label = method_label("magnitude", "rewind")
    assert to_rgb(acc[label].get_color()) == to_rgb(over[label].get_color())
    assert to_rgb(acc[label].get_color()) == pytest.approx(criterion_color("magnitude"))
    assert acc[label].get_linestyle() == over[label].get_linestyle() == regime_linestyle("rewind")
    other = method_lines(seed_overlap(seed_pairs()).axes[0])[method_label("random", "rewind")]
    assert to_rgb(other.get_color()) != to_rgb(over[label].get_color())


def test_one_criterion_colours_its_regimes_apart_in_line_and_legend():
    """A ticket and its controls (one criterion): each regime its own colour as well as its
    dashes, the same in the lines and the legend."""
    table = runs_table()
    table = table[table["criterion"] == "magnitude"]
    fig = accuracy_vs_remaining(table)
    lines = method_lines(fig.axes[0])
    colours = {label: to_rgb(line.get_color()) for label, line in lines.items()}
    assert len(set(colours.values())) == len(colours) == len(REGIMES)
    rewind = method_label("magnitude", "rewind")
    assert colours[rewind] == pytest.approx(regime_color("rewind"))
    legend = {h.get_label(): to_rgb(h.get_color()) for h in fig.legends[0].legend_handles}
    assert all(legend[label] == colours[label] for label in lines)


# --- P3 ---------------------------------------------------------------------------------------
def criterion_pairs() -> pd.DataFrame:
    """along='prune.criterion' rows (2 seeds, levels 1–2) plus along='seed' rows."""
    names = ("magnitude", "random", "ln_structured")
    rows = []
    for i, j in combinations(range(3), 2):
        for seed in SEEDS:
            for level in (1, 2):
                jac = 0.1 * (i + j + 1) + 0.02 * seed + 0.1 * level
                rows.append({
                    "along": "prune.criterion", "value_a": names[i], "value_b": names[j],
                    "level": level, "layer": "all", "jaccard": jac, "expected_jaccard": 0.2,
                    "lift": jac / 0.2, "regime": "rewind", "criterion": names[i],
                })  # fmt: skip
    for k, name in enumerate(names):
        rows.append({
            "along": "seed", "value_a": "0", "value_b": "1", "level": 2, "layer": "all",
            "jaccard": 0.5 + 0.1 * k, "expected_jaccard": 0.2, "lift": (0.5 + 0.1 * k) / 0.2,
            "regime": "rewind", "criterion": name,
        })  # fmt: skip
    return pd.DataFrame(rows)


def test_heatmap_cells_are_the_table_means():
    fig = criterion_heatmap(criterion_pairs())
    ax = fig.axes[0]
    cells = np.ma.filled(ax.collections[0].get_array(), np.nan).reshape(3, 3)
    off = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0]]) * 0.1 + 0.1 + 0.01 + 0.2  # level 2
    expected = np.where(np.eye(3, dtype=bool), np.diag([0.5, 0.6, 0.7]), off)
    np.testing.assert_allclose(cells, expected)
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(f"{v:.2f}" for v in expected.ravel())
    assert "0.20" in ax.get_xlabel()  # chance E[J]
    one = criterion_heatmap(criterion_pairs(), level=1).axes[0]
    cells = np.ma.filled(one.collections[0].get_array(), np.nan).reshape(3, 3)
    assert np.isnan(np.diag(cells)).all()  # no seed pairs at level 1
    assert cells[0, 1] == pytest.approx(0.2 + 0.01 + 0.1)  # magnitude × random, level 1


def test_lift_heatmap_is_centred_on_chance():
    mesh = criterion_heatmap(criterion_pairs(), value="lift").axes[0].collections[0]
    low, high = mesh.get_clim()
    assert low + high == pytest.approx(2.0)
    cells = np.ma.filled(mesh.get_array(), np.nan).reshape(3, 3)
    assert cells[0, 1] == pytest.approx((0.2 + 0.01 + 0.2) / 0.2)  # mean lift, level 2


# --- P4 ---------------------------------------------------------------------------------------
def test_regime_pairs_one_line_each_whatever_the_order():
    rows = []
    pairs = [("rewind", "reinit_prune"), ("finetune", "rewind"), ("reinit_prune", "finetune")]
    for criterion in CRITERIA:
        for k, (a, b) in enumerate(pairs):
            for seed in SEEDS:
                for level in (1, 2):
                    rows.append({
                        "along": "regime", "value_a": a, "value_b": b, "level": level,
                        "layer": "all", "jaccard": 0.9 - 0.1 * k - 0.05 * level + 0.01 * seed,
                        "expected_jaccard": 0.3, "criterion": criterion,
                    })  # fmt: skip
    fig = regime_overlap(pd.DataFrame(rows))
    assert [ax.get_title() for ax in fig.axes] == list(CRITERIA)
    lines = lines_by_label(fig.axes[0])
    expected = {"rewind vs reinit_prune", "rewind vs finetune", "finetune vs reinit_prune"}
    assert expected | {"chance"} <= set(lines)
    np.testing.assert_allclose(lines["rewind vs finetune"].get_ydata(), [0.755, 0.705])
    np.testing.assert_allclose(lines["chance"].get_ydata(), [0.3, 0.3])
    # the pairs sit side by side at each level (equal values never hide a marker)
    xs = [tuple(np.round(lines[p].get_xdata() - [1, 2], 3)) for p in sorted(expected)]
    assert len(set(xs)) == 3 and all(abs(x[0]) < 0.2 and x[0] == x[1] for x in xs)


# --- P5 ---------------------------------------------------------------------------------------
@dataclass
class FakeRun:
    config: RunConfig
    masks: dict[int, dict[str, torch.Tensor]]
    finals: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def levels(self) -> list[int]:
        return sorted(self.masks)

    def mask(self, level: int) -> dict[str, torch.Tensor]:
        return self.masks[level]

    def weights(self, level: int) -> dict[str, torch.Tensor]:
        return self.finals[level]


def conv_run(criterion: str, alive: np.ndarray) -> FakeRun:
    """A run whose level-1 conv mask keeps the first ``alive[o, i]`` of each 2×2 kernel."""
    mask = np.arange(4)[None, None, :] < alive[:, :, None]
    config = RunConfig(prune=PruneConfig(criterion=criterion))
    layer = {"conv.weight": torch.from_numpy(mask.reshape(*alive.shape, 2, 2))}
    return FakeRun(config, {0: layer, 1: layer})


def test_kernel_counts_and_mask_images():
    alive = np.array([[0, 4, 2], [1, 0, 3]])
    np.testing.assert_array_equal(
        kernel_counts(conv_run("magnitude", alive).mask(1)["conv.weight"].numpy()), alive
    )
    runs = [conv_run("magnitude", alive), conv_run("random", 4 - alive)]
    fig = conv_mask_images(runs, 1, "conv.weight")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    np.testing.assert_array_equal(images[0].get_array(), alive)
    np.testing.assert_array_equal(images[1].get_array(), 4 - alive)
    assert "33 % kernels dead" in fig.axes[0].get_title()  # 2 of 6
    assert "17 % kernels dead" in fig.axes[1].get_title()  # 1 of 6
    sparse = conv_mask_images([conv_run("magnitude", np.minimum(alive, 1))], 1, "conv.weight")
    assert sparse.axes[0].images[0].norm.boundaries[-1] == 4.5  # the scale ends at k·k = 4
    with pytest.raises(ConfigError, match="conv.weight"):
        conv_mask_images(runs, 1, "fc.weight")
    with pytest.raises(ConfigError, match="levels"):
        conv_mask_images(runs, 3, "conv.weight")
    with pytest.raises(ConfigError, match="conv mask"):
        kernel_counts(np.ones((3, 4), bool))


# --- P6 ---------------------------------------------------------------------------------------
def test_dead_units_pool_layers_against_pooled_chance():
    rows = []
    dead = {0: {"a": 2, "b": 1}, 1: {"a": 0, "b": 3}}  # seed → layer → dead kernels at level 1
    for seed in SEEDS:
        for level in (0, 1, 2):
            for layer, groups, chance in (("a", 10, 0.05), ("b", 20, 0.1)):
                rows.append({
                    "run_id": f"s{seed}", "criterion": "magnitude", "regime": "rewind",
                    "level": level, "layer": layer, "unit": "kernel", "groups": groups,
                    "dead": dead[seed][layer] if level == 1 else 0,
                    "log10_expected": np.log10(chance) if level else -np.inf,
                    "density": 0.5**level,
                })  # fmt: skip
    fig = dead_units_vs_level(pd.DataFrame(rows), units=("kernel",))
    top, bottom = fig.axes
    line = method_lines(top)[method_label("magnitude", "rewind")]
    np.testing.assert_allclose(line.get_ydata(), [3 / 30, 0])  # pooled over both layers
    pooled_chance = (10 * 0.05 + 20 * 0.1) / 30
    np.testing.assert_allclose(lines_by_label(top)["chance"].get_ydata(), [pooled_chance] * 2)
    index = method_lines(bottom)[method_label("magnitude", "rewind")]
    np.testing.assert_allclose(index.get_ydata(), [0.1 / pooled_chance])
    none = [ln for ln in bottom.get_lines() if ln.get_marker() == "v"]
    assert len(none) == 1 and list(none[0].get_xdata()) == [2]  # nothing dead at level 2
    with pytest.raises(ConfigError, match="filter"):
        dead_units_vs_level(pd.DataFrame(rows), units=("filter",))


# --- P7 ---------------------------------------------------------------------------------------
def test_stability_curves_one_panel_per_metric():
    rows = [
        {"criterion": c, "regime": "rewind", "level": level, "layer": "all", "seed": s,
         "s1": 0.5 * level + s, "pearson": 0.9, "sign_agreement": 0.8}
        for c in CRITERIA for s in SEEDS for level in range(3)
    ]  # fmt: skip
    fig = stability_vs_level(pd.DataFrame(rows))
    assert len(fig.axes) == 3
    line = method_lines(fig.axes[0])[method_label("random", "rewind")]
    np.testing.assert_allclose(line.get_xdata(), [1, 2])
    np.testing.assert_allclose(line.get_ydata(), [1.0, 1.5])


def test_weight_scatter_plots_surviving_weight_pairs():
    g = torch.Generator().manual_seed(0)
    before = torch.randn(8, 5, generator=g)
    after = before + 0.1 * torch.randn(8, 5, generator=g)
    keep = before.abs() > 0.5
    run = FakeRun(
        RunConfig(),
        {0: {"fc.weight": torch.ones(8, 5, dtype=torch.bool)}, 1: {"fc.weight": keep}},
        {0: {"fc.weight": before}, 1: {"fc.weight": after}},
    )
    fig = weight_scatter([run, run], 1)
    ax = fig.axes[0]
    counts = ax.collections[0].get_array()
    assert counts.sum() == int(keep.sum()) and counts.min() >= 1  # every kept pair, binned
    x, y = before[keep].double().numpy(), after[keep].double().numpy()
    centres = ax.collections[0].get_offsets()  # each pair lies in a hexagon near its centre
    size = 2 * 1.05 * max(np.abs(x).max(), np.abs(y).max()) / 40
    for px, py in zip(x, y, strict=True):
        assert np.hypot(*(centres - (px, py)).T).min() <= size
    r = np.corrcoef(x, y)[0, 1]
    assert f"r = {r:.3f}" in ax.get_title()
    norms = [c.norm for a in fig.axes[:2] for c in a.collections[:1]]
    assert norms[0].vmax == norms[1].vmax  # one colour scale for all panels
    with pytest.raises(ConfigError, match="levels"):
        weight_scatter([run], 2)


# --- P8 and the map ---------------------------------------------------------------------------
def test_density_one_panel_per_scope_one_line_per_layer():
    rows = []
    for scope, fc1 in (("layer", 0.8), ("global", 0.6)):
        for seed in SEEDS:
            for level in range(3):
                rows.append({
                    "scope": scope, "criterion": "magnitude", "regime": "rewind", "seed": seed,
                    "level": level, "percent_remaining": 100 * 0.8**level,
                    "density[fc1.weight]": fc1**level + 0.01 * seed * level,
                    "density[fc2.weight]": 0.9**level,
                })  # fmt: skip
    fig = density_vs_level(pd.DataFrame(rows))
    assert [ax.get_title() for ax in fig.axes] == ["layerwise scope", "global scope"]
    glob = fig.axes[1]
    assert glob.get_yscale() == "log" and len(glob.get_lines()) == 3
    np.testing.assert_allclose(glob.get_lines()[0].get_ydata(), [1, 0.605, 0.37])
    np.testing.assert_allclose(glob.get_lines()[2].get_ydata(), [1, 0.8, 0.64])  # network


def test_mask_map_colour_by_criterion_marker_by_regime():
    rows = [
        {"x": i, "y": -i, "criterion": c, "regime": r, "level": 2, "layer": "all"}
        for i, (c, r) in enumerate([(c, r) for c in CRITERIA for r in REGIMES])
    ]
    ax = mask_map(pd.DataFrame(rows)).axes[0]
    assert len(ax.collections) == 4
    for points in ax.collections:
        criterion = points.get_label().split(" · ")[0]
        assert tuple(points.get_edgecolor()[0][:3]) == pytest.approx(criterion_color(criterion))


# --- draw_figures -----------------------------------------------------------------------------
def test_runs_split_by_the_fields_figures_do_not_tell_apart():
    def run(scope: str, seed: int, criterion: str = "magnitude") -> FakeRun:
        config = RunConfig(prune=PruneConfig(criterion=criterion, scope=scope), seed=seed)
        return FakeRun(config, {})

    runs = [run(scope, seed) for scope in ("layer", "global") for seed in SEEDS]
    groups = split_runs(runs)
    assert [(suffix, title) for suffix, title, _ in groups] == [
        ("__scope-global", "LeNet-300-100 on MNIST, 2 seeds, scope global"),
        ("__scope-layer", "LeNet-300-100 on MNIST, 2 seeds, scope layer"),
    ]
    assert [[r.config.seed for r in members] for _, _, members in groups] == [[0, 1], [0, 1]]
    same_scope = [run("layer", seed, c) for c in CRITERIA for seed in SEEDS]
    assert split_runs(same_scope) == [("", "LeNet-300-100 on MNIST, 2 seeds", same_scope)]
    assert (
        study_title("conv2", 0.25, "digits", 1)
        == "Conv-2 (width 0.25) on scikit-learn digits, 1 seed"
    )


# --- draw_figures on a tiny sweep ------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_runs(conv_sweep_dir):
    return open_runs(conv_sweep_dir)


def test_draw_figures_writes_what_the_runs_support(sweep_runs, tmp_path):
    report = draw_figures(sweep_runs, tmp_path / "figs", formats=("png",))
    assert set(report.drawn) | set(report.skipped) == set(FIGURES)
    assert {p.name for p in (tmp_path / "figs").iterdir()} == {f"{n}.png" for n in report.drawn}
    shown = ("p1_accuracy", "p2_seed_overlap", "p3_criterion_heatmap", "p5_conv_masks")
    shown += ("p6_dead_conv_units", "p7_stability", "p7_weight_scatter", "mds_masks")
    for name in shown:
        assert report.drawn[name] == [tmp_path / "figs" / f"{name}.png"]
        assert (tmp_path / "figs" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert set(report.skipped) == {"p1_early_stop", "p4_regime_overlap", "p8_layer_density"}
    assert "evaluated once" in report.skipped["p1_early_stop"]  # eval_every = duration here
    assert "regime" in report.skipped["p4_regime_overlap"]
    assert "scope" in report.skipped["p8_layer_density"]
    assert plt.get_fignums() == []  # every figure closed after saving


def test_draw_figures_skips_with_reasons(sweep_runs, tmp_path):
    one_seed = [run for run in sweep_runs if run.config.seed == 0]
    names = ("p1_accuracy", "p2_seed_overlap", "mds_masks")
    report = draw_figures(one_seed, tmp_path, formats=("pdf", "png"), names=names)
    assert report.drawn == {
        "p1_accuracy": [tmp_path / "p1_accuracy.pdf", tmp_path / "p1_accuracy.png"]
    }
    assert (tmp_path / "p1_accuracy.pdf").read_bytes()[:4] == b"%PDF"
    assert "seed" in report.skipped["p2_seed_overlap"]
    assert "at least 3" in report.skipped["mds_masks"]
    with pytest.raises(ConfigError, match="jpeg"):
        draw_figures(one_seed, tmp_path, formats=("jpeg",))
    with pytest.raises(ConfigError, match="p1_accuracy"):
        draw_figures(one_seed, tmp_path, names=("p9",))


def test_every_declared_method_draws_with_its_own_colour_and_style():
    import matplotlib.pyplot as plt

    from maskstudy.plots.style import CRITERIA, REGIMES, method_line

    fig, ax = plt.subplots()
    lines = [method_line(ax, [1, 2], [0.5, 0.6], c, r) for c in CRITERIA for r in REGIMES]
    plt.close(fig)
    assert len(lines) == len(CRITERIA) * len(REGIMES)  # dash tuples included (scratch_e/_b)
    assert len({str(regime_linestyle(r)) for r in REGIMES}) == len(REGIMES)
    assert len({criterion_color(c) for c in CRITERIA}) == len(CRITERIA)


def test_importing_the_plots_leaves_the_users_matplotlib_backend_alone():
    code = "import matplotlib; matplotlib.use('svg'); import maskstudy.plots; print(matplotlib.get_backend())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_every_registered_criterion_and_training_has_its_own_style():
    from maskstudy.plots.style import _LINESTYLES, _PALETTE
    from maskstudy.pruning import CRITERIA as REGISTERED
    from maskstudy.runs.regimes import BRANCH_KINDS, REGIMES, method_name

    colours = [criterion_color(c) for c in REGISTERED.names()]
    assert len(set(colours)) == len(colours) and len(REGISTERED.names()) <= len(_PALETTE)
    names = [*REGIMES, *(method_name("", kind) for kind in BRANCH_KINDS)]
    assert set(names) == set(_LINESTYLES)  # each regime and branch kind drawn its own way
    assert len({str(regime_linestyle(n)) for n in names}) == len(names)


def test_a_methods_variants_keep_its_colour_and_get_line_styles_no_regime_has():
    from maskstudy.plots.style import _LINESTYLES, VARIANT_LINESTYLES, method_style

    regimes = {str(ls) for ls in _LINESTYLES.values()}
    styles = [method_style("magnitude", "rewind", variant=v) for v in range(4)]
    assert styles[0]["ls"] == regime_linestyle("rewind")
    assert len({s["color"] for s in styles}) == 1  # the criterion's colour
    assert len({str(s["ls"]) for s in styles}) == 4
    assert not {str(ls) for ls in VARIANT_LINESTYLES} & regimes


def test_the_study_scripts_share_one_command_line(tmp_path):
    from maskstudy.plots.study import study_args

    args = study_args("What it draws.\nMore.", "x.toml", [str(tmp_path)])
    assert args.out == tmp_path / "study" and args.formats == ["pdf", "png"]
    args = study_args(
        "Doc.", "x.toml", [str(tmp_path), "--out", str(tmp_path / "o"), "--format", "png"]
    )
    assert (args.sweep, args.out, args.formats) == (tmp_path, tmp_path / "o", ["png"])
    scripts = sorted(Path(__file__).parents[1].glob("analysis/*/figures.py"))
    assert len(scripts) >= 4 and all("study_args(__doc__" in s.read_text() for s in scripts)


def test_p6_is_skipped_with_its_reason_when_no_unit_is_dead():
    run = conv_run("magnitude", np.array([[1, 2, 3], [4, 1, 2]]))  # every kernel keeps a weight
    with pytest.raises(Unsupported, match="no kernel / filter / channel is entirely pruned"):
        FIGURES["p6_dead_conv_units"](Tables([run], None))
    dead = conv_run("magnitude", np.array([[0, 2, 3], [4, 1, 2]]))
    assert FIGURES["p6_dead_conv_units"](Tables([dead], None)).axes  # one dead kernel: drawn
