"""The whole conv-structure study in one command (issue #19): its four sweeps in order, the
linear-mode-connectivity probes, the convergence pairs, then every table and figure, with the
wall time of each step in OUT/wall_times.csv. Every step resumes (finished runs and probes are
read back, not redone), so a call that stops midway picks up where it left off.

On this project's 2-core CPU machines the sweeps take about 30 hours, so there the study runs in
pieces: a few seeds per session, each piece's inputs saved by figures.py and merged by it later
(the study's README, 'In pieces'); a GPU (--device cuda with several --jobs) is the way to run it
in one sitting, not yet measured here.
--data, --device, --jobs and --replicas go to every sweep; --data and --device to every probe:

    python analysis/structure/run_all.py --root sweeps --out figures/structure --data ../shared/data
    python analysis/structure/run_all.py --root sweeps --out figures/structure --data ../shared/data \\
        --device cuda --jobs 8 [--only fmnist fmnist_long] [--permutations 999]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the study's runs and tables

from structure_arms import read_study  # noqa: E402

# sweep file → sweep directory under --root, in the order they run (the study's README)
STUDY = {
    "fmnist": "structure_fmnist",
    "fmnist_long": "structure_fmnist_long",
    "conv4_fmnist": "structure_conv4",
    "mnist": "structure_mnist",
}
LONG = "fmnist_long"  # the convergence twin of "fmnist": compared, never pooled into the figures
LMC_MODELS = ("lenet5", "conv2", "conv4")  # one probe process each, side by side


def parse_args(argv: Sequence[str] | None, study: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder of the sweep directories")
    parser.add_argument("--out", type=Path, required=True, help="folder of the tables and figures")
    parser.add_argument(
        "--only", nargs="+", choices=list(study), help="these sweeps (default: all)"
    )
    parser.add_argument("--data", help="data directory (default: $MASKSTUDY_DATA or data/)")
    parser.add_argument(
        "--device", help="cpu, cuda or cuda:N (sweeps default to a GPU, probes to cpu)"
    )
    parser.add_argument("--jobs", type=int, help="sweep worker processes")
    parser.add_argument("--replicas", type=int, help="seeds trained side by side per sweep task")
    parser.add_argument("--permutations", type=int, default=999, help="per permutation test")
    parser.add_argument("--lmc-levels", nargs="+", default=["2", "5", "7"], help="levels probed")
    return parser.parse_args(argv)


def given(args: argparse.Namespace, *options: str) -> list[str]:
    """The named options the user gave this script, as command-line words to pass on."""
    words = [[f"--{o}", str(getattr(args, o))] for o in options if getattr(args, o) is not None]
    return [word for pair in words for word in pair]


def sweep_command(toml: Path, sweep_dir: Path, args: argparse.Namespace) -> list[str]:
    """`maskstudy sweep` of one study file with the options given to this script."""
    command = [sys.executable, "-m", "maskstudy.cli", "sweep", str(toml), "--out", str(sweep_dir)]
    return [*command, *given(args, "data", "device", "jobs", "replicas"), "--quiet"]


def lmc_command(model: str, sweeps: Sequence[Path], args: argparse.Namespace) -> list[str]:
    """analysis/structure/lmc.py for one model over the study's sweeps."""
    command = [sys.executable, str(HERE / "lmc.py"), *map(str, sweeps), "--model", model]
    return [*command, "--levels", *args.lmc_levels, *given(args, "data", "device")]


def timed(step: str, commands: Sequence[list[str]], times: list[dict]) -> bool:
    """Run the commands side by side, wait for all, record the step's wall time and exit codes;
    True when every command exited 0."""
    began = time.perf_counter()
    print(f"== {step}", flush=True)
    codes = [proc.wait() for proc in [subprocess.Popen(c) for c in commands]]
    seconds = time.perf_counter() - began
    times.append(
        {"step": step, "seconds": round(seconds, 1), "exit_codes": " ".join(map(str, codes))}
    )
    print(f"== {step}: {seconds:.0f} s, exit codes {codes}", flush=True)
    return not any(codes)


def models_of(sweeps: Sequence[Path]) -> list[str]:
    """The LMC_MODELS that the sweeps hold runs of."""
    held = {m.run.config.model.name for m in read_study(sweeps).members}
    return [m for m in LMC_MODELS if m in held]


def main(argv: Sequence[str] | None = None, study: Mapping[str, str] | None = None) -> int:
    """Sweep, probe, compare and draw; 0 when every step exited cleanly."""
    study = study or {str(HERE / f"{name}.toml"): folder for name, folder in STUDY.items()}
    args = parse_args(argv, {Path(toml).stem: folder for toml, folder in study.items()})
    chosen = {t: f for t, f in study.items() if not args.only or Path(t).stem in args.only}
    times: list[dict] = []
    clean = True
    for toml, folder in chosen.items():
        sweep = [sweep_command(Path(toml), args.root / folder, args)]
        clean &= timed(f"sweep {Path(toml).name}", sweep, times)
    done = {Path(t).stem: args.root / f for t, f in study.items() if (args.root / f).is_dir()}
    pooled = [d for name, d in done.items() if name != LONG]
    if pooled:
        clean &= timed(
            "lmc probes", [lmc_command(m, pooled, args) for m in models_of(pooled)], times
        )
    if LONG in done and "fmnist" in done:
        convergence = [sys.executable, str(HERE / "convergence.py"), str(done["fmnist"])]
        convergence += [str(done[LONG]), "--out", str(args.out)]
        clean &= timed("convergence", [convergence], times)
    if pooled:
        figures = [sys.executable, str(HERE / "figures.py"), *map(str, pooled)]
        figures += ["--out", str(args.out), "--format", "png,pdf"]
        clean &= timed("figures", [[*figures, "--permutations", str(args.permutations)]], times)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(times).to_csv(args.out / "wall_times.csv", index=False)
    print(f"wall times: {args.out / 'wall_times.csv'}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
