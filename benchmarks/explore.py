"""Time the mask explorer on a 24-run sweep: what one move of its level slider costs.

Builds (or, with ``--sweep``, opens) a sweep of 24 tiny runs on synthetic 28×28 inputs:
{magnitude, random} × {rewind, finetune, reinit_prune} × seeds 0–3, levels 0–4, 6 iterations
per level (LeNet-5: 15 s on one core). Then opens ``maskstudy.explore(sweep)`` and sets the
level slider to every level of run A and back, as a drag does: each move reads run A's and run
B's masks (from disk on the first pass, from the explorer's cache after), computes the densities,
the two overlaps and their chance baselines, updates the figure and renders it to PNG. Prints the
time to open the explorer and, per move, the median and the worst of the first pass and of the
cached passes on each layer, then of layer and run changes (both lay the figure out again).

    python benchmarks/explore.py [--sweep DIR] [--model lenet5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import maskstudy
from maskstudy.runs.executors import run_sweep

TARGET = 0.5  # seconds per slider move the explorer is built to stay under
SWEEP = """
levels = 4
seeds = [0, 1, 2, 3]
[base]
data.name = "synthetic"
data.synthetic_shape = [1, 28, 28]
data.synthetic_size = 256
model.name = "{model}"
train.optimizer = "sgd"
train.lr = 0.05
train.batch_size = 32
train.duration = "6it"
train.eval_every = "3it"
"prune.amount" = 0.5
[grid]
"prune.criterion" = ["magnitude", "random"]
regime = ["rewind", "finetune", "reinit_prune"]
"""


def build_sweep(root: Path, model: str) -> Path:
    """The 24-run sweep of ``model`` under ``root``, trained in this process; its directory."""
    (root / "grid.toml").write_text(SWEEP.format(model=model))
    run_sweep(root / "grid.toml", root / "sweep", jobs=1, progress=False)
    return root / "sweep"


def timed(action: Callable[[], object]) -> float:
    """Wall seconds of one call of ``action``."""
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def moves(control: Any, values: list[Any], rounds: int = 1) -> list[float]:
    """Seconds of each ``control.value = v`` for v in ``values``, ``rounds`` times over."""
    return [timed(lambda v=v: setattr(control, "value", v)) for _ in range(rounds) for v in values]


def report(what: str, seconds: list[float]) -> None:
    print(
        f"{what:<42} median {1000 * statistics.median(seconds):6.0f} ms, "
        f"worst {1000 * max(seconds):6.0f} ms ({len(seconds)} moves)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, help="an existing sweep directory to open instead")
    parser.add_argument("--model", default="lenet5", help="the model of the sweep built")
    parser.add_argument("--rounds", type=int, default=3, help="cached passes over the levels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.sweep is None:
            print(f"building a 24-run {args.model} sweep in {tmp} ...", flush=True)
            began = time.perf_counter()
            args.sweep = build_sweep(Path(tmp), args.model)
            print(f"built in {time.perf_counter() - began:.1f} s")
        sweep = maskstudy.open_sweep(args.sweep)
        maskstudy.explore(sweep.runs[:1])  # load ipywidgets and matplotlib: not the explorer's cost
        began = time.perf_counter()
        explorer = maskstudy.explore(sweep).explorer
        opened = time.perf_counter() - began
        levels = list(explorer.level.options)
        first = [level for level in levels if level != explorer.level.value]
        print(
            f"{len(explorer.runs)} runs, levels {levels}, torch threads {torch.get_num_threads()}; "
            f"explore(sweep) opened in {opened:.2f} s (each run's first mask read)"
        )
        cold = moves(explorer.level, first)
        report("level move, masks read from disk", cold)
        warm = []
        for _, layer in explorer.layer.options:  # cached: the mask image's cost, layer by layer
            explorer.layer.value = layer
            rows, columns = explorer.shown.image.shape
            times = moves(explorer.level, levels + levels[::-1], args.rounds)
            report(f"level move, {layer} ({rows} x {columns})", times)
            warm += times
        layers = [name for _, name in explorer.layer.options]
        report("layer change", moves(explorer.layer, layers[::-1]))
        report("run A change", moves(explorer.run_a, [i for _, i in explorer.run_a.options[1:6]]))
        worst = max(cold + warm)
        verdict = "under" if worst < TARGET else "OVER"
        print(f"worst level move {1000 * worst:.0f} ms: {verdict} the {TARGET} s target")


if __name__ == "__main__":
    main()
