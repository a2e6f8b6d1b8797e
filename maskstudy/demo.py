"""The demo: a small pruning sweep on scikit-learn's digits (no files needed), ending in figures."""

from __future__ import annotations

from pathlib import Path

from maskstudy.plots.accuracy import accuracy_vs_remaining
from maskstudy.runs.executors import run_sweep
from maskstudy.runs.sweep import open_sweep

DEMO_SWEEP = """\
# maskstudy demo: criteria x regimes x seeds on scikit-learn's digits (embedded, no download)
preset = "lenet300_digits"
levels = {levels}
seeds = [0, 1]

[grid]
"prune.criterion" = ["magnitude", "random"]
regime = ["rewind", "reinit", "finetune"]
"""


def demo(out: str | Path = "demo", levels: int = 5, device: str | None = None) -> Path:
    """Run the demo sweep into ``out/runs``, then write ``out/results.csv`` and ``out/figures``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweep_file = out / "demo_sweep.toml"
    sweep_file.write_text(DEMO_SWEEP.format(levels=levels))
    run_sweep(sweep_file, out / "runs", device=device)
    frame = open_sweep(out / "runs").frame()
    frame.to_csv(out / "results.csv", index=False)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    fig = accuracy_vs_remaining(frame)
    for fmt in ("pdf", "png"):
        fig.savefig(figures / f"accuracy_vs_remaining.{fmt}")
    return out
