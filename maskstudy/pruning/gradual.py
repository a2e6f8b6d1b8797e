"""Gradual pruning inside one training run: recompute the mask on a density ramp, then freeze it.

``gradual_mask`` turns "reach density d" into ``prune``'s amount semantics: from K alive of N
weights it removes ⌊K − d·N⌋ (per tensor, or pooled for scope='global'), so every update keeps
the ceiling of its target, ⌈d·n⌉ of n units (weights; kernels for ``kernel``; weights of each
kernel for ``window``), and the new mask is nested in the old one. ``GradualPruner`` is the
``update_masks`` hook of ``train_replicas``: at each update step of its schedule it prunes
every replica's current weights and records the masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from maskstudy.masks import Mask, kept_total
from maskstudy.pruning.criteria import prune
from maskstudy.pruning.schedules import GradualSchedule
from maskstudy.seeds import generator

Tensor = torch.Tensor
SLACK = 1e-6  # added to K − d·N so that float error never turns an exact count into one less


def _amount(mask: Mapping[str, Tensor], density: float) -> float:
    """The fraction of the alive weights of ``mask`` to remove to reach ``density`` (floored)."""
    kept, total = kept_total(mask)
    if kept == 0:
        return 0.0
    return min(1.0, max(0.0, (kept - density * total + SLACK) / kept))


def gradual_mask(
    weights: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    density: float,
    criterion: str,
    scope: str = "layer",
    *,
    generator: torch.Generator | None = None,
    **options: Any,
) -> Mask:
    """``mask`` pruned on ``weights`` down to ``density`` (of each tensor, or of all for 'global');
    ``options`` go to the criterion (``n``, ``dim``: ``PruneConfig.criterion_options()``)."""
    if scope == "global":
        amount, rates = _amount(mask, density), None
    else:
        amount, rates = 0.0, {name: _amount({name: m}, density) for name, m in mask.items()}
    return prune(
        {name: weights[name] for name in mask},
        mask,
        criterion,
        amount,
        scope,
        layer_amounts=rates,
        rounding="floor",
        generator=generator,
        **options,
    )


class GradualPruner:
    """``update_masks(step, weights)`` hook: prunes each replica at the schedule's update steps.

    ``updates[k]`` lists (step, mask on the CPU) for replica k, in order; ``masks`` holds the
    masks in force. Random criteria draw from a generator named by (seed, "gradual", step).
    """

    def __init__(
        self,
        schedule: GradualSchedule,
        masks: Sequence[Mask],
        seeds: Sequence[int],
        criterion: str,
        scope: str = "layer",
        **options: Any,
    ) -> None:
        self.schedule, self.criterion, self.scope = schedule, criterion, scope
        self.seeds, self.options = list(seeds), options
        self.masks = [dict(m) for m in masks]
        self.steps = set(schedule.update_steps())
        self.updates: list[list[tuple[int, Mask]]] = [[] for _ in masks]

    @torch.no_grad()
    def __call__(self, step: int, weights: Sequence[Mapping[str, Tensor]]) -> list[Mask] | None:
        """New masks after ``step`` iterations when it is an update step, else None."""
        if step not in self.steps:
            return None
        density = self.schedule.density_at_update(step)
        self.masks = [
            gradual_mask(
                w,
                m,
                density,
                self.criterion,
                self.scope,
                generator=generator(seed, "gradual", step),
                **self.options,
            )
            for w, m, seed in zip(weights, self.masks, self.seeds, strict=True)
        ]
        for record, m in zip(self.updates, self.masks, strict=True):
            record.append((step, {name: t.cpu() for name, t in m.items()}))
        return self.masks
