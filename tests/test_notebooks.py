"""The notebooks: committed without outputs, and each runs top to bottom on a small sweep,
drawing its figures inline, coping with a sweep of one regime, and failing clearly without one;
the explorer's widget redraws when the notebook moves its slider."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = (
    "01_quickstart.ipynb",
    "02_mask_overlap.ipynb",
    "03_conv_structure.ipynb",
    "04_weight_stability.ipynb",
    "05_explorer.ipynb",
)
# Figures each notebook draws on the test sweep (one model, two criteria, one regime).
FIGURES = {
    "01_quickstart.ipynb": 1,  # accuracy vs remaining
    "02_mask_overlap.ipynb": 3,  # MDS map, seed overlap, criterion heatmap (no regime figure)
    "03_conv_structure.ipynb": 4,  # kernel histogram, mask images, dead conv / linear groups
    "04_weight_stability.ipynb": 3,  # S1/S2 curves, weight scatter, LMC curve
    "05_explorer.ipynb": 0,  # the explorer's figure is a PNG inside its widget
}
# What a notebook prints instead of a regime comparison when the sweep has one regime.
ONE_REGIME_NOTES = {
    "02_mask_overlap.ipynb": "one regime in this sweep",
    "04_weight_stability.ipynb": "the test needs rewind and reinit runs",
}


def execute(nb: nbformat.NotebookNode) -> None:
    """Run every cell of ``nb`` in a fresh python3 kernel started in the notebooks directory."""
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()


def outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def printed(nb: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for out in outputs(nb) if out.output_type == "stream")


def the_slider_moved(nb: nbformat.NotebookNode) -> None:
    """05: one explorer widget shown; its last cell moved the slider from the deepest level
    (2 in the test sweep) to the middle one, and what the widget shows changed."""
    widgets = [o for o in outputs(nb) if WIDGET in o.get("data", {})]
    assert len(widgets) == 1
    lines = printed(nb).splitlines()
    before = next(line for line in lines if line.startswith("before: "))
    after = next(line for line in lines if line.startswith("after: "))
    assert before.startswith("before: level 2 (") and after.startswith("after:  level 1 (")
    assert before.split("), ", 1)[1] != after.split("), ", 1)[1]  # densities and overlaps
    assert "figure redrawn: True" in lines


WIDGET = "application/vnd.jupyter.widget-view+json"
# What else a notebook must show on the test sweep.
CHECKS = {"05_explorer.ipynb": the_slider_moved}


def test_the_five_notebooks_are_there():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == list(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert set(nb.metadata) <= {"kernelspec", "language_info"}
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert all(not cell.metadata for cell in nb.cells)
    assert 'os.environ.get("MASKSTUDY_SWEEP", "../demo/runs")' in code[0].source


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_a_sweep(name, conv_sweep_dir, monkeypatch):
    """Top to bottom without an error on the tiny conv sweep (the kernel inherits the env)."""
    monkeypatch.setenv("MASKSTUDY_SWEEP", str(conv_sweep_dir))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    execute(nb)  # raises CellExecutionError at the first failing cell
    assert not [out for out in outputs(nb) if out.output_type == "error"]
    images = [out for out in outputs(nb) if "image/png" in out.get("data", {})]
    assert len(images) == FIGURES[name]
    assert f"{conv_sweep_dir}: 4 runs" in printed(nb)
    if name in ONE_REGIME_NOTES:
        assert ONE_REGIME_NOTES[name] in printed(nb)
    if name in CHECKS:
        CHECKS[name](nb)


def test_without_a_sweep_the_first_cell_says_what_to_do(tmp_path, monkeypatch):
    missing = tmp_path / "no-sweep-here"
    monkeypatch.setenv("MASKSTUDY_SWEEP", str(missing))
    nb = nbformat.read(NOTEBOOKS / NAMES[0], as_version=4)
    nb.cells = [next(cell for cell in nb.cells if cell.cell_type == "code")]
    with pytest.raises(CellExecutionError) as error:
        execute(nb)
    message = str(error.value)
    assert "FileNotFoundError" in message
    assert str(missing.resolve()) in message
    assert "maskstudy demo" in message and "MASKSTUDY_SWEEP" in message
