"""A sweep's tasks: configs grouped into replica groups (``plan_tasks``), and what one task does
wherever it runs (``execute_task``: lock each run, train the group, retry members one by one,
record failures), so every executor gives the same results.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import torch

from maskstudy.data import from_config
from maskstudy.errors import ConfigError
from maskstudy.runs.branch import waiting_for
from maskstudy.runs.checks import check_device
from maskstudy.runs.config import RunConfig
from maskstudy.runs.lock import RunLock, clear_error, divergence, record_error
from maskstudy.runs.run import replica_key, run_group
from maskstudy.runs.store import levels_done
from maskstudy.runs.verify import record_run
from maskstudy.train import Diverged

# Where K seeds trained side by side in one loop beat one after another (benchmarks/replicas.py,
# K = 8, 1 thread each): the MLP gains (1.09x on MNIST, 1.81x on 8x8 digits, where a step is
# mostly overhead); the convnets do not (LeNet-5 0.98x, quarter-width Conv-2 1.03x on MNIST), so
# they train one seed per task and --jobs spreads them over the cores. Either way a seed's bytes
# are the same (train/replicas.py).
STACKED_MODELS = frozenset({"lenet300_100"})
DEFAULT_REPLICAS = 8
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
    log: tuple[str, ...] = (),
) -> dict[str, Outcome]:
    """Lock, then train (as one replica group) the runs of ``cfgs`` that are not complete,
    streaming their evaluations to the loggers ``log`` (runs/loggers.py).

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

        def train(group: list[RunConfig]) -> None:
            run_group(
                group, out, data_root=data_root, device=device, progress=False, data=data, log=log
            )

        if len(todo) > 1:
            try:
                train(todo)
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
                train([cfg])
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
