"""Executing a sweep: tasks (one run or one replica group), a local process pool, Slurm via submitit.

Every task locks its runs before touching them and skips completed levels, so a sweep can be
interrupted, resumed, or run by several processes (or cluster jobs) on one directory at once.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from maskstudy.data import from_config
from maskstudy.errors import ConfigError, MaskstudyError
from maskstudy.runs.branch import waiting_for
from maskstudy.runs.checks import check_device
from maskstudy.runs.config import RunConfig
from maskstudy.runs.lock import RunLock, clear_error, divergence, record_error
from maskstudy.runs.run import replica_key, run_group
from maskstudy.runs.store import levels_done
from maskstudy.runs.sweep import prepare_sweep_dir
from maskstudy.runs.verify import record_run, record_sweep
from maskstudy.train import Diverged

# Where K seeds trained side by side in one loop beat one after another (benchmarks/replicas.py,
# K = 8, 1 thread each): the MLP gains (1.09x on MNIST, 1.81x on 8x8 digits, where a step is
# mostly overhead); the convnets do not (LeNet-5 0.98x, quarter-width Conv-2 1.03x on MNIST), so
# they train one seed per task and --jobs spreads them over the cores. Either way a seed's bytes
# are the same (train/replicas.py).
STACKED_MODELS = frozenset({"lenet300_100"})
DEFAULT_REPLICAS = 8
EXECUTORS = ("local", "slurm")
Outcome = str  # "trained" | "done" | "busy" | "waiting" | "failed" | "diverged"


def default_replicas(model: str) -> int:
    """How many seeds of ``model`` train side by side unless the user says: 8 where it helps, 1
    elsewhere."""
    return DEFAULT_REPLICAS if model in STACKED_MODELS else 1


def plan_tasks(
    configs: Sequence[RunConfig], replicas: int | None = None, jobs: int | None = None
) -> list[list[RunConfig]]:
    """Group configs that differ only in seed into tasks of at most ``replicas`` runs.

    ``replicas=None`` picks :func:`default_replicas` for the model, in groups no larger than
    keeps ``jobs`` workers busy (9 configs on 2 jobs: at most 5 per task); 1 turns grouping
    off. Task order follows the sweep file. Grouping changes the time, never the results.
    """
    if replicas is not None and (not isinstance(replicas, int) or replicas < 1):
        raise ConfigError(f"replicas = {replicas!r} must be an integer >= 1 (1 turns stacking off)")
    groups: dict[str, list[RunConfig]] = {}
    for cfg in configs:
        groups.setdefault(replica_key(cfg), []).append(cfg)
    spread = -(-len(configs) // jobs) if jobs else len(configs)  # ceil: a task per worker
    tasks = []
    for members in groups.values():
        size = replicas or max(1, min(default_replicas(members[0].model.name), spread))
        tasks += [members[i : i + size] for i in range(0, len(members), size)]
    return tasks


def execute_task(
    cfgs: Sequence[RunConfig],
    out: str | Path,
    data_root: str | Path | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> dict[str, Outcome]:
    """Lock, then train (as one replica group) the runs of ``cfgs`` that are not complete.

    A run locked by another process is left to it ("busy"). If a group fails, its members are
    retried one by one; a run that fails alone gets ``error.txt`` and the others go on, as does
    a run whose directory is damaged (an unreadable config.json, a ``.lock`` that is not a file).
    A run that diverged (now or on an earlier call: ``diverged.json``) is final and not retrained.
    """
    if threads:
        torch.set_num_threads(threads)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out)
    outcomes: dict[str, Outcome] = {}
    with ExitStack() as held:
        todo = []
        for cfg in cfgs:
            try:
                outcome = claim(cfg, out / cfg.run_id(), held)
            except Exception as error:  # a damaged run directory fails its run alone
                record_error(out / cfg.run_id(), error)
                outcome = "failed"
            if outcome is None:
                todo.append(cfg)
            else:
                outcomes[cfg.run_id()] = outcome
        if not todo:
            return outcomes
        try:
            check_device(device)  # a cluster node without the GPU asked for
            data = from_config(todo[0].data, data_root, device)
        except Exception as error:  # every run of the task needs this data: all fail the same way
            for cfg in todo:
                record_error(out / cfg.run_id(), error)
                outcomes[cfg.run_id()] = "failed"
            return outcomes
        if len(todo) > 1:
            try:
                run_group(todo, out, device=device, progress=False, data=data)
                for cfg in todo:
                    clear_error(out / cfg.run_id())
                    outcomes[cfg.run_id()] = "trained"
                return outcomes
            except Exception:
                pass  # retry the members one by one below: only the culprit should fail
        for cfg in todo:
            run_dir = out / cfg.run_id()
            if divergence(run_dir) is not None:  # it diverged in the group above
                outcomes[cfg.run_id()] = "diverged"
                continue
            try:
                run_group([cfg], out, device=device, progress=False, data=data)
                clear_error(run_dir)
                outcomes[cfg.run_id()] = "trained"
            except Diverged:
                outcomes[cfg.run_id()] = "diverged"
            except Exception as error:
                record_error(run_dir, error)
                outcomes[cfg.run_id()] = "failed"
    return outcomes


def claim(cfg: RunConfig, run_dir: Path, held: ExitStack) -> Outcome | None:
    """Lock ``run_dir`` for the rest of ``held`` and say whether its run is busy (another
    process holds it), done, diverged, or a branch waiting for its parent's levels (another
    process trains the parent); None: it is ours to train."""
    lock = RunLock(run_dir)
    if not lock.acquire():
        return "busy"
    held.callback(lock.release)
    held.callback(record_run, run_dir)  # runs first: the record is written under the lock
    if len(levels_done(run_dir)) >= len(cfg.level_range()):
        return "done"
    if divergence(run_dir) is not None:
        return "diverged"
    if cfg.is_branch and waiting_for(cfg, run_dir):
        return "waiting"
    return None


class _Progress:
    """One bar over every level of the sweep, fed by polling DONE files (works for any executor)."""

    def __init__(self, out: Path, configs: Sequence[RunConfig], enabled: bool) -> None:
        self.dirs = [(out / c.run_id(), len(c.level_range())) for c in configs]
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _done(self) -> list[int]:
        return [min(_levels_shown(d), n) for d, n in self.dirs]

    def update(self) -> None:
        done = self._done()
        finished = sum(x == n for x, (_, n) in zip(done, self.dirs, strict=True))
        self.bar.update(sum(done) - self.bar.n)
        self.bar.set_postfix(runs=f"{finished}/{len(self.dirs)}")

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self.update()

    def __enter__(self) -> _Progress:
        total = sum(n for _, n in self.dirs)
        # levels already on disk count as done but not towards the rate, so the ETA stays honest
        self.bar = tqdm(
            total=total,
            initial=sum(self._done()),
            desc="sweep",
            unit="level",
            disable=not self.enabled,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.update()
        self.bar.close()


def _levels_shown(run_dir: Path) -> int:
    """levels_done for the progress bar: a damaged run directory counts 0 (its task reports it)."""
    try:
        return len(levels_done(run_dir))
    except (MaskstudyError, OSError):
        return 0


def available_devices(device: str | None) -> list[str | None]:
    """The devices tasks are spread over: every visible GPU when ``device`` is None or 'cuda'."""
    if device not in (None, "cuda") or not torch.cuda.is_available():
        return [device]
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def default_jobs(device: str | None) -> int:
    """Local workers unless the user says: one per visible GPU, else one per CPU core (a run
    computes on ``train.threads`` threads, 1 by default)."""
    devices = available_devices(device)
    if str(devices[0]).startswith("cuda") or (device or "").startswith("cuda"):
        return len(devices)
    return os.cpu_count() or 1


def run_local(
    tasks: list[list[RunConfig]], out: Path, data_root: Path | None, device: str | None, jobs: int
) -> Counter:
    """Tasks in a pool of ``jobs`` worker processes (in this process when only one would
    work: jobs = 1 or a single task)."""
    devices = available_devices(device)
    jobs = min(jobs, len(tasks))
    if jobs <= 1:
        outcomes: Counter = Counter()
        for i, task in enumerate(tasks):
            outcomes.update(execute_task(task, out, data_root, devices[i % len(devices)]).values())
        return outcomes
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))
    futures: set[Future] = set()
    try:
        for i, task in enumerate(tasks):
            futures.add(
                pool.submit(execute_task, task, out, data_root, devices[i % len(devices)], threads)
            )
        outcomes = Counter()
        for future in as_completed(futures):
            outcomes.update(future.result().values())
        return outcomes
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_slurm(
    tasks: list[list[RunConfig]],
    out: Path,
    data_root: Path | None,
    device: str | None,
    resources: dict[str, Any],
    cluster: str | None = None,
) -> Counter:
    """One Slurm array job, one task per element, through submitit (``cluster='local'`` or
    ``'debug'`` runs the same path without a cluster)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "the slurm executor needs submitit: pip install 'maskstudy[slurm]'"
        ) from None
    executor = submitit.AutoExecutor(folder=out / ".submitit" / "%j", cluster=cluster)
    try:
        executor.update_parameters(name=f"maskstudy-{out.name}", **resources)
    except (TypeError, ValueError, NameError) as e:  # submitit names an unknown key with NameError
        raise ConfigError(f"[slurm] resources: {e}") from None
    n = len(tasks)
    jobs = executor.map_array(execute_task, tasks, [out] * n, [data_root] * n, [device] * n)
    outcomes: Counter = Counter()
    for job in jobs:
        try:
            outcomes.update(job.result().values())
        except Exception as error:  # the job itself died (preempted, out of time or memory)
            outcomes["failed"] += 1
            print(
                f"slurm job {job.job_id} failed: {str(error).splitlines()[0] if str(error) else error!r}"
            )
    return outcomes


def run_sweep(
    sweep_file: str | Path,
    out: str | Path,
    *,
    executor: str = "local",
    jobs: int | None = None,
    replicas: int | None = None,
    data_root: str | Path | None = None,
    device: str | None = None,
    slurm: dict[str, Any] | None = None,
    cluster: str | None = None,
    extend: bool = False,
    progress: bool = True,
) -> Counter:
    """Run every run of ``sweep_file`` into ``out`` (skipping finished ones); outcome counts."""
    if executor not in EXECUTORS:
        raise ConfigError(
            f"executor = {executor!r} is not allowed; choose one of: {', '.join(EXECUTORS)}"
        )
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"jobs = {jobs!r} must be an integer >= 1")
    here = executor == "local"  # else the nodes' GPUs and memory count, not this machine's
    check_device(device, here=here)
    out = Path(out).resolve()
    root = Path(data_root).resolve() if data_root is not None else None
    spec = prepare_sweep_dir(sweep_file, out, extend, root, here)
    record_sweep(out)  # the sha256 of sweep.toml: verify finds an edited file
    resources = {**spec.slurm, **(slurm or {})}
    if executor == "local":
        jobs = jobs or default_jobs(device)
    outcomes: Counter = Counter()
    with _Progress(out, spec.configs, progress):
        for is_branch in (False, True):  # branches read their parents' levels: they go second
            configs = [c for c in spec.configs if c.is_branch == is_branch]
            tasks = plan_tasks(configs, replicas, jobs)
            if not tasks:
                continue
            if executor == "slurm":
                outcomes += run_slurm(tasks, out, root, device, resources, cluster)
            else:
                outcomes += run_local(tasks, out, root, device, jobs)
    return outcomes
