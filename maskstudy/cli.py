"""The ``maskstudy`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from maskstudy.analysis.lmc import lmc_probe
from maskstudy.analysis.report import analysis_tables, write_tables
from maskstudy.demo import demo
from maskstudy.errors import ConfigError, MaskstudyError, StoreError
from maskstudy.plots import draw_figures
from maskstudy.runs.config import parse_value
from maskstudy.runs.discover import open_runs
from maskstudy.runs.executors import EXECUTORS, run_sweep
from maskstudy.runs.presets import PRESETS, get_preset
from maskstudy.runs.regimes import BRANCH_KINDS
from maskstudy.runs.run import branch, run
from maskstudy.runs.store import open_run
from maskstudy.runs.sweep import open_sweep
from maskstudy.runs.verify import is_damaged, summary, verify


def _key_values(items: Sequence[str] | None, flag: str, example: str) -> dict:
    """``["a.b=1", ...]`` → ``{"a.b": 1}``, values parsed as JSON when they parse."""

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r} must look like key=value, e.g. {flag} {example}")
        out[key.strip()] = parse_value(value.strip())
    return out


def _overrides(args: argparse.Namespace) -> dict:
    out = {}
    if args.levels is not None:
        out["levels"] = args.levels
    if args.epochs is not None:
        out["train.duration"] = f"{args.epochs}ep"
    if args.seed is not None:
        out["seed"] = args.seed
    return {**out, **_key_values(args.set, "--set", "train.lr=0.01")}


def cmd_run(args: argparse.Namespace) -> int:

    cfg = get_preset(args.preset).replace(_overrides(args))
    return _trained(run(cfg, args.out, **_training_options(args)))


def _training_options(args: argparse.Namespace) -> dict:
    """The options `run` and `branch` share: data, device, progress, checkpoints."""
    return {
        "data_root": args.data,
        "device": args.device,
        "progress": not args.quiet,
        "announce": True,
        "checkpoint_minutes": args.checkpoint_minutes,
    }


def _trained(result) -> int:
    """Print a finished run's levels and its directory (the last line, for scripts)."""
    table = result.metrics()[["level", "percent_remaining", "test_acc"]]
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"run directory: {result.path}")
    return 0


def cmd_branch(args: argparse.Namespace) -> int:

    result = branch(
        args.parent,
        args.kind,
        levels=args.levels,
        level=args.level,
        seed=args.seed,
        overrides=_key_values(args.set, "--set", "train.lr=0.01"),
        out=args.out,
        **_training_options(args),
    )
    return _trained(result)


def cmd_presets(args: argparse.Namespace) -> int:

    for name, preset in sorted(PRESETS.items()):
        c = preset.config
        t, p = c.train, c.prune
        print(f"{name}\n  {preset.source}")
        print(
            f"  data={c.data.name} model={c.model.name} init={c.model.init} regime={c.regime} "
            f"rewind_to={c.rewind_to} levels={c.levels}"
        )
        print(
            f"  train: {t.optimizer} lr={t.lr} momentum={t.momentum} wd={t.weight_decay} "
            f"batch={t.batch_size} duration={t.duration} schedule={t.schedule} "
            f"milestones={list(t.milestones)}"
        )
        print(
            f"  prune: {p.criterion} amount={p.amount} scope={p.scope} "
            f"layer_amounts={p.layer_amounts} exclude={list(p.exclude)}"
        )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:

    slurm = {}
    for item in args.slurm or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--slurm {item!r} must look like key=value, e.g. --slurm timeout_min=60"
            )
        slurm[key.strip()] = parse_value(value.strip())
    outcomes = run_sweep(
        args.file,
        args.out,
        executor=args.executor,
        jobs=args.jobs,
        replicas=1 if args.no_replicas else args.replicas,
        data_root=args.data,
        device=args.device,
        slurm=slurm,
        cluster=args.cluster,
        extend=args.extend,
        progress=not args.quiet,
    )
    print("this call: " + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())))
    status = open_sweep(args.out).status()
    print(_totals(status))
    # a run that failed without leaving error.txt (full disk) or a Slurm job that timed out
    # shows as partial or pending: the sweep is not complete, whatever the reason
    unfinished = status["state"].isin(["failed", "partial", "pending"]).any()
    return 1 if outcomes.get("failed") or unfinished else 0


def _totals(status) -> str:
    counts = status["state"].value_counts()
    parts = [
        f"{counts[s]} {s}"
        for s in ("done", "partial", "running", "waiting", "diverged", "failed", "pending")
        if s in counts
    ]
    return f"{len(status)} runs: " + ", ".join(parts)


def cmd_status(args: argparse.Namespace) -> int:

    status = open_sweep(args.dir).status()
    with pd_options():
        print(status.drop(columns="run_id" if args.short else []).to_string(index=False))
    print(_totals(status))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:

    frame = verify(args.dir)
    shown = frame if args.all else frame[frame["status"] != "ok"]
    if not shown.empty:
        with pd_options():
            print(shown.to_string(index=False))
    print(summary(frame))
    return 1 if is_damaged(frame) else 0


def pd_options():
    import pandas as pd

    return pd.option_context("display.max_colwidth", 80, "display.width", 200)


def cmd_demo(args: argparse.Namespace) -> int:

    out, report = demo(
        args.out,
        levels=args.levels,
        epochs=args.epochs,
        device=args.device,
        progress=not args.quiet,
    )
    print(report)
    print(
        f"runs:     {out / 'runs'}\ntable:    {out / 'results.csv'}\n"
        f"analysis: {out / 'analysis'}\nfigures:  {out / 'figures'}"
    )
    return 0


def _check_writable(directory: Path, default: bool, flag: str) -> None:
    """Raise StoreError, before any work, when files cannot be created in ``directory`` (made
    later if absent). Results on a read-only disk are read anyway; a default output inside
    them asks for ``flag`` instead."""
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):  # a nameless file: nothing is left behind
            pass
    except OSError as e:
        hint = (
            f"; pass {flag} to write elsewhere (the results are read in place)" if default else ""
        )
        raise StoreError(f"cannot write to {directory}: {e.strerror or e}{hint}") from e


def cmd_analyze(args: argparse.Namespace) -> int:

    runs = open_runs(args.dir)
    out = Path(args.out) if args.out else Path(args.dir) / "analysis"
    _check_writable(out, not args.out, "--out DIR")
    tables = analysis_tables(runs)
    for path in write_tables(tables, out):
        print(f"{path}  ({len(tables[path.stem]):,} rows)")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:

    runs = open_runs(args.dir)
    out = Path(args.out) if args.out else Path(args.dir) / "figures"
    _check_writable(out, not args.out, "--out DIR")
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    report = draw_figures(runs, out, formats=formats, names=args.only)
    print(report)
    print(f"figures: {out}")
    return 0


def cmd_lmc(args: argparse.Namespace) -> int:

    run = open_run(args.run)
    folder = Path(args.out).parent if args.out else run.path / "analysis"
    _check_writable(folder, not args.out, "--out FILE.csv")
    result = lmc_probe(
        run,
        args.level,
        data_root=args.data,
        seeds=tuple(args.seeds),
        points=args.points,
        device=args.device,
        progress=not args.quiet,
        rewind_to=args.rewind_to,
    )
    at_k = f"_k{result.start_step}" if args.rewind_to else ""
    name = f"lmc_level{args.level:02d}{at_k}_seeds{args.seeds[0]}-{args.seeds[1]}.csv"
    out = Path(args.out) if args.out else run.path / "analysis" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    result.curve.to_csv(out, index=False)
    verdict = "stable" if result.stable else "unstable"
    print(
        f"level {args.level} from step {result.start_step}: error barrier "
        f"{100 * result.barrier_test:.2f} points (test), "
        f"{100 * result.barrier_train:.2f} (train): {verdict} (threshold 2 points)\n"
        f"curve: {out}"
    )
    return 0


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
    r.add_argument("--epochs", type=float, help="training epochs per level")
    r.add_argument("--seed", type=int, help="run seed")
    r.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field by dotted name, e.g. train.lr=0.01 (repeatable)",
    )
    r.add_argument("--data", help="data directory (default: $MASKSTUDY_DATA or data/)")
    r.add_argument("--out", default="runs", help="output directory (default: runs/)")
    r.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    _checkpoint_option(r)
    r.set_defaults(func=cmd_run)

    b = sub.add_parser(
        "branch", help="train a run's stored masks under another kind (the papers' controls)"
    )
    b.add_argument("parent", help="the parent run directory, whose masks the branch trains")
    b.add_argument(
        "--kind",
        required=True,
        choices=list(BRANCH_KINDS),
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
        action="append",
        metavar="KEY=VALUE",
        help="override a train.*, data.* or rewind_to field, e.g. rewind_to=500it (repeatable)",
    )
    b.add_argument(
        "--out", help="where the branch goes (default: the directory holding the parent)"
    )
    b.add_argument("--data", help="data directory (default: $MASKSTUDY_DATA or data/)")
    b.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    _checkpoint_option(b)
    b.set_defaults(func=cmd_branch)

    d = sub.add_parser("demo", help="small pruning grid on scikit-learn digits, ending in figures")
    d.add_argument("--out", default="demo", help="output directory (default: demo/)")
    d.add_argument("--levels", type=int, default=4, help="pruning levels per run (default 4)")
    d.add_argument("--epochs", type=int, default=10, help="training epochs per level (default 10)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    d.set_defaults(func=cmd_demo)

    w = sub.add_parser("sweep", help="run (or resume) every run of a TOML sweep file")
    w.add_argument("file", help="sweep file (.toml): preset/base, grid, tied axes, seeds")
    w.add_argument("--out", required=True, help="sweep directory (holds sweep.toml and the runs)")
    w.add_argument("--executor", default="local", choices=list(EXECUTORS))
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
        action="append",
        metavar="KEY=VALUE",
        help="submitit resource, e.g. timeout_min=120, slurm_partition=gpu (repeatable)",
    )
    w.add_argument("--cluster", help="submitit cluster: slurm (default when found), local, debug")
    w.add_argument("--extend", action="store_true", help="grow an existing sweep with a new file")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=cmd_sweep)

    st = sub.add_parser("status", help="table of a sweep's runs: done, partial, failed, pending")
    st.add_argument("dir", help="sweep directory")
    st.add_argument("--short", action="store_true", help="leave out the run ids")
    st.set_defaults(func=cmd_status)

    v = sub.add_parser(
        "verify", help="check every stored file against its recorded sha256 (exit 1 if damaged)"
    )
    v.add_argument("dir", help="run, sweep or folder of runs")
    v.add_argument("--all", action="store_true", help="list intact files too")
    v.set_defaults(func=cmd_verify)

    a = sub.add_parser("analyze", help="overlap, structure and stability tables of a set of runs")
    a.add_argument("dir", help="sweep, run, folder of runs, or OpenLTH results directory")
    a.add_argument("--out", help="where the tables go (default: DIR/analysis)")
    a.set_defaults(func=cmd_analyze)

    f = sub.add_parser("figures", help="every paper figure a sweep supports (PDF and PNG)")
    f.add_argument("dir", help="sweep, run, folder of runs, or OpenLTH results directory")
    f.add_argument("--out", help="where the figures go (default: DIR/figures)")
    f.add_argument("--format", default="pdf,png", help="comma-separated: pdf, png, svg ...")
    f.add_argument("--only", nargs="+", metavar="NAME", help="draw only these figures")
    f.set_defaults(func=cmd_figures)

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
    m.add_argument("--data", help="data directory (default: $MASKSTUDY_DATA or data/)")
    m.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    m.add_argument(
        "--out",
        help="CSV of the curve (default: RUN/analysis/lmc_levelLL_seedsA-B.csv, with _kK "
        "after LL when --rewind-to is given)",
    )
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(func=cmd_lmc)

    p = sub.add_parser("presets", help="list presets with their hyperparameters")
    p.set_defaults(func=cmd_presets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
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
