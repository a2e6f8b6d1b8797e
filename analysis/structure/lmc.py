"""Linear mode connectivity of the conv-structure study's magnitude arms at a few levels
(issue #19, the weight-stability claim): is a level's start stable to SGD noise under rewinding
to θ0, under Paganini & Forde's reinitialise-then-prune, and under fine-tuning?

For each run of the chosen model and arms and each chosen level, two copies train from the
level's start weights under its mask with data orders 1 and 2 (`maskstudy lmc`), and the error
along the line between them is written to RUN/analysis/lmc_levelLL_seeds1-2.csv, the file
`maskstudy lmc` writes. A probe whose file exists is skipped, so the script resumes; the figure
script (figures.py) reads the curves. Sweep directories first, options after them:

    python analysis/structure/lmc.py SWEEP_DIR [SWEEP_DIR ...] [--model lenet5] [--levels 2 5 7]
                                     [--seeds 0 1 2] [--data DIR] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study's runs and tables

from structure_arms import FINETUNE, REINIT, TICKET, read_study  # noqa: E402

from maskstudy.analysis.lmc import lmc_csv_name, lmc_probe  # noqa: E402

ARMS = (TICKET, REINIT, FINETUNE)
SEEDS = (1, 2)  # the data orders of the two copies


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep directories")
    parser.add_argument("--model", default="lenet5", help="model.name of the runs probed")
    parser.add_argument("--levels", nargs="+", type=int, default=[2, 5, 7])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="run seeds")
    parser.add_argument("--data", type=Path, help="data directory (default: the runs' own)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Probe every chosen (run, level) that has no curve yet; print each barrier."""
    args = parse_args(argv)
    study = read_study(args.sweeps)
    arms = {study.arm(key) for key in ARMS} - {None}
    chosen = [
        m
        for m in study.members
        if m.arm in arms and m.seed in args.seeds and m.run.config.model.name == args.model
    ]
    if not chosen:
        print(f"no run of {args.model} in the arms {[a.name for a in arms]} and seeds {args.seeds}")
        return 1
    for member in chosen:
        for level in args.levels:
            out = member.run.path / "analysis" / lmc_csv_name(level, SEEDS)
            if out.exists() or level not in member.run.levels:
                continue
            began = time.perf_counter()
            result = lmc_probe(
                member.run, level, data_root=args.data, seeds=SEEDS, device=args.device
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            result.curve.to_csv(out, index=False)
            print(
                f"{member.model} · {member.arm.name} · seed {member.seed} · level {level}: "
                f"barrier {100 * result.barrier_test:.2f} points (test), "
                f"{time.perf_counter() - began:.0f} s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
