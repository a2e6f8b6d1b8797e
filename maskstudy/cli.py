"""The ``maskstudy`` command line: the parser here, what each command does in ``commands.py``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from maskstudy.errors import MaskstudyError


def _positive_epochs(text: str) -> float:
    """``--epochs``: a number of epochs each level trains, said plainly when it cannot be one."""
    try:
        epochs = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of epochs; give e.g. 2 or 0.5"
        ) from None
    if not epochs > 0 or epochs == float("inf"):
        raise argparse.ArgumentTypeError(
            f"{text}: every level must train for some epochs, so give a number above 0, e.g. "
            "--epochs 1 (or --set train.duration=100it for fewer than an epoch)"
        )
    return epochs


def _log_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log",
        action="extend",
        nargs="+",
        metavar="LOGGER",
        help="stream every evaluation to csv, tensorboard and/or wandb (offline), written in "
        f"each run's directory (default: {default})",
    )


def _checkpoint_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=5.0,
        help="save a level's training state this often, so a killed level resumes there "
        "(default 5; 0: never)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskstudy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run (or resume) iterative pruning from a preset")
    r.add_argument("--preset", required=True, help="preset name (see `maskstudy presets`)")
    r.add_argument("--levels", type=int, help="pruning levels after the dense level 0")
    r.add_argument("--epochs", type=_positive_epochs, help="training epochs per level")
    r.add_argument("--seed", type=int, help="run seed")
    r.add_argument(
        "--set",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="override a config field by dotted name, e.g. --set train.lr=0.01 levels=3 (several per flag; repeatable)",
    )
    r.add_argument("--data", help="data directory (default: $MASKSTUDY_DATA or data/)")
    r.add_argument("--out", default="runs", help="output directory (default: runs/)")
    r.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    _checkpoint_option(r)
    _log_option(r, "none")
    r.set_defaults(command="run")

    b = sub.add_parser(
        "branch", help="train a run's stored masks under another kind (the papers' controls)"
    )
    b.add_argument("parent", help="the parent run directory, whose masks the branch trains")
    b.add_argument(
        "--kind",
        required=True,
        help="reinit | random_mask | shuffle | rewind | scratch_e | scratch_b | finetune | "
        "lr_rewind (docs/methods.md, Branches)",
    )
    which = b.add_mutually_exclusive_group()
    which.add_argument("--levels", type=int, help="the parent's levels 1..L (default: all done)")
    which.add_argument("--level", type=int, help="only the parent's level L")
    b.add_argument(
        "--seed", type=int, help="seed of the fresh init and data order (default: the parent's)"
    )
    b.add_argument(
        "--set",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="override a train.*, data.* or rewind_to field, e.g. rewind_to=500it (several per flag; repeatable)",
    )
    b.add_argument(
        "--out", help="where the branch goes (default: the directory holding the parent)"
    )
    b.add_argument("--data", help="data directory (default: $MASKSTUDY_DATA or data/)")
    b.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    _checkpoint_option(b)
    _log_option(b, "none")
    b.set_defaults(command="branch")

    d = sub.add_parser("demo", help="small pruning grid on scikit-learn digits, ending in figures")
    d.add_argument("--out", default="demo", help="output directory (default: demo/)")
    d.add_argument("--levels", type=int, default=4, help="pruning levels per run (default 4)")
    d.add_argument(
        "--epochs", type=_positive_epochs, default=10, help="training epochs per level (default 10)"
    )
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    d.set_defaults(command="demo")

    w = sub.add_parser("sweep", help="run (or resume) every run of a TOML sweep file")
    w.add_argument("file", help="sweep file (.toml): preset/base, grid, tied axes, seeds")
    w.add_argument("--out", required=True, help="sweep directory (holds sweep.toml and the runs)")
    w.add_argument("--executor", default="local", help="local (default), slurm or ray")
    w.add_argument(
        "--jobs", type=int, help="local worker processes (default: one per CPU core, or per GPU)"
    )
    w.add_argument(
        "--replicas",
        type=int,
        help="seeds trained side by side per task (default: 8 for small models, else 1)",
    )
    w.add_argument("--no-replicas", action="store_true", help="train every seed on its own")
    w.add_argument("--data", help="data directory (default: $MASKSTUDY_DATA or data/)")
    w.add_argument("--device", help="cpu, cuda or cuda:N (default: every visible GPU, else cpu)")
    w.add_argument(
        "--slurm",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="submitit resource, e.g. timeout_min=120, slurm_partition=gpu (several per flag; repeatable)",
    )
    w.add_argument("--cluster", help="submitit cluster: slurm (default when found), local, debug")
    w.add_argument("--extend", action="store_true", help="grow an existing sweep with a new file")
    w.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="train only these seeds of the file (the others stay planned, pending): a long "
        "sweep split over sessions or machines",
    )
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    _log_option(w, "the sweep file's log = [...], else none")
    w.set_defaults(command="sweep")

    st = sub.add_parser(
        "status", help="each run's state (done, partial, failed, pending, ...) and final accuracy"
    )
    st.add_argument("dir", help="sweep, run or folder of runs")
    st.add_argument("--short", action="store_true", help="leave out the run ids")
    st.set_defaults(command="status")

    ls = sub.add_parser("ls", help="the runs of a sweep or folder: levels, %% remaining, accuracy")
    ls.add_argument("dir", help="sweep, run or folder of runs")
    ls.set_defaults(command="ls")

    v = sub.add_parser(
        "verify", help="check every stored file against its recorded sha256 (exit 1 if damaged)"
    )
    v.add_argument("dir", help="run, sweep or folder of runs")
    v.add_argument("--all", action="store_true", help="list intact files too")
    v.set_defaults(command="verify")

    a = sub.add_parser("analyze", help="overlap, structure and stability tables of a set of runs")
    a.add_argument("dir", help="sweep, run, folder of runs, or OpenLTH results directory")
    a.add_argument("--out", help="where the tables go (default: DIR/analysis)")
    a.set_defaults(command="analyze")

    f = sub.add_parser("figures", help="every paper figure a sweep supports (PDF and PNG)")
    f.add_argument("dir", help="sweep, run, folder of runs, or OpenLTH results directory")
    f.add_argument("--out", help="where the figures go (default: DIR/figures)")
    f.add_argument("--format", default="pdf,png", help="comma-separated: pdf, png, svg ...")
    f.add_argument("--only", nargs="+", metavar="NAME", help="draw only these figures")
    f.set_defaults(command="figures")

    rp = sub.add_parser(
        "report", help="one self-contained HTML page: status, results, figures, analyses, configs"
    )
    rp.add_argument("dir", help="sweep, run or folder of runs")
    rp.add_argument("--out", help="the HTML file (default: DIR/report.html)")
    rp.add_argument("--only", nargs="+", metavar="NAME", help="draw only these figures")
    rp.set_defaults(command="report")

    m = sub.add_parser("lmc", help="linear-mode-connectivity error barrier of one level of a run")
    m.add_argument("run", help="run directory")
    m.add_argument("--level", type=int, required=True, help="level whose start weights are copied")
    m.add_argument(
        "--seeds", type=int, nargs=2, default=[1, 2], help="data-order seeds of the two copies"
    )
    m.add_argument(
        "--rewind-to",
        metavar="K",
        help="level 0 only: step k the two dense copies start from, e.g. 500it or 2ep (default: "
        "the run's rewind_to; a θk the run did not store is replayed from θ0)",
    )
    m.add_argument("--points", type=int, default=30, help="interpolation points (default 30)")
    m.add_argument(
        "--data",
        help="data directory (default: the one the run trained from, else $MASKSTUDY_DATA or data/)",
    )
    m.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    m.add_argument(
        "--out",
        help="CSV of the curve (default: RUN/analysis/lmc_levelLL_seedsA-B.csv, with _kK "
        "after LL when --rewind-to is given)",
    )
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(command="lmc")

    p = sub.add_parser("presets", help="list presets with their hyperparameters")
    p.set_defaults(command="presets")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # the commands (and torch) load only once a command runs: --help answers at once
        from maskstudy import commands

        return getattr(commands, f"cmd_{args.command}")(args)
    except MaskstudyError as e:
        print(f"maskstudy: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(
            "maskstudy: interrupted; completed levels are saved, run again to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
