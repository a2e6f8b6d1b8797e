"""The demo: a small pruning grid on scikit-learn's digits (no files needed), ending in figures."""

from __future__ import annotations

import itertools
from pathlib import Path

from tqdm import tqdm

from maskstudy.data import from_config
from maskstudy.plots.accuracy import accuracy_vs_remaining
from maskstudy.runs.presets import get_preset
from maskstudy.runs.run import run
from maskstudy.runs.table import runs_frame

CRITERIA = ("magnitude", "random")
REGIMES = ("rewind", "reinit", "finetune")
SEEDS = (0, 1)


def demo(out: str | Path = "demo", levels: int = 5, device: str = "cpu") -> Path:
    """Run criteria × regimes × seeds on digits into ``out/runs``, write the table and figures."""
    out = Path(out)
    base = get_preset("lenet300_digits").replace({"levels": levels})
    grid = [
        base.replace({"prune.criterion": c, "regime": r, "seed": s})
        for c, r, s in itertools.product(CRITERIA, REGIMES, SEEDS)
    ]
    data = from_config(base.data, device=device)
    runs = [
        run(cfg, out / "runs", data=data, progress=False) for cfg in tqdm(grid, desc="demo runs")
    ]
    frame = runs_frame(runs)
    frame.to_csv(out / "results.csv", index=False)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    fig = accuracy_vs_remaining(frame)
    for fmt in ("pdf", "png"):
        fig.savefig(figures / f"accuracy_vs_remaining.{fmt}")
    return out
