"""The iterative pruning loop: train → save the level → prune → apply the regime → repeat.

Every level is saved (mask, final weights, metrics) before the next starts, and a finished level
is never retrained: calling ``run`` again resumes at the first incomplete level, wherever the
previous process was killed (tests/test_crash.py). A run whose loss became NaN or infinite is
recorded as diverged (``diverged.json``) and not retrained until that file is deleted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from maskstudy.data import from_config
from maskstudy.data.base import Data
from maskstudy.errors import ConfigError, DataError, StoreError
from maskstudy.eval.robust import attack_metrics
from maskstudy.files import temp_files
from maskstudy.masks import (
    Mask,
    density,
    full_mask,
    kept_total,
    layer_densities,
)
from maskstudy.models import build
from maskstudy.pruning import CRITERIA, prune
from maskstudy.runs.branch import (
    branch_config,
    branch_mask,
    check_parent_levels,
    check_parent_unchanged,
    parent_weights,
    rewinds_schedule,
)
from maskstudy.runs.checks import RunPlan, TensorOverrides, check_device, check_run
from maskstudy.runs.config import DataConfig, RunConfig
from maskstudy.runs.gradual import finish_gradual, gradual_hook
from maskstudy.runs.lock import (
    DIVERGED_FILE,
    divergence,
    divergence_line,
    exclusive,
    record_divergence,
)
from maskstudy.runs.loggers import RunLog, check_loggers
from maskstudy.runs.progress import interactive, report_level
from maskstudy.runs.regimes import FRESH_EACH_LEVEL
from maskstudy.runs.scoring import saliency_level
from maskstudy.runs.scratch import Budget, flops_metrics, level_budget, same_budget
from maskstudy.runs.store import (
    WEIGHT_FILES,
    LevelCheckpoints,
    Run,
    create_run,
    data_folder,
    inherited_start,
    level_dir,
    levels_done,
    open_run,
    record_parent_mask,
    save_level,
    save_weights,
)
from maskstudy.seeds import derive_seed, generator
from maskstudy.train import Diverged, cpu_threads, replica_net, train_replicas

CHECKPOINT_MINUTES = 5.0  # default period of in-level checkpoints


def run(
    cfg: RunConfig,
    out: str | Path = "runs",
    *,
    data_root: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    data: Data | None = None,
    announce: bool = False,
    checkpoint_minutes: float = CHECKPOINT_MINUTES,
    log: Sequence[str] = (),
) -> Run:
    """Execute (or resume) every level of ``cfg`` into ``out/<run_id>`` and return the run.

    The run is locked while it trains: a second process asking for it gets a StoreError.
    ``announce`` says on stderr where it trains and resumes, and where it stopped on Ctrl-C;
    a level's training state is checkpointed every ``checkpoint_minutes`` (0: never); ``log``
    streams every evaluation to 'csv', 'tensorboard' and/or 'wandb' (runs/loggers.py)."""
    with training(Path(out) / cfg.run_id(), announce):
        return run_group(
            [cfg],
            out,
            data_root=data_root,
            device=device,
            progress=progress,
            data=data,
            announce=announce,
            checkpoint_minutes=checkpoint_minutes,
            log=log,
        )[0]


def branch(
    parent: str | Path | Run,
    kind: str,
    *,
    levels: int | None = None,
    level: int | None = None,
    seed: int | None = None,
    overrides: dict | None = None,
    out: str | Path | None = None,
    data_root: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    data: Data | None = None,
    announce: bool = False,
    checkpoint_minutes: float = CHECKPOINT_MINUTES,
    log: Sequence[str] = (),
) -> Run:
    """Train (or resume) the ``kind`` branch of the run ``parent`` and return it.

    ``levels = L``: the parent's masks of levels 1..L (default: every level the parent has
    completed); ``level = L``: only level L; ``seed``: the fresh init and data order (default:
    the parent's); ``overrides``: dotted fields such as ``train.lr`` or ``rewind_to``. ``out``
    defaults to the directory holding the parent, so a branch sits beside it in its sweep;
    ``announce``, ``checkpoint_minutes`` and ``log`` as for :func:`run`.
    """
    parent = parent if isinstance(parent, Run) else open_run(parent)
    if levels is None and level is None:
        pruned = [lv for lv in parent.levels if lv >= 1]
        if not pruned:
            raise StoreError(f"{parent.path} has no completed pruned level (>= 1) to branch from")
        levels = max(pruned)
    cfg = branch_config(
        parent.config,
        kind,
        levels=levels,
        level=level,
        seed=seed,
        overrides=overrides,
        parent_id=parent.run_id,
    )
    target = Path(out) if out is not None else parent.path.parent
    with training(target / cfg.run_id(), announce):
        return run_group(
            [cfg],
            target,
            data_root=data_root,
            device=device,
            progress=progress,
            data=data,
            parents=[parent],
            announce=announce,
            checkpoint_minutes=checkpoint_minutes,
            log=log,
        )[0]


@contextmanager
def training(path: Path, announce: bool) -> Iterator[None]:
    """Hold the run's lock while it trains; with ``announce``, repeat its directory on Ctrl-C."""
    with exclusive(path):
        try:
            yield
        except KeyboardInterrupt:
            if announce:
                print(f"\nrun directory: {path}", file=sys.stderr)
            raise


def _say(announce: bool, cfgs: Sequence[RunConfig], paths: Sequence[Path]) -> None:
    if announce:
        for cfg, path in zip(cfgs, paths, strict=True):
            print(where_it_trains(path, cfg), file=sys.stderr)


def where_it_trains(path: Path, cfg: RunConfig) -> str:
    """``run directory: …``, with the level a run resumes at when some are done."""
    done = levels_done(path)
    todo = [lv for lv in cfg.level_range() if lv not in done]
    if not done:
        return f"run directory: {path}"
    if not todo:
        return f"run directory: {path} (complete: levels {done[0]}-{done[-1]})"
    return (
        f"resuming run {path.name} at level {todo[0]} (levels done: {done}); run directory: {path}"
    )


def replica_key(cfg: RunConfig) -> str:
    """Configs with equal keys differ only in seed (and a branch's parent): they can train side
    by side as replicas."""
    d = cfg.to_dict()
    d["seed"] = 0
    d["branch"]["parent"] = ""
    return json.dumps(d, sort_keys=True)


def preflight(
    cfgs: Sequence[RunConfig],
    data_root: str | Path | None = None,
    where: str = "sweep",
    here: bool = True,
) -> None:
    """Check every run of ``cfgs`` (a sweep's) for what only its model or data reveal
    (:func:`check_run`; the memory only when they train ``here``, not on a cluster's nodes)
    before any trains: each distinct dataset is loaded once, on the CPU, and each distinct
    config's model is built on the meta device. One ConfigError lists every distinct reason
    with the runs it affects. A dataset whose files cannot be read (DataError) is left to its
    runs, which record it: the machines that train may hold data this one lacks."""
    problems: dict[str, list[str]] = {}
    for data_cfg, group in _by_data(cfgs).items():
        try:
            data = from_config(data_cfg, data_root)
        except DataError:
            continue
        except ConfigError as e:  # data.val_size, data.augment: the same for the whole group
            problems.setdefault(str(e), []).extend(c.run_id() for c in group)
            continue
        reasons: dict[str, str | None] = {}
        for cfg in group:
            key = replica_key(cfg)  # seeds and parents do not change what is checked
            if key not in reasons:
                reasons[key] = _problem(cfg, data, here)
            if reasons[key] is not None:
                problems.setdefault(reasons[key], []).append(cfg.run_id())
    if problems:
        raise ConfigError(problem_report(problems, where))


def _by_data(cfgs: Sequence[RunConfig]) -> dict[DataConfig, list[RunConfig]]:
    """The configs grouped by their data config, in order."""
    groups: dict[DataConfig, list[RunConfig]] = {}
    for cfg in cfgs:
        groups.setdefault(cfg.data, []).append(cfg)
    return groups


def _problem(cfg: RunConfig, data: Data, here: bool) -> str | None:
    """Why ``cfg`` cannot run on ``data``, or None."""
    try:
        check_run(cfg, data, here)
    except ConfigError as e:
        return str(e)
    return None


def problem_report(problems: dict[str, list[str]], where: str, shown: int = 3) -> str:
    """Each reason with the runs it affects (the first ``shown`` by id, then a count)."""
    bad = len({run for runs in problems.values() for run in runs})
    lines = [f"{where}: {bad} run(s) cannot train; nothing was trained or written. Fix these:"]
    for reason, runs in problems.items():
        more = f" and {len(runs) - shown} more" if len(runs) > shown else ""
        lines.append(f"- {reason}\n  runs ({len(runs)}): {', '.join(runs[:shown])}{more}")
    return "\n".join(lines)


@dataclass
class Member:
    """One run of a replica group: its config, store, per-tensor overrides, levels still to do and
    how often (seconds, 0 = never) its level's training state is checkpointed."""

    cfg: RunConfig
    store: Run
    overrides: TensorOverrides
    todo: list[int]
    checkpoint_every: float = 0.0
    log: RunLog | None = None


def run_group(
    cfgs: Sequence[RunConfig],
    out: str | Path = "runs",
    *,
    data_root: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    data: Data | None = None,
    parents: Sequence[Run | None] | None = None,
    announce: bool = False,
    checkpoint_minutes: float = CHECKPOINT_MINUTES,
    log: Sequence[str] = (),
) -> list[Run]:
    """Run configs that differ only in seed as K replicas trained side by side (one is a plain run).

    Each member is pruned on its own and saved as its own ordinary run; levels already on disk
    are skipped, so members at different levels catch up one level at a time. A branch reads
    its masks from its parent: ``parents[i]``, by default the run ``out/<branch.parent>``.
    ``announce`` says on stderr, once every check has passed, where each run trains. Every
    ``checkpoint_minutes`` (0: never) the level's training state is saved, so a killed level
    resumes from there to the same bytes (not for gradual levels). ``log`` names the experiment
    loggers each member's evaluations stream to (runs/loggers.py).
    """
    check_device(device)
    log = check_loggers(log)
    if len({replica_key(c) for c in cfgs}) > 1:
        raise ConfigError(
            "run_group trains configs that differ only in seed; group them with replica_key"
        )
    if len({(c.seed, c.branch.parent) for c in cfgs}) < len(cfgs):
        raise ConfigError(
            "run_group was given the same seed twice; each replica needs its own seed"
        )
    cfg0 = cfgs[0]
    paths = [Path(out) / c.run_id() for c in cfgs]
    for path in paths:
        record = divergence(path)
        if record is not None:
            raise StoreError(
                f"{path} diverged on an earlier attempt ({divergence_line(record)}); it is not "
                f"retrained, as the same config diverges again. Delete {path / DIVERGED_FILE} "
                "to train it anyway"
            )
    if parents is None:
        parents = [open_run(Path(out) / c.branch.parent) if c.is_branch else None for c in cfgs]
    todos = [_levels_to_do(c, path) for c, path in zip(cfgs, paths, strict=True)]
    for c, parent, todo in zip(cfgs, parents, todos, strict=True):
        if parent is not None:
            check_parent_levels(c, parent, todo)
    if not any(todos):
        _say(announce, cfgs, paths)
        return [create_run(path, c, p) for c, path, p in zip(cfgs, paths, parents, strict=True)]
    data = data if data is not None else from_config(cfg0.data, data_root, device)
    # before the model is allocated or anything written; every duration resolved here, once
    overrides, plan = check_run(cfg0, data)
    _say(announce, cfgs, paths)
    template = build_model(cfg0, data, seed=cfg0.seed).to(device)
    members = []
    for c, path, todo, parent in zip(cfgs, paths, todos, parents, strict=True):
        # only now: a config that cannot run leaves nothing
        inputs = (data.input_shape, data.num_classes)
        store = create_run(path, c, parent, inputs, data_folder(data_root))
        if parent is not None:
            check_parent_unchanged(store, parent)
        for leftover in temp_files(path):  # from writes killed before their rename
            leftover.unlink()
        recorded = store.info.get("files", {})  # θ0 may be on disk yet unrecorded: killed
        for which, state in initial_weights(c, data, parent).items():
            if WEIGHT_FILES[which] not in recorded:
                save_weights(store, which, state)
        members.append(Member(c, store, overrides, todo, 60.0 * checkpoint_minutes))
    with cpu_threads(cfg0.train.threads), ExitStack() as logs:
        for m in members:
            if log:
                m.log = RunLog(log, m.store.path, m.cfg)
                logs.callback(m.log.close)
        for level in sorted({lv for m in members for lv in m.todo}):
            active = [m for m in members if level in m.todo]
            train_level(active, template, data, level, plan, progress)
    return [m.store for m in members]


def _levels_to_do(cfg: RunConfig, path: Path) -> list[int]:
    done = set(levels_done(path))
    return [lv for lv in cfg.level_range() if lv not in done]


def initial_weights(cfg: RunConfig, data: Data, parent: Run | None) -> dict[str, dict]:
    """θ0 (and θk when it is not trained here) of a new run: drawn with the run's seed; a
    branch's: a fresh draw (reinit / scratch kinds) or its parent's."""
    if parent is None:
        return {"init": build_model(cfg, data, seed=cfg.seed).state_dict()}
    if cfg.rule.fresh_init:
        return {"init": build_model(cfg, data, seed=derive_seed(cfg.seed, "fresh")).state_dict()}
    return parent_weights(cfg, parent)


def train_level(
    members: list[Member],
    template: nn.Module,
    data: Data,
    level: int,
    plan: RunPlan,
    progress: bool,
) -> None:
    """Prune every member once, then train and save them side by side; members whose training
    schedules differ (scratch_b under global scope: unequal FLOPs ratios) train apart."""
    picked = [level_mask(m.store, m.cfg, template, level, m.overrides, data) for m in members]
    budgets = [
        level_budget(m.cfg, plan.train, template, data, level, mask)
        for m, (mask, _) in zip(members, picked, strict=True)
    ]
    for group in same_budget(budgets):
        train_together(
            [members[i] for i in group],
            [picked[i] for i in group],
            [budgets[i] for i in group],
            template,
            data,
            level,
            plan,
            progress,
        )


def train_together(
    members: list[Member],
    picked: list[tuple[Mask, dict]],
    budgets: list[Budget],
    template: nn.Module,
    data: Data,
    level: int,
    plan: RunPlan,
    progress: bool,
) -> None:
    """Set the starting weights of, train and save one level of members sharing a schedule,
    given their masks (with the metrics their criterion adds) and their common budget."""
    cfg, rewind_at = members[0].cfg, plan.rewind_at
    masks = [mask for mask, _ in picked]
    starts = [
        starting_point(m.store, m.cfg, data, level, rewind_at, mask)
        for m, mask in zip(members, masks, strict=True)
    ]
    start_step = starts[0][1]
    net = replica_net(template, [state for state, _ in starts])
    label = f"level {level}/{cfg.levels}" + (f" ×{len(members)} seeds" if len(members) > 1 else "")
    seeds = [m.cfg.seed for m in members]
    hook = gradual_hook(cfg, plan.gradual, masks, seeds)  # prune.schedule = 'gradual'
    densities = [density(mask) for mask in masks]

    def log_evaluation(k: int, row: dict[str, float]) -> None:
        if members[k].log is not None:
            members[k].log.evaluation(level, densities[k], row)

    try:
        results = train_replicas(
            net,
            data,
            budgets[0].train,
            plan=budgets[0].plan,
            masks=masks,
            seeds=[derive_seed(m.cfg.seed, "data") for m in members],
            start_step=start_step,
            snapshot_step=rewind_at if level == 0 and rewind_at > 0 else None,
            progress=label if progress and interactive() else None,
            update_masks=hook,
            checkpoints=level_checkpoints(members, level),
            on_evaluation=log_evaluation,
        )
    except Diverged as error:
        record_divergence(members[error.replica].store.path, level, error)
        raise
    finals = net.states()
    masks, level_files = finish_gradual(hook, masks, results, [m.store.path for m in members])
    for result, attacked in zip(results, attack_metrics(net, data, cfg.attack, seeds), strict=True):
        result.final.update(attacked)  # attack.eps: fgsm/pgd accuracies join the level metrics
    for m, mask, (start, _), result, final, budget, (_, extra) in zip(
        members, masks, starts, results, finals, budgets, picked, strict=True
    ):
        if m.cfg.is_branch:  # provenance: which parent mask this level trained
            record_parent_mask(m.store, level)
        if level == 0 and rewind_at > 0:
            save_weights(m.store, "rewind", result.snapshot)
        cost = flops_metrics(template, data, mask)  # of the final mask (gradual: the frozen one)
        metrics = level_metrics(level, mask, result.final, start_step) | budget.metrics | cost
        metrics |= extra
        fresh = start if level > 0 and m.cfg.rule.start == FRESH_EACH_LEVEL else None
        save_level(
            m.store,
            level,
            mask,
            final,
            metrics,
            result.history,
            start=fresh,
            extra_files=level_files.get(m.store.path),
        )
        if m.log is not None:
            m.log.level_done(level, metrics)
        if progress and not interactive():  # a log: one line per level instead of a bar
            report_level(m.store.run_id, level, metrics)


def level_checkpoints(members: list[Member], level: int) -> LevelCheckpoints | None:
    """Where this group's training state of ``level`` is checkpointed (None: not at all)."""
    every = members[0].checkpoint_every
    if every <= 0:
        return None
    dirs = [level_dir(m.store.path, level) for m in members]
    return LevelCheckpoints(dirs, [m.store.run_id for m in members], every)


def build_model(cfg: RunConfig, data: Data, seed: int) -> nn.Module:
    m = cfg.model
    return build(m.name, data.input_shape, data.num_classes, init=m.init, width=m.width, seed=seed)


def level_mask(
    store: Run, cfg: RunConfig, model: nn.Module, level: int, overrides: TensorOverrides, data: Data
) -> tuple[Mask, dict]:
    """Level 0: all prunable weights kept. Level L: prune the weights of level L−1 (or θ0); a
    branch takes its parent's mask of the level instead (maskstudy.runs.branch).

    Returns the mask and the level metrics its criterion adds (pca: widths and spectra).
    """
    if cfg.is_branch:
        return branch_mask(cfg, store.parent, level), {}
    if level == 0:
        return full_mask(model, exclude=overrides.exclude), {}
    p = cfg.prune
    previous = store.mask(level - 1)
    scored = store.weights(which="init") if p.scores_init else store.weights(level - 1)
    crit = CRITERIA.get(p.criterion)
    if crit.needs_model:  # snip, grasp, synflow, pca
        mask, extra = saliency_level(
            cfg, model, data.train, scored, previous, overrides.amounts, level
        )
        return mask, {**extra, "scored_weights": "init" if p.scores_init else "trained"}
    mask = prune(
        {name: scored[name] for name in previous},
        previous,
        p.criterion,
        p.amount,
        p.scope,
        layer_amounts=overrides.amounts,
        rounding=p.rounding,
        generator=generator(cfg.seed, "prune", level),
        init=store.weights(which="init") if crit.needs_init else None,
        **p.criterion_options(),
    )
    return mask, {}


def starting_point(
    store: Run, cfg: RunConfig, data: Data, level: int, rewind_at: int, mask: Mask
) -> tuple[dict, int]:
    """The weights level ``level`` (trained with ``mask``) starts from, and its first step."""
    if level == 0:
        return inherited_start(store, level, mask), 0
    if cfg.rule.start == FRESH_EACH_LEVEL:  # a new draw at every level, its own stream
        fresh = build_model(cfg, data, seed=derive_seed(cfg.seed, "reinit", level))
        return fresh.state_dict(), 0
    return inherited_start(store, level, mask), (rewind_at if rewinds_schedule(cfg) else 0)


def level_metrics(level: int, mask: Mask, final: dict, start_step: int) -> dict:
    kept, total = kept_total(mask)
    densities = layer_densities(mask)
    return {
        "level": level,
        "kept": kept,
        "total": total,
        "percent_remaining": 100.0 * kept / total if total else 100.0,
        "layer_density": densities,
        "collapsed": [name for name, d in densities.items() if d == 0.0],
        "start_step": start_step,
        **final,
    }
