"""Executing a sweep: an ``Executor`` runs a phase's tasks (runs/tasks.py) somewhere: a local
process pool, a Slurm array job via submitit, or a Ray cluster.

Every task locks its runs before touching them and skips completed levels, so a sweep can be
interrupted, resumed, or run by several processes (or cluster jobs) on one directory at once,
and every executor trains the same bytes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from maskstudy.errors import ConfigError, MaskstudyError
from maskstudy.runs.checks import check_device
from maskstudy.runs.config import RunConfig
from maskstudy.runs.loggers import check_loggers
from maskstudy.runs.progress import interactive, level_line, report_level
from maskstudy.runs.store import Run, levels_done
from maskstudy.runs.sweep import SweepSpec, prepare_sweep_dir
from maskstudy.runs.tasks import execute_task, plan_tasks
from maskstudy.runs.verify import record_sweep

Tasks = list[list[RunConfig]]


class Executor(Protocol):
    """Runs tasks (each a list of configs trained as one replica group by ``execute_task``)
    and returns how many runs ended how; ``here``: the tasks train on this machine, so its
    memory and GPUs are what preflight checks."""

    here: bool

    def run(
        self,
        tasks: Tasks,
        out: Path,
        data_root: Path | None,
        device: str | None,
        log: tuple[str, ...] = (),
    ) -> Counter:
        """Train ``tasks`` into the sweep directory ``out``, each run streaming its evaluations
        to the loggers ``log`` (runs/loggers.py); the outcome counts."""
        ...


PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker with SIGTERM when the sweep's process dies (killed,
    out of memory, a scheduler's SIGTERM), instead of training on unseen. A run it leaves
    half-trained resumes at its last checkpoint. Linux only (prctl); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def available_devices(device: str | None) -> list[str | None]:
    """The devices tasks are spread over: every visible GPU when ``device`` is None or 'cuda'."""
    if device not in (None, "cuda") or not torch.cuda.is_available():
        return [device]
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def default_jobs(device: str | None) -> int:
    """Local workers unless the user says: one per visible GPU, else one per CPU core (a run
    computes on ``train.threads`` threads, 1 by default)."""
    devices = available_devices(device)
    if str(devices[0]).startswith("cuda"):
        return len(devices)
    return os.cpu_count() or 1


def _first_line(error: BaseException) -> str:
    """What a failed job or task says, in one line for the sweep's log."""
    return str(error).splitlines()[0] if str(error) else repr(error)


@dataclass
class Local:
    """A spawn pool of ``jobs`` worker processes on this machine (default: one per CPU core,
    or one per visible GPU, tasks spread over them); when only one would work (one job or one
    task) it trains in this process."""

    jobs: int | None = None
    here: bool = True

    def run(
        self,
        tasks: Tasks,
        out: Path,
        data_root: Path | None,
        device: str | None,
        log: tuple[str, ...] = (),
    ) -> Counter:
        devices = available_devices(device)
        jobs = min(self.jobs or default_jobs(device), len(tasks))
        outcomes: Counter = Counter()
        if jobs <= 1:
            for i, task in enumerate(tasks):
                found = execute_task(task, out, data_root, devices[i % len(devices)], log=log)
                outcomes.update(found.values())
            return outcomes
        threads = max(1, (os.cpu_count() or 1) // jobs)
        pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=get_context("spawn"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )
        futures: set[Future] = set()
        try:
            for i, task in enumerate(tasks):
                device_i = devices[i % len(devices)]
                futures.add(pool.submit(execute_task, task, out, data_root, device_i, threads, log))
            for future in as_completed(futures):
                outcomes.update(future.result().values())
            return outcomes
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Slurm:
    """One Slurm array job per phase through submitit, one task per element, with its
    ``resources`` (``timeout_min``, ``slurm_partition``, ...); ``cluster='local'`` or
    ``'debug'`` runs the same path without Slurm."""

    resources: dict[str, Any] = field(default_factory=dict)
    cluster: str | None = None
    here: bool = False

    def run(
        self,
        tasks: Tasks,
        out: Path,
        data_root: Path | None,
        device: str | None,
        log: tuple[str, ...] = (),
    ) -> Counter:
        try:
            import submitit
        except ImportError:
            raise ConfigError(
                "the slurm executor needs submitit: pip install 'maskstudy[slurm]'"
            ) from None
        executor = submitit.AutoExecutor(folder=out / ".submitit" / "%j", cluster=self.cluster)
        try:
            executor.update_parameters(name=f"maskstudy-{out.name}", **self.resources)
        except (TypeError, ValueError, NameError) as e:  # submitit: an unknown key is a NameError
            raise ConfigError(f"[slurm] resources: {e}") from None
        n = len(tasks)
        train = partial(execute_task, log=log)
        jobs = executor.map_array(train, tasks, [out] * n, [data_root] * n, [device] * n)
        outcomes: Counter = Counter()
        for job in jobs:
            try:
                outcomes.update(job.result().values())
            except Exception as error:  # the job itself died (preempted, out of time or memory)
                outcomes["failed"] += 1
                print(f"slurm job {job.job_id} failed: {_first_line(error)}")
        return outcomes


@dataclass
class Ray:
    """One Ray task per maskstudy task on the cluster at ``address`` (None: a local Ray instance
    started for the sweep), each asking ``cpus`` CPUs and ``gpus`` GPUs. The workers must see
    the sweep directory and the data at the same paths (a shared file system)."""

    address: str | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    here: bool = False

    def run(
        self,
        tasks: Tasks,
        out: Path,
        data_root: Path | None,
        device: str | None,
        log: tuple[str, ...] = (),
    ) -> Counter:
        try:
            import ray  # an optional extra: pip install 'maskstudy[ray]'
        except ImportError:
            raise ConfigError("the ray executor needs ray: pip install 'maskstudy[ray]'") from None
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        try:
            remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus)(execute_task)
            refs = [
                remote.remote(task, out, data_root, device, max(1, int(self.cpus)), log)
                for task in tasks
            ]
            outcomes: Counter = Counter()
            for task, ref in zip(tasks, refs, strict=True):
                try:
                    outcomes.update(ray.get(ref).values())
                except Exception as error:  # the worker died (out of memory, node lost)
                    outcomes["failed"] += len(task)
                    print(f"ray task of {task[0].run_id()} failed: {_first_line(error)}")
            return outcomes
        finally:
            if started:
                ray.shutdown()


EXECUTORS = {"local": Local, "slurm": Slurm, "ray": Ray}


class _Progress:
    """One bar over every level of the sweep, fed by polling DONE files (works for any executor),
    naming the level finished last with its accuracy; in a log, one line per level completed
    during this call instead (runs/progress.py)."""

    def __init__(self, out: Path, configs: Sequence[RunConfig], enabled: bool) -> None:
        self.dirs = [(out / c.run_id(), len(c.level_range())) for c in configs]
        self.enabled = enabled
        self.lines = enabled and not interactive()
        self.reported = {d: set(levels) for d, levels in self._listed().items()}
        self.latest = ""  # the level finished last during this call, as a log line
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _listed(self) -> dict[Path, list[int]]:
        """The completed levels of every run directory, read once per update."""
        return {d: _levels_listed(d) for d, _ in self.dirs}

    def _done(self, listed: dict[Path, list[int]]) -> list[int]:
        return [min(len(listed[d]), n) for d, n in self.dirs]

    def update(self) -> None:
        listed = self._listed()
        for run_dir, level, metrics in self._new_levels(listed):
            if self.lines:
                report_level(run_dir.name, level, metrics)
            else:  # the bar names the level finished last, with its accuracy
                self.latest = level_line(run_dir.name, level, metrics)
        done = self._done(listed)
        finished = sum(x == n for x, (_, n) in zip(done, self.dirs, strict=True))
        self.bar.update(sum(done) - self.bar.n)
        self.bar.set_postfix_str(f"runs {finished}/{len(self.dirs)}; {self.latest}".rstrip("; "))

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self.update()

    def __enter__(self) -> _Progress:
        total = sum(n for _, n in self.dirs)
        # levels already on disk count as done but not towards the rate, so the ETA stays honest
        self.bar = tqdm(
            total=total,
            initial=sum(self._done(self._listed())),
            desc="sweep",
            unit="level",
            disable=not self.enabled or self.lines,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.update()
        self.bar.close()

    def _new_levels(self, listed: dict[Path, list[int]]) -> Iterator[tuple[Path, int, dict]]:
        """(run directory, level, metrics) of each level completed since the last update."""
        for run_dir, levels in listed.items():
            for level in sorted(set(levels) - self.reported[run_dir]):
                self.reported[run_dir].add(level)
                try:
                    metrics = Run(run_dir).level_metrics(level)
                except (MaskstudyError, OSError):
                    continue  # damaged: its task reports it
                yield run_dir, level, metrics


def _levels_listed(run_dir: Path) -> list[int]:
    """levels_done, [] for a damaged or missing run directory (its task reports it)."""
    try:
        return levels_done(run_dir)
    except (MaskstudyError, OSError):
        return []


def chosen_seeds(spec: SweepSpec, seeds: Sequence[int]) -> set[int]:
    """``seeds`` as a set, each checked to be a seed of the sweep file."""
    planned = sorted({c.seed for c in spec.configs})
    unknown = [s for s in seeds if s not in planned]
    if unknown or not seeds:
        raise ConfigError(
            f"seeds {list(seeds)}: the sweep file's seeds are {planned}; choose among them "
            "(or leave the option out to train every seed)"
        )
    return set(seeds)


def run_sweep(
    sweep_file: str | Path,
    out: str | Path,
    *,
    executor: str | Executor = "local",
    jobs: int | None = None,
    replicas: int | None = None,
    data_root: str | Path | None = None,
    device: str | None = None,
    slurm: dict[str, Any] | None = None,
    cluster: str | None = None,
    extend: bool = False,
    progress: bool = True,
    log: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> Counter:
    """Run every run of ``sweep_file`` into ``out`` (skipping finished ones); outcome counts.

    ``seeds``: train only the runs of these seeds of the file, e.g. a study split over machines
    a few seeds at a time; the sweep directory still plans every run (the others pending).

    ``log``: the experiment loggers every run streams to (runs/loggers.py); None: the sweep
    file's ``log = [...]``, if any.

    ``executor``: an :class:`Executor` (``Local(jobs)``, ``Slurm(resources)``, ``Ray(address)``)
    or its name, built from ``jobs`` (local) or the sweep file's ``[slurm]`` table updated with
    ``slurm`` and ``cluster`` (slurm).
    """
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"jobs = {jobs!r} must be an integer >= 1")
    if isinstance(executor, str) and executor not in EXECUTORS:
        raise ConfigError(
            f"executor = {executor!r} is not allowed; choose one of: {', '.join(EXECUTORS)}"
        )
    here = executor == "local" if isinstance(executor, str) else executor.here
    check_device(device, here=here)  # on a cluster, the nodes' GPUs count, not this machine's
    out = Path(out).resolve()
    root = Path(data_root).resolve() if data_root is not None else None
    spec = prepare_sweep_dir(sweep_file, out, extend, root, here)
    log = check_loggers(spec.log if log is None else log, "--log" if log else "sweep file: log")
    record_sweep(out)  # the sha256 of sweep.toml: verify finds an edited file
    wanted = None if seeds is None else chosen_seeds(spec, seeds)
    chosen = [c for c in spec.configs if wanted is None or c.seed in wanted]
    if executor == "local":
        executor = Local(jobs)
    elif executor == "slurm":
        executor = Slurm({**spec.slurm, **(slurm or {})}, cluster)
    elif executor == "ray":
        executor = Ray()
    workers = (executor.jobs or default_jobs(device)) if isinstance(executor, Local) else None
    outcomes: Counter = Counter()
    with _Progress(out, chosen, progress):
        for is_branch in (False, True):  # branches read their parents' levels: they go second
            configs = [c for c in chosen if c.is_branch == is_branch]
            tasks = plan_tasks(configs, replicas, workers)
            if tasks:
                outcomes += executor.run(tasks, out, root, device, log)
    return outcomes
