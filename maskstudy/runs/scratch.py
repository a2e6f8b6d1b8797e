"""Training budgets per level: FLOPs of the masked model and Rethinking's Scratch-B schedule.

Liu et al. (2019) train a pruned architecture from scratch either for the large model's epochs
(Scratch-E: the ``scratch_e`` branch kind, the level's own duration) or for the same computation
(Scratch-B): ``int(epochs · FLOPs_dense / FLOPs_pruned)`` with the step milestones at the same
fractions of training. Here the budget is counted in iterations, ``floor(T · ratio)`` for the
level's duration T, every milestone ``m`` moves to ``floor(m · T_B / T)``, and ``scratch_cap``
caps the ratio (Rethinking's ImageNet rule: at most double). FLOPs are the MACs of one input
through the Linear/Conv layers counting kept weights only (``maskstudy.models.flops``), as
Rethinking counts the sparse model for unstructured pruning.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from torch import nn

from maskstudy.data.base import Data
from maskstudy.errors import ConfigError
from maskstudy.masks import Mask
from maskstudy.models.flops import layer_flops
from maskstudy.runs.config import RunConfig, TrainConfig
from maskstudy.runs.regimes import FINAL_LR, STRETCHED
from maskstudy.train.optim import lr_factor
from maskstudy.train.plan import TrainPlan


@dataclass(frozen=True)
class Budget:
    """How one level trains (``train``, in iterations ``plan``) and its cost figures."""

    train: TrainConfig
    plan: TrainPlan
    metrics: dict[str, Any]  # train_iterations (the FLOPs are recorded from the level's final mask)


def level_budget(
    cfg: RunConfig, base: TrainPlan, model: nn.Module, data: Data, level: int, mask: Mask
) -> Budget:
    """The level's training from the run's ``base`` plan: levels >= 1 of scratch_b stretch it by
    the FLOPs ratio of ``mask``; finetune levels >= 1 train at the schedule's final rate."""
    train, plan, schedule = cfg.train, base, cfg.rule.schedule
    if schedule == STRETCHED and level > 0:
        cost = flops_metrics(model, data, mask)
        plan = plan.stretched(
            budget_ratio(cost["flops_dense"], cost["flops"], cfg.scratch_cap, level)
        )
    if schedule == FINAL_LR and level > 0:
        train, plan = at_final_lr(train, plan)
    return Budget(train, plan, {"train_iterations": plan.total})


def at_final_lr(train: TrainConfig, plan: TrainPlan) -> tuple[TrainConfig, TrainPlan]:
    """``train`` continued at the learning rate of its schedule's last step, held constant:
    fine-tuning (Han et al. 2015; Liu et al. 2019), as opposed to replaying the schedule."""
    lr = train.lr * lr_factor(train, plan)(plan.total - 1)
    held = dataclasses.replace(train, lr=lr, schedule="constant", milestones=(), warmup="0it")
    return held, dataclasses.replace(plan, warmup=0, milestones=())


def flops_metrics(model: nn.Module, data: Data, mask: Mask) -> dict[str, Any]:
    """``flops`` (MACs of one input with ``mask``), ``flops_dense`` and their ratio."""
    rows = layer_flops(model, data.input_shape, mask)
    flops, dense = sum(r.macs for r in rows), sum(r.dense for r in rows)
    return {
        "flops": flops,
        "flops_dense": dense,
        "flops_ratio": dense / flops if flops else float("inf"),
    }


def budget_ratio(dense: int, flops: int, cap: float, level: int) -> Fraction:
    """FLOPs_dense / FLOPs_masked as an exact fraction, limited to ``cap`` when it is > 0."""
    if flops == 0 and not cap:
        raise ConfigError(
            f"scratch_b: the mask of level {level} keeps no weights (0 FLOPs), so the FLOPs ratio "
            "is unbounded; set scratch_cap (e.g. 2) or prune less (prune.amount, prune.exclude)"
        )
    ratio = Fraction(dense, flops) if flops else Fraction(cap)
    return min(ratio, Fraction(cap)) if cap else ratio


def same_budget(budgets: list[Budget]) -> list[list[int]]:
    """Indices of the members sharing one training schedule, in first-seen order: replicas train
    side by side only with equal schedules (scratch_b under global scope may differ)."""
    groups: dict[tuple[TrainConfig, TrainPlan], list[int]] = defaultdict(list)
    for i, budget in enumerate(budgets):
        groups[budget.train, budget.plan].append(i)
    return list(groups.values())
