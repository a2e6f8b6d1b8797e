"""Gradual runs (prune.schedule = 'gradual') in the run loop and the store.

A gradual run is one training run (level 0): ``gradual_hook`` builds the ``update_masks`` hook
of ``train_replicas`` from the config, ``finish_gradual`` turns what it recorded into the level's
frozen mask, a ``density`` column in the history rows, freeze metrics, and one extra level file,
``mask_updates.safetensors``, holding every mask the ramp produced (packed bits; tensor names
``"<step>/<parameter>"``), recorded in DONE and read back by ``Run.mask_updates(level)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from maskstudy.errors import StoreError
from maskstudy.files import pack_mask, unpack_mask
from maskstudy.masks import Mask, density
from maskstudy.pruning.gradual import GradualPruner
from maskstudy.pruning.schedules import GradualSchedule
from maskstudy.runs.config import RunConfig
from maskstudy.train.loop import TrainResult

UPDATES_FILE = "mask_updates.safetensors"


def gradual_hook(
    cfg: RunConfig, schedule: GradualSchedule | None, masks: Sequence[Mask], seeds: Sequence[int]
) -> GradualPruner | None:
    """The mask-update hook of a gradual level on its ``schedule`` (None: iterative runs)."""
    if schedule is None:
        return None
    p = cfg.prune
    return GradualPruner(schedule, masks, seeds, p.criterion, p.scope, **p.criterion_options())


def finish_gradual(
    hook: GradualPruner | None,
    masks: list[Mask],
    results: Sequence[TrainResult],
    paths: Sequence[Path],
) -> tuple[list[Mask], dict[Path, dict[str, bytes]]]:
    """The masks to store (the frozen ones) and extra level files by run path; annotates
    ``results`` in place (history ``density``; ``freeze_step``, ``mask_updates``)."""
    if hook is None:
        return masks, {}
    files = {}
    for result, updates, path in zip(results, hook.updates, paths, strict=True):
        trace = [(step, density(mask)) for step, mask in updates]
        for row in result.history:
            done = [d for step, d in trace if step <= row["step"]]
            row["density"] = done[-1] if done else 1.0
        result.final.update({
            "freeze_step": hook.schedule.end,
            "mask_updates": len(updates),
            "gradual_target": hook.schedule.target,
        })  # fmt: skip
        files[path] = {UPDATES_FILE: pack_updates(updates)}
    return list(hook.masks), files


def pack_updates(updates: Sequence[tuple[int, Mask]]) -> bytes:
    """Every (step, mask) in one packed-bit safetensors file."""
    return pack_mask({f"{step}/{name}": m for step, mask in updates for name, m in mask.items()})


def unpack_updates(data: bytes, path: Path) -> list[tuple[int, Mask]]:
    """The (step, mask) list ``pack_updates`` wrote, in step order."""
    by_step: dict[int, Mask] = {}
    for key, m in unpack_mask(data, path).items():
        step, sep, name = key.partition("/")
        if not sep or not step.isdigit():
            raise StoreError(
                f"{path} holds {key!r}, not a '<step>/<parameter>' mask; it is damaged"
            )
        by_step.setdefault(int(step), {})[name] = m
    return sorted(by_step.items())
