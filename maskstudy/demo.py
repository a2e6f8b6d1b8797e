"""The demo: a small pruning sweep on scikit-learn's digits (no files needed), analysed and drawn.

An MLP (LeNet-300-100) and a small conv net (Conv-2 at quarter width), two criteria × three
regimes × two seeds, the lottery-ticket control (a ``reinit`` branch of each magnitude · rewind
run: its masks from a fresh init), then the overlap / structure / stability tables and every
paper figure the sweep supports.
"""

from __future__ import annotations

from pathlib import Path

from maskstudy.analysis.report import analysis_tables, write_tables
from maskstudy.plots import FigureReport, draw_figures
from maskstudy.runs.checks import check_device
from maskstudy.runs.executors import run_sweep
from maskstudy.runs.sweep import open_sweep

DEMO_SWEEP = """\
# maskstudy demo: models x criteria x regimes x seeds on scikit-learn's digits (embedded, no download)
preset = "lenet300_digits"
levels = {levels}
seeds = [0, 1]

[base]
"train.duration" = "{epochs}ep"

[[tied]]
"model.name" = ["lenet300_100", "conv2"]
"model.width" = [1.0, 0.25]

[grid]
"prune.criterion" = ["magnitude", "random"]
regime = ["rewind", "reinit_prune", "finetune"]

[branches]
kinds = ["reinit"]
of = {{ regime = "rewind", "prune.criterion" = "magnitude" }}
"""


def demo(
    out: str | Path = "demo",
    levels: int = 4,
    epochs: float = 10,
    device: str | None = None,
    progress: bool = True,
) -> tuple[Path, FigureReport]:
    """Run the demo sweep into ``out/runs``; write ``out/results.csv``, ``out/analysis`` and
    ``out/figures``. Calling it again reuses the finished runs (more levels extend them)."""
    check_device(device)  # before the demo's folder and sweep file are written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweep_file = out / "demo_sweep.toml"
    sweep_file.write_text(DEMO_SWEEP.format(levels=levels, epochs=epochs))
    run_sweep(sweep_file, out / "runs", device=device, progress=progress, extend=True)
    sweep = open_sweep(out / "runs")
    frame = sweep.frame(all_columns=True)
    frame.to_csv(out / "results.csv", index=False)
    tables = analysis_tables(sweep.runs)
    write_tables(tables, out / "analysis")
    report = draw_figures(sweep.runs, out / "figures", tables={**tables, "runs": frame})
    return out, report
