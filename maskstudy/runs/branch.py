"""Branches: runs that train the masks of a parent run, level by level, instead of pruning.

A branch is an ordinary run directory whose config names its parent (``branch.parent``, a run
id) and a kind (``branch.kind``, one of ``BRANCH_KINDS``: docs/methods.md, Branches). The kind
says which mask a level trains (the parent's, a shuffle of it or a random one with its counts)
and where training starts (the parent's θ0/θk, a fresh init, or the parent's previous level).
A branch's id is the hash of its config like any run's, so asking again is idempotent and a
branch resumes like any run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from maskstudy.errors import ConfigError, StoreError
from maskstudy.masks import Mask
from maskstudy.runs.config import RunConfig
from maskstudy.runs.regimes import BRANCH_KINDS, FROM_K, REWIND
from maskstudy.runs.store import MASK_FILE, WEIGHT_FILES, Run, levels_done
from maskstudy.seeds import generator

PARENT_ONLY = ("model.", "prune.", "branch.")  # fields a branch takes from its parent as they are


def branch_config(
    parent: RunConfig,
    kind: str,
    *,
    levels: int | None = None,
    level: int | None = None,
    seed: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    parent_id: str | None = None,
) -> RunConfig:
    """The config of the ``kind`` branch of a run with config ``parent`` (whose run id is
    ``parent_id``: by default the hash of ``parent``; a run stored before the regimes were
    renamed keeps its recorded id).

    ``levels = L`` trains the parent's masks of levels 1..L (default: the parent's ``levels``),
    ``level = L`` only level L; ``seed`` (default: the parent's) draws a fresh init and the data
    order; ``overrides`` are dotted fields (``train.*``, ``data.*``, ``rewind_to``, ...).
    """
    if kind not in BRANCH_KINDS:
        raise ConfigError(
            f"branch kind {kind!r} is not allowed; choose one of: {', '.join(BRANCH_KINDS)}"
        )
    if parent.is_branch:
        raise ConfigError(
            f"{parent.run_id()} is itself a branch; branch the run that pruned the masks "
            f"({parent.branch.parent})"
        )
    if levels is not None and level is not None:
        raise ConfigError("give levels (1..L) or level (only L), not both")
    overrides = dict(overrides or {})
    fixed = sorted(k for k in overrides if k.startswith(PARENT_ONLY) or k in ("levels", "seed"))
    if fixed:
        raise ConfigError(
            f"a branch cannot set {', '.join(fixed)}: the model and masks are the parent's, and "
            "levels and seed have their own options (--levels/--level, --seed)"
        )
    if BRANCH_KINDS[kind].fresh_init and overrides.get("rewind_to", "0it") not in ("0it", "0ep"):
        raise ConfigError(
            f"a {kind} branch trains a fresh init from step 0; rewind_to cannot be set"
        )
    last = level if level is not None else (levels if levels is not None else parent.levels)
    base = {"branch.kind": kind, "branch.parent": parent_id or parent.run_id(), "levels": last}
    if seed is not None:
        base["seed"] = seed
    if BRANCH_KINDS[kind].fresh_init:
        base["rewind_to"] = "0it"
    cfg = parent.replace({**base, **overrides, "branch.first": min(1, last)})
    first = level if level is not None else 1
    if needs_own_dense(cfg, parent):
        if level is not None:
            raise ConfigError(
                f"rewind_to = {cfg.rewind_to!r} differs from the parent's ({parent.rewind_to!r}): "
                "the branch trains its own dense level 0 to reach θk, so ask --levels, not --level"
            )
        first = 0
    return cfg.replace({"branch.first": first})


def needs_own_dense(cfg: RunConfig, parent: RunConfig) -> bool:
    """Whether a branch must train the dense level 0 itself: it rewinds to a θk > 0 that the
    parent does not store (the parent rewinds elsewhere)."""
    k = cfg.rewind_to
    rewound = cfg.rule.start == REWIND
    return rewound and k not in ("0it", "0ep") and k != parent.rewind_to


def branch_mask(cfg: RunConfig, parent: Run, level: int) -> Mask:
    """The mask a branch trains at ``level``: the parent's, shuffled (one permutation per
    tensor for the whole branch, so nesting and overlaps between levels are the parent's), or
    random with the parent's per-tensor counts (drawn anew at each level)."""
    mask = parent.mask(level)
    if cfg.branch.kind == "random_mask":
        gen = generator(cfg.seed, "random_mask", level)
        return {name: random_like(m, gen) for name, m in mask.items()}
    if cfg.branch.kind == "shuffle":
        out = {}
        for name, m in mask.items():
            order = torch.randperm(m.numel(), generator=generator(cfg.seed, "shuffle", name))
            out[name] = m.flatten()[order.to(m.device)].view(m.shape)
        return out
    return mask


def random_like(mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random mask with as many kept entries as ``mask``."""
    order = torch.randperm(mask.numel(), generator=gen)
    flat = torch.zeros(mask.numel(), dtype=torch.bool)
    flat[order[: int(mask.sum())]] = True
    return flat.view(mask.shape).to(mask.device)


def missing_parent_levels(cfg: RunConfig, have: Iterable[int], todo: Iterable[int]) -> list[int]:
    """The parent levels (of ``have``) the branch lacks for ``todo``: the mask of each level it
    trains and, for finetune / lr_rewind, the trained weights of the level before."""
    needed = set(todo)
    if cfg.rule.continues:
        needed |= {lv - 1 for lv in needed}
    return sorted(needed - set(have))


def waiting_for(cfg: RunConfig, run_dir: Path) -> list[int]:
    """The levels a sweep's branch still waits for from its parent, the run beside it."""
    parent_dir = run_dir.parent / cfg.branch.parent
    have, done = levels_done(parent_dir), set(levels_done(run_dir))
    return missing_parent_levels(cfg, have, [lv for lv in cfg.level_range() if lv not in done])


def check_parent_levels(cfg: RunConfig, parent: Run, todo: list[int]) -> None:
    """Every level the branch is about to train needs the parent's mask of that level (and,
    for finetune / lr_rewind, its trained weights of the level before)."""
    missing = missing_parent_levels(cfg, parent.levels, todo)
    if missing:
        raise StoreError(
            f"branch {cfg.run_id()} needs levels {missing} of its parent {parent.path}, which has "
            f"completed {parent.levels or 'none'}; train the parent further (maskstudy run/sweep "
            "again with more levels) or ask the branch for fewer levels"
        )


def check_parent_unchanged(branch: Run, parent: Run) -> None:
    """The parent masks a branch trained must still be the parent's: a parent level retrained
    since (its DONE records another mask) would leave the branch describing another run."""
    for level, sha in branch.info.get("parent", {}).get("masks", {}).items():
        if int(level) in branch.levels and int(level) in parent.levels:
            now = parent._done(int(level))["files"].get(MASK_FILE)
            if now != sha:
                raise StoreError(
                    f"the parent {parent.path} holds another mask at level {level} than the one "
                    f"branch {branch.path} trained (sha256 {sha[:12]}… then, {str(now)[:12]}… "
                    "now); the parent was retrained. Move the branch away to train it anew"
                )


def parent_weights(cfg: RunConfig, parent: Run) -> dict[str, dict[str, torch.Tensor]]:
    """θ0 (and θk) of a branch that starts from its parent's weights: the parent's θ0, with the
    parent's θk when the branch rewinds to the same step (else its own level 0 makes θk)."""
    out = {"init": parent.weights(which="init")}
    stored = WEIGHT_FILES["rewind"] in parent.info.get("files", {})
    if stored and cfg.rewind_to == parent.config.rewind_to and cfg.rule.start == REWIND:
        out["rewind"] = parent.weights(which="rewind")
    return out


def rewinds_schedule(cfg: RunConfig) -> bool:
    """Whether levels >= 1 start at the rewind step k (rewinding rules), not at step 0."""
    return cfg.rule.schedule == FROM_K
