"""`maskstudy report`: one self-contained HTML page of a sweep or a folder of runs (the tables
of `maskstudy analyze` are tests/test_report.py)."""

from __future__ import annotations

import base64
import contextlib
import io
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from maskstudy import sweep_report
from maskstudy.cli import main
from maskstudy.plots import FIGURES
from maskstudy.runs.run import branch
from maskstudy.runs.sweep import open_sweep
from maskstudy.sweep_report import MARKER, check_target

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# every figure but the four slowest to draw (per layer, dead units: tests/test_plots.py draws them)
FIGURES = [name for name in FIGURES if "_layers" not in name and not name.startswith("p6_")]
ERROR = "RuntimeError: out of memory <&> at level 2"  # markup in it: the page escapes it


def section(page: str, key: str) -> str:
    """The HTML of one section of the page."""
    return re.search(rf'<section id="{key}">(.*?)</section>', page, re.S).group(1)


def printed_figures(out: str) -> tuple[list[str], dict[str, str]]:
    """The drawn figures and the skipped ones with their reason, as the command prints them."""
    drawn = re.findall(r"^  (\S+) \(png\)$", out, re.M)
    skipped = dict(re.findall(r"^  skipped (\S+): (.*)$", out, re.M))
    return drawn, skipped


@pytest.fixture(scope="module")
def mixed_sweep(conv_sweep_dir, tmp_path_factory) -> Path:
    """The tiny conv sweep with one run failed at level 2 and a third seed not started."""
    root = tmp_path_factory.mktemp("report") / "sweep"
    shutil.copytree(conv_sweep_dir, root, ignore=shutil.ignore_patterns("analysis", "report.html"))
    failed = next(run for run in open_sweep(root).runs if run.config.prune.criterion == "random")
    shutil.rmtree(failed.path / "levels" / "02")
    (failed.path / "error.txt").write_text(f"{ERROR}\n\nTraceback (most recent call last): ...")
    spec = root / "sweep.toml"
    spec.write_text(spec.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    return root


@pytest.fixture(scope="module")
def sweep_page(mixed_sweep) -> tuple[str, str]:
    """The report of the mixed sweep, written where it goes by default, and what was printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["report", str(mixed_sweep), "--only", *FIGURES]) == 0
    return (mixed_sweep / "report.html").read_text(), printed.getvalue()


def test_every_drawn_figure_is_an_inline_png(sweep_page):
    page, out = sweep_page
    drawn, _ = printed_figures(out)
    assert "p1_accuracy" in drawn and "p5_conv_masks" in drawn
    images = re.findall(r'<img alt="([^"]+)" width="\d+" src="data:image/png;base64,([^"]+)"', page)
    assert [name for name, _ in images] == drawn
    assert page.count("<img") == len(drawn)
    for _, data in images:
        assert base64.b64decode(data, validate=True).startswith(PNG_SIGNATURE)


def test_status_and_results_hold_every_run(sweep_page, mixed_sweep):
    page, _ = sweep_page
    sweep = open_sweep(mixed_sweep)
    status = section(page, "status")
    assert "6 runs" in status and "3 done" in status and "1 failed" in status
    assert "2 pending" in status
    for row in sweep.status().itertuples():
        cells = r"(?:<td[^>]*>[^<]*</td>)*"
        assert re.search(
            f'<td>{re.escape(row.run_id)}</td>{cells}<td class="state {row.state}">', status
        )
    results = section(page, "results")
    frame = sweep.frame()
    assert results.count("<tr>") == len(frame) + 1  # the header, one row per run and level
    for run_id in frame["run_id"].unique():
        assert results.count(f"<td>{run_id}</td>") == (frame["run_id"] == run_id).sum()
    assert '<table class="sortable">' in results and "table.sortable th" in page
    # the analyses: every table of `maskstudy analyze`, and each run's config
    analysis = section(page, "analysis")
    assert all(f"<summary>{name} (" in analysis for name in ("overlap", "structure", "stability"))
    for run in sweep.runs:
        assert f'<details id="run-{run.run_id}">' in section(page, "runs")


def test_skipped_figures_and_failed_runs_say_why(sweep_page, mixed_sweep):
    page, out = sweep_page
    _, skipped = printed_figures(out)
    assert "p8_layer_density" in skipped  # one pruning scope
    listed = section(page, "skipped")
    for name, why in skipped.items():
        assert f"<li><code>{name}</code>: {why}</li>" in listed
    failed = open_sweep(mixed_sweep).status().query("state == 'failed'").iloc[0]
    escaped = "RuntimeError: out of memory &lt;&amp;&gt; at level 2"
    assert f"<code>{failed.run_id}</code>" in listed and escaped in listed
    assert "Traceback (most recent call last)" in listed
    assert ERROR not in page  # never as raw markup
    assert listed.count('class="state pending"') == 2


def test_the_page_needs_no_network(sweep_page):
    page, _ = sweep_page
    assert not re.search(r"https?://", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert page.startswith("<!DOCTYPE html>") and MARKER in page[:2048]


def test_a_folder_of_runs_with_a_branch(conv_sweep_dir, tmp_path, capsys):
    folder = tmp_path / "runs"
    parent = next(r for r in open_sweep(conv_sweep_dir).runs if r.config.seed == 0)
    shutil.copytree(parent.path, folder / parent.path.name)
    child = branch(folder / parent.path.name, "reinit", levels=1, progress=False)
    out = tmp_path / "page.html"
    only = ["p1_accuracy", "p4_regime_overlap"]  # the others are drawn in the sweep's page
    assert main(["report", str(folder), "--out", str(out), "--only", *only]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    page = out.read_text()
    assert "2 runs" in section(page, "status") and "2 done" in section(page, "status")
    results = section(page, "results")
    assert f"<td>{parent.run_id}</td>" in results and f"<td>{child.run_id}</td>" in results
    runs = section(page, "runs")
    assert f'reinit branch of <a href="#run-{parent.run_id}">{parent.run_id}</a>' in runs
    assert f"<th>parent.run_id</th><td>{parent.run_id}</td>" in runs  # its config.json record
    assert "branch.kind = reinit\n" in runs  # the branch's config
    assert re.findall(r'<img alt="([^"]+)"', section(page, "figures")) == only


def test_refuses_to_overwrite_a_file_that_is_not_a_report(
    mixed_sweep, sweep_page, tmp_path, capsys
):
    notes = tmp_path / "notes.html"
    notes.write_text("<html>my notes</html>")
    assert main(["report", str(mixed_sweep), "--out", str(notes)]) == 2
    err = capsys.readouterr().err
    assert "not a maskstudy report" in err and "--out" in err
    assert notes.read_text() == "<html>my notes</html>"
    check_target(mixed_sweep / "report.html")  # a report is replaced without a word


def test_long_analysis_tables_are_cut_and_say_so(monkeypatch):
    monkeypatch.setattr(sweep_report, "ANALYSIS_ROWS", 2)
    tables = {"overlap": pd.DataFrame({"jaccard": [0.5, 0.25, 0.125]})}
    shown = sweep_report.analysis_section(tables)
    assert "overlap (the first 2 of 3 rows; `maskstudy analyze` writes all)" in shown
    assert shown.count("<tr>") == 3  # the header and two rows
    skipped = sweep_report.skipped_section(
        sweep_report.FigureReport(), tables, pd.DataFrame({"state": []}), [], Path(".")
    )
    assert "Analysis rows left out" in skipped and "the first 2 of 3 rows" in skipped
