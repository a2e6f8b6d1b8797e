"""`maskstudy report`: one self-contained HTML page of a sweep or a folder of runs.

The page holds each run's state (as `maskstudy status` shows it), the tidy results table, every
figure `maskstudy figures` draws (PNG inlined as ``data:`` URIs), the tables `maskstudy
analyze` computes, each run's config and provenance, and what was skipped and why. Everything
is inline (styles, a few lines of script to sort tables, images): it opens from disk with no
server and no network.
"""

from __future__ import annotations

import base64
import html
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image

from maskstudy.analysis.report import analysis_tables
from maskstudy.errors import StoreError
from maskstudy.files import write_atomic
from maskstudy.plots import FigureReport, draw_figures
from maskstudy.runs.discover import open_runs, status_of
from maskstudy.runs.lock import ERROR_FILE
from maskstudy.runs.store import Run
from maskstudy.runs.sweep import RUN_STATES, SWEEP_FILE, open_sweep
from maskstudy.runs.table import ALIASES, flatten, runs_frame

REPORT_FILE = "report.html"
CSS_DPI = 96  # CSS pixels per inch
FIGURE_SCALE = 1.5  # figures are drawn for paper (7-8 pt text): a little larger on screen
ANALYSIS_ROWS = 5000  # rows of each analysis table in the page (a page of megabytes, not tens)
BRANCH_COLUMNS = ("branch", "parent", "parent_regime")  # runs_frame's columns of a branch
# in every page's <head>: how a file is known as a report this command may overwrite
MARKER = '<meta name="generator" content="maskstudy report">'

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1400px; margin: 0 auto; padding: 0 24px 48px; }
h1 { font-size: 22px; margin: 24px 0 4px; } h2 { font-size: 18px; margin-top: 32px;
     border-bottom: 1px solid #ccc; } h3 { font-size: 15px; }
nav a { margin-right: 14px; } code, pre { font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; }
.scroll { overflow: auto; max-height: 640px; max-width: 100%; width: fit-content;
          border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; }
th[data-dir="asc"]::after { content: " \\25B2"; } th[data-dir="desc"]::after { content: " \\25BC"; }
.state { font-weight: 600; } .done { color: #1a7f37; } .failed, .diverged { color: #c62828; }
.partial, .running, .waiting { color: #9a6700; } .pending { color: #666; }
.figures { display: flex; flex-wrap: wrap; gap: 8px 32px; align-items: flex-start; }
figure { margin: 12px 0 20px; max-width: 100%; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-weight: 600; margin-bottom: 4px; }
details { margin: 6px 0; } summary { cursor: pointer; }
.same { color: #555; font-size: 12px; } pre.config { columns: 3 360px; }
"""

# Click a header to sort its table by that column (numbers as numbers), again to reverse.
SORT_SCRIPT = """
document.addEventListener("click", function (event) {
  var th = event.target.closest("table.sortable th");
  if (!th) return;
  var table = th.closest("table"), body = table.tBodies[0], i = th.cellIndex;
  var dir = th.dataset.dir === "asc" ? -1 : 1;
  table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
  th.dataset.dir = dir > 0 ? "asc" : "desc";
  var rows = Array.from(body.rows).sort(function (a, b) {
    var x = a.cells[i].textContent, y = b.cells[i].textContent;
    var numbers = x !== "" && y !== "" && !isNaN(x) && !isNaN(y);
    return dir * (numbers ? x - y : x.localeCompare(y));
  });
  rows.forEach(function (row) { body.appendChild(row); });
});
"""


def check_target(out: Path) -> None:
    """Refuse, before any work, to replace a file that is not a maskstudy report."""
    if not out.exists():
        return
    head = out.read_bytes()[:2048].decode("utf-8", errors="replace") if out.is_file() else ""
    if MARKER not in head:
        raise StoreError(
            f"{out} exists and is not a maskstudy report; nothing was written. Pass --out FILE "
            "to write the report elsewhere (or remove that file)"
        )


def runs_and_status(directory: Path) -> tuple[list[Run], pd.DataFrame]:
    """The runs under ``directory`` and one status row per run, as `maskstudy status` shows
    them (a sweep's own status, which also lists the runs not started yet)."""
    status = status_of(directory)  # refuses runs made elsewhere, which have no state
    runs = (
        open_sweep(directory).runs if (directory / SWEEP_FILE).is_file() else open_runs(directory)
    )
    return runs, status


def figure_images(
    runs: Sequence[Run], tables: dict[str, pd.DataFrame], names: Sequence[str] | None
) -> tuple[FigureReport, dict[str, bytes]]:
    """Every figure `maskstudy figures` draws for ``runs`` (or those of ``names``), as PNG
    bytes by name, and its report (the skipped figures with their reason)."""
    with tempfile.TemporaryDirectory(prefix="maskstudy-report-") as folder:
        report = draw_figures(runs, folder, formats=("png",), tables=tables, names=names)
        return report, {name: paths[0].read_bytes() for name, paths in report.drawn.items()}


def write_report(
    directory: str | Path, out: str | Path, figures: Sequence[str] | None = None
) -> FigureReport:
    """Write the report page of the sweep or folder of runs ``directory`` to ``out`` and
    return what the figures drew and skipped; ``figures``: only these (names as in
    ``maskstudy figures --only``), e.g. to leave out slow ones."""
    directory, out = Path(directory), Path(out)
    check_target(out)
    runs, status = runs_and_status(directory)
    frame = runs_frame(runs)
    completed = [run for run in runs if run.levels]
    tables = analysis_tables(completed) if completed else {}
    if completed:
        report, images = figure_images(completed, {**tables, "runs": frame}, figures)
    else:
        report, images = FigureReport(skipped={"every figure": "no run has a completed level"}), {}
    sections = [
        ("status", "Run status", status_section(status)),
        ("results", "Results", results_section(frame)),
        ("figures", "Figures", figures_section(images)),
        ("analysis", "Analysis tables", analysis_section(tables)),
        ("runs", "Runs: config and provenance", runs_section(runs, status)),
        ("skipped", "Skipped", skipped_section(report, tables, status, runs, directory)),
    ]
    write_atomic(out, page(directory, sections).encode("utf-8"))
    return report


# --- the page ---------------------------------------------------------------------------------
def esc(value: object) -> str:
    """Any value as HTML-escaped text (quotes too, so it may sit in an attribute)."""
    return html.escape(str(value), quote=True)


def page(directory: Path, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: head (marker, style, sort script), a table of contents, sections."""
    title = f"maskstudy report: {directory.resolve().name}"
    nav = "".join(f'<a href="#{key}">{esc(name)}</a>' for key, name, _ in sections)
    body = "".join(
        f'<section id="{key}"><h2>{esc(name)}</h2>{content}</section>'
        for key, name, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"{MARKER}<title>{esc(title)}</title><style>{STYLE}</style>"
        f"<script>{SORT_SCRIPT}</script></head><body><h1>{esc(title)}</h1>"
        f"<p><code>{esc(directory.resolve())}</code></p><nav>{nav}</nav>{body}</body></html>\n"
    )


def cell(value: object, css: str = "") -> str:
    """One table cell: whole numbers as they are and others to 4 significant digits, both
    right-aligned; missing values empty."""
    if pd.api.types.is_number(value) and not pd.api.types.is_bool(value):
        text = "" if pd.isna(value) else f"{value:.4g}" if isinstance(value, float) else value
        return f'<td class="num">{text}</td>'
    return f'<td class="{css}">{esc(value)}</td>' if css else f"<td>{esc(value)}</td>"


def table(frame: pd.DataFrame, state: str | None = None, hoist: bool = True) -> str:
    """A sortable table of ``frame``; when ``hoist``, columns holding one value in every row
    are written once above it instead (the full config of every row would hide what differs).
    The column named ``state`` is coloured by its value (a run's state)."""
    if frame.empty:
        return "<p>(no rows)</p>"
    constant = [c for c in frame.columns if frame[c].astype(str).nunique() == 1]
    same = constant if hoist and len(frame) > 1 else []
    shown = frame.drop(columns=same)
    note = (
        f'<details class="same"><summary>{len(same)} columns hold the same value in every row'
        "</summary>"
        + ", ".join(f"<code>{esc(c)} = {esc(frame[c].iloc[0])}</code>" for c in same)
        + "</details>"
        if same
        else ""
    )
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    marked = [c == state for c in shown.columns]
    rows = "".join(
        "<tr>"
        + "".join(cell(v, f"state {esc(v)}" if m else "") for v, m in zip(row, marked, strict=True))
        + "</tr>"
        for row in shown.itertuples(index=False, name=None)
    )
    return (
        f'{note}<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def status_section(status: pd.DataFrame) -> str:
    """How many runs are in each state, then one row per run."""
    counts = status["state"].value_counts()
    summary = ", ".join(
        f'<span class="state {s}">{counts[s]} {s}</span>' for s in RUN_STATES if s in counts
    )
    return f"<p>{len(status)} runs: {summary}</p>" + table(status, state="state", hoist=False)


def results_section(frame: pd.DataFrame) -> str:
    """The tidy frame: one row per (run, completed level), the columns naming the run first."""
    first = [c for c in ("run_id", *ALIASES.values(), *BRANCH_COLUMNS, "level") if c in frame]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    intro = (
        f"<p>{frame['run_id'].nunique()} runs, {len(frame)} rows: one per completed level. "
        "Click a column header to sort.</p>"
        if not frame.empty
        else ""
    )
    return intro + table(frame)


def display_width(png: bytes) -> int:
    """CSS pixels to show a figure at: its size on paper (matplotlib stores its dpi in the PNG)
    times :data:`FIGURE_SCALE`, whatever dpi it was drawn at."""
    with Image.open(io.BytesIO(png)) as image:
        dpi = image.info.get("dpi", (CSS_DPI,))[0]
        return round(image.width / dpi * CSS_DPI * FIGURE_SCALE)


def figures_section(images: dict[str, bytes]) -> str:
    """Each drawn figure as an inline PNG under its name, side by side where they fit."""
    if not images:
        return "<p>No figure was drawn; see <a href='#skipped'>Skipped</a>.</p>"
    return (
        '<div class="figures">'
        + "".join(
            f'<figure id="figure-{esc(name)}"><figcaption>{esc(name)}</figcaption>'
            f'<img alt="{esc(name)}" width="{display_width(png)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode("ascii")}"></figure>'
            for name, png in images.items()
        )
        + "</div>"
    )


def analysis_section(tables: dict[str, pd.DataFrame]) -> str:
    """The overlap, structure and stability tables `maskstudy analyze` writes, each collapsed;
    the first :data:`ANALYSIS_ROWS` rows of a longer one, so that the page stays light."""
    if not tables:
        return "<p>No run has a completed level: nothing to analyse yet.</p>"
    return "".join(
        f"<details><summary>{esc(name)} ({rows_shown(frame)})</summary>"
        f"{table(frame.head(ANALYSIS_ROWS))}</details>"
        for name, frame in tables.items()
    )


def rows_shown(frame: pd.DataFrame) -> str:
    """How many of an analysis table's rows the page shows, and where the others are."""
    if len(frame) <= ANALYSIS_ROWS:
        return f"{len(frame):,} rows"
    return f"the first {ANALYSIS_ROWS:,} of {len(frame):,} rows; `maskstudy analyze` writes all"


def run_anchor(run_id: str) -> str:
    """The id of a run's block in the page, which its branches' provenance links to."""
    return "run-" + esc(run_id)


def provenance(run: Run, ids: set[str]) -> str:
    """Where the run comes from: its parent (a branch) and its config.json record (created,
    versions, seed, sha256 of its weights and of the parent masks it trained)."""
    lines = ""
    if run.config.is_branch:
        parent = run.config.branch.parent
        where = (
            f'<a href="#{run_anchor(parent)}">{esc(parent)}</a>'
            if parent in ids
            else f"{esc(parent)} (not in this report)"
        )
        lines = f"<p>{esc(run.config.branch.kind)} branch of {where}</p>"
    record = flatten({k: v for k, v in run.info.items() if k != "config"})
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in record.items())
    return f"{lines}<table>{rows}</table>"


def runs_section(runs: Sequence[Run], status: pd.DataFrame) -> str:
    """One collapsed block per run: its state, provenance and resolved config."""
    if not runs:
        return "<p>No run has started yet.</p>"
    states = dict(zip(status["run_id"], status["state"], strict=True))
    ids = {run.run_id for run in runs}
    folds = []
    for run in runs:
        state = states.get(run.run_id, "")
        config = "\n".join(f"{k} = {v}" for k, v in flatten(run.config.to_dict()).items())
        folds.append(
            f'<details id="{run_anchor(run.run_id)}"><summary><code>{esc(run.run_id)}</code> '
            f'<span class="state {esc(state)}">{esc(state)}</span></summary>'
            f"<h3>Provenance</h3>{provenance(run, ids)}"
            f'<h3>Config</h3><pre class="config">{esc(config)}</pre></details>'
        )
    return "".join(folds)


def skipped_section(
    report: FigureReport,
    tables: dict[str, pd.DataFrame],
    status: pd.DataFrame,
    runs: Sequence[Run],
    directory: Path,
) -> str:
    """The figures the runs cannot support, the analysis rows left out, and every run not
    done, with the reason or error (a failed run's full traceback too: a sweep's run may fail
    before its config.json)."""
    paths = {run.run_id: run.path for run in runs}
    figures = "".join(
        f"<li><code>{esc(name)}</code>: {esc(why)}</li>" for name, why in report.skipped.items()
    )
    parts = [f"<h3>Figures skipped</h3><ul>{figures or '<li>none</li>'}</ul>"]
    long = [
        f"<li>{esc(name)}: {esc(rows_shown(t))}</li>"
        for name, t in tables.items()
        if len(t) > ANALYSIS_ROWS
    ]
    if long:
        parts.append(f"<h3>Analysis rows left out</h3><ul>{''.join(long)}</ul>")
    items = []
    for row in status[status["state"] != "done"].itertuples(index=False):
        error = paths.get(row.run_id, directory / row.run_id) / ERROR_FILE
        trace = (
            f"<details><summary>traceback</summary><pre>{esc(error.read_text(errors='replace'))}"
            "</pre></details>"
            if row.state == "failed" and error.is_file()
            else ""
        )
        detail = f": {esc(row.detail)}" if row.detail else ""
        items.append(
            f'<li><code>{esc(row.run_id)}</code> <span class="state {esc(row.state)}">'
            f"{esc(row.state)}</span> ({esc(row.levels)} levels){detail}{trace}</li>"
        )
    parts.append(f"<h3>Runs not done</h3><ul>{''.join(items) or '<li>none</li>'}</ul>")
    return "".join(parts)
