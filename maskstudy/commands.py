"""What each ``maskstudy`` subcommand does: ``cmd_<name>(args)``, looked up by ``cli.main``."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from maskstudy.analysis.lmc import lmc_csv_name, lmc_probe
from maskstudy.errors import ConfigError, StoreError
from maskstudy.runs.config import parse_value
from maskstudy.runs.discover import open_runs, status_of
from maskstudy.runs.executors import run_sweep
from maskstudy.runs.presets import PRESETS, get_preset
from maskstudy.runs.run import branch, run
from maskstudy.runs.store import open_run
from maskstudy.runs.sweep import open_sweep
from maskstudy.runs.verify import is_damaged, summary, verify

# The analysis tables, figures, demo and report (scipy, matplotlib, seaborn) are imported by the
# commands that use them, when they run: `run`, `branch`, `sweep` and `status` start without them.


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
    """The options `run` and `branch` share: data, device, progress, checkpoints, loggers."""
    return {
        "data_root": args.data,
        "device": args.device,
        "progress": not args.quiet,
        "announce": True,
        "checkpoint_minutes": args.checkpoint_minutes,
        "log": tuple(args.log or ()),
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
        log=args.log,
        seeds=args.seeds,
    )
    print("this call: " + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())))
    status = open_sweep(args.out).status()
    print(_totals(status))
    # a run that failed without leaving error.txt (full disk) or a Slurm job that timed out
    # shows as partial or pending: the sweep (or the seeds asked for) is not complete
    asked = status if args.seeds is None else status[status["seed"].isin(args.seeds)]
    unfinished = asked["state"].isin(["failed", "partial", "pending"]).any()
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

    status = status_of(args.dir)
    with pd_options():
        print(_shown(status.drop(columns="run_id" if args.short else [])))
    print(_totals(status))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:

    runs = status_of(args.dir).drop(columns=["state", "detail"])
    with pd_options():
        print(_shown(runs))
    return 0


def _shown(table) -> str:
    """A status table as text: accuracy and % remaining to 4 digits, empty before a level."""
    return table.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.4g}")


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
    from maskstudy.demo import demo

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
    from maskstudy.analysis.report import analysis_tables, write_tables

    runs = open_runs(args.dir)
    out = Path(args.out) if args.out else Path(args.dir) / "analysis"
    _check_writable(out, not args.out, "--out DIR")
    tables = analysis_tables(runs)
    for path in write_tables(tables, out):
        print(f"{path}  ({len(tables[path.stem]):,} rows)")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from maskstudy.plots import draw_figures

    runs = open_runs(args.dir)
    out = Path(args.out) if args.out else Path(args.dir) / "figures"
    _check_writable(out, not args.out, "--out DIR")
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    report = draw_figures(runs, out, formats=formats, names=args.only)
    print(report)
    print(f"figures: {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from maskstudy.sweep_report import REPORT_FILE, write_report

    out = Path(args.out) if args.out else Path(args.dir) / REPORT_FILE
    _check_writable(out.parent, not args.out, "--out FILE.html")
    print(write_report(args.dir, out, figures=args.only))
    print(f"report: {out}")
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
    at_k = result.start_step if args.rewind_to else None
    out = (
        Path(args.out)
        if args.out
        else run.path / "analysis" / lmc_csv_name(args.level, args.seeds, at_k)
    )
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
