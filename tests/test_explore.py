"""The mask explorer: its controls, what a moved slider changes, numbers that agree with the
analyses, conv layers as alive-weight counts, one run, imported runs, and clear errors."""

from __future__ import annotations

import importlib
import sys

import ipywidgets
import numpy as np
import pytest
from torch import nn
from torch.nn.utils import prune as torch_prune

import maskstudy
from maskstudy.analysis.chance import expected_jaccard
from maskstudy.analysis.overlap import jaccard
from maskstudy.analysis.run_overlap import overlap_table
from maskstudy.errors import ConfigError, StoreError
from maskstudy.models import build
from maskstudy.runs.pruned_models import runs_from_pruned_models


def controls(widget: ipywidgets.Widget) -> dict[str, ipywidgets.Widget]:
    """Every control under ``widget``, by its description."""
    found = {}
    for child in getattr(widget, "children", ()):
        if getattr(child, "description", ""):
            found[child.description] = child
        found.update(controls(child))
    return found


@pytest.fixture
def widget(conv_sweep_dir):
    return maskstudy.explore(conv_sweep_dir)


def test_the_widget_has_a_level_slider_a_layer_dropdown_and_two_run_pickers(widget, conv_sweep_dir):
    assert isinstance(widget, ipywidgets.VBox)
    found = controls(widget)
    assert set(found) == {"run A", "run B", "level", "layer"}
    assert isinstance(found["level"], ipywidgets.SelectionSlider)
    runs = maskstudy.open_sweep(conv_sweep_dir).runs
    assert [name for name, _ in found["run A"].options] == [r.run_id for r in runs]
    assert found["level"].options == (0, 1, 2) and found["level"].value == 2
    assert [name for _, name in found["layer"].options] == list(runs[0].mask(0))
    explorer = widget.explorer
    assert (explorer.level, explorer.layer) == (found["level"], found["layer"])
    assert explorer.picture in widget.children and explorer.picture.value[:4] == b"\x89PNG"


def test_moving_the_slider_changes_the_mask_the_densities_and_the_marked_level(
    widget, conv_sweep_dir
):
    explorer = widget.explorer
    explorer.layer.value = "conv2.weight"
    explorer.level.value = 0
    dense, png, html = explorer.shown, explorer.picture.value, explorer.numbers.value
    explorer.level.value = 2
    pruned = explorer.shown
    assert (dense.level, pruned.level) == (0, 2)
    assert not np.array_equal(dense.image, pruned.image)
    assert np.array_equal(explorer.view.image.get_array(), pruned.image)  # what is drawn
    run = maskstudy.open_sweep(conv_sweep_dir).runs[0]
    mask = run.mask(2)
    assert pruned.densities["conv2.weight"] == pytest.approx(
        float(mask["conv2.weight"].mean(dtype=float))
    )
    assert dense.densities["all"] == 1.0 and pruned.densities["all"] == pytest.approx(
        0.25, abs=0.01
    )
    metrics = run.metrics().set_index("level")
    (x,), (y,) = explorer.view.markers[0].get_data()
    assert (x, y) == pytest.approx(
        (metrics.loc[2, "percent_remaining"], 100 * metrics.loc[2, "test_acc"])
    )
    assert explorer.picture.value != png and explorer.numbers.value != html
    assert f"{100 * pruned.densities['all']:.1f} % of run A" in explorer.numbers.value


def test_the_jaccard_shown_is_what_the_analysis_computes(widget, conv_sweep_dir):
    sweep = maskstudy.open_sweep(conv_sweep_dir)
    explorer = widget.explorer
    a, b = (sweep.select(criterion="magnitude", seed=s)[0] for s in (0, 1))
    explorer.run_a.value = next(i for name, i in explorer.run_a.options if name == a.run_id)
    assert explorer.shown.run_b == b.run_id  # run B: the closest config, the other seed
    explorer.level.value = 2
    explorer.layer.value = "fc1.weight"
    shown = explorer.shown
    table = overlap_table(sweep.runs, along="seed", levels=[2])
    row = table[(table["run_a"] == a.run_id) & (table["run_b"] == b.run_id)].set_index("layer")
    assert shown.network_overlap.jaccard == pytest.approx(row.loc["all", "jaccard"], rel=1e-12)
    assert shown.layer_overlap.jaccard == pytest.approx(row.loc["fc1.weight", "jaccard"], rel=1e-12)
    ma, mb = a.mask(2)["fc1.weight"], b.mask(2)["fc1.weight"]
    assert shown.layer_overlap.jaccard == jaccard(ma, mb)
    chance = expected_jaccard(ma.numel(), int(ma.sum()), int(mb.sum()))
    assert shown.layer_overlap.lift == pytest.approx(jaccard(ma, mb) / chance)
    assert f"{shown.layer_overlap.jaccard:.3f}" in explorer.numbers.value
    assert f"{shown.network_overlap.lift:.2f}" in explorer.numbers.value


def test_conv_layers_show_alive_weights_per_kernel_and_linear_layers_their_mask(
    widget, conv_sweep_dir
):
    explorer = widget.explorer
    mask = maskstudy.open_sweep(conv_sweep_dir).runs[0].mask(2)
    explorer.layer.value = "conv2.weight"
    image = explorer.shown.image
    out, inputs, kh, kw = mask["conv2.weight"].shape
    assert image.shape == (out, inputs) and 0 <= image.min() and image.max() <= kh * kw
    assert np.array_equal(image, mask["conv2.weight"].sum(dim=(2, 3)).numpy())
    assert explorer.view.image.norm.vmax == kh * kw + 0.5  # the scale runs to a full kernel
    explorer.layer.value = "fc1.weight"
    assert np.array_equal(explorer.shown.image, mask["fc1.weight"].numpy().astype(int))
    assert explorer.view.image.get_array().shape == tuple(mask["fc1.weight"].shape)


def test_one_run_is_compared_with_itself(conv_sweep_dir):
    run = maskstudy.open_sweep(conv_sweep_dir).runs[0]
    explorer = maskstudy.explore(maskstudy.open_run(run.path)).explorer
    assert [name for name, _ in explorer.run_b.options] == [run.run_id]
    assert explorer.run_b.disabled and explorer.shown.run_b == run.run_id
    assert explorer.shown.network_overlap.jaccard == 1.0
    explorer.level.value = 1
    assert explorer.shown.layer_overlap.jaccard == 1.0


def test_a_run_directory_and_a_list_of_runs_are_explored_too(conv_sweep_dir):
    sweep = maskstudy.open_sweep(conv_sweep_dir)
    run = sweep.runs[1]
    assert maskstudy.explore(run.path).explorer.shown.run_a == run.run_id
    chosen = sweep.select(criterion="random")
    explorer = maskstudy.explore(chosen).explorer
    assert [name for name, _ in explorer.run_a.options] == [r.run_id for r in chosen]


def test_what_is_not_a_run_or_a_sweep_is_refused_clearly(tmp_path):
    with pytest.raises(StoreError, match="holds no runs: expected sweep.toml, config.json"):
        maskstudy.explore(tmp_path)
    with pytest.raises(StoreError, match="is not a directory"):
        maskstudy.explore(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"explore\(int\): pass a sweep or run directory"):
        maskstudy.explore(3)
    with pytest.raises(ConfigError, match="a non-empty list of runs"):
        maskstudy.explore([])


def test_without_ipywidgets_the_error_names_the_extra(conv_sweep_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now fails
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'maskstudy\[notebooks\]'"):
        maskstudy.explore(conv_sweep_dir)


def test_explore_stays_the_function_after_its_module_is_imported(conv_sweep_dir):
    importlib.import_module("maskstudy.explorer")  # the module has its own name
    assert isinstance(maskstudy.explore(conv_sweep_dir), ipywidgets.VBox)


def test_runs_without_recorded_accuracy_show_no_curve():
    """Torch-pruned models record no accuracy: masks, densities and overlap, nothing marked."""
    models = [build("lenet300_100", (1, 8, 8), 10, seed=seed) for seed in (0, 1)]
    for model in models:
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                torch_prune.l1_unstructured(layer, "weight", amount=0.5)
    runs = runs_from_pruned_models(models, configs=[{"seed": 0}, {"seed": 1}])
    explorer = maskstudy.explore(runs).explorer
    assert explorer.shown.densities["all"] == 0.5
    assert explorer.shown.network_overlap.jaccard == jaccard(runs[0].mask(0), runs[1].mask(0))
    assert np.isnan(explorer.view.markers[0].get_xdata()).all()
