"""Optimizers and learning-rate schedules built from a ``TrainConfig``.

The schedule is a plain function of the absolute step, so training can start at any step
(late rewinding) and see exactly the learning rates an uninterrupted run would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from maskstudy.train.config import TrainConfig
from maskstudy.train.plan import TrainPlan


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: TrainConfig
) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov, weight decay) or Adam (weight decay as L2) at ``cfg.lr``.

    The fused kernels (one pass over each tensor) are used on CPU and CUDA: on stacked replicas
    the unfused Adam spends more time in its elementwise passes than the network does.
    """
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") for p in params) or None
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        fused=fused,
    )


def lr_factor(cfg: TrainConfig, plan: TrainPlan) -> Callable[[int], float]:
    """The learning-rate multiplier as a function of the absolute step (0-based).

    ``constant`` is 1; ``step`` multiplies by ``gamma`` once the step reaches each milestone;
    ``cosine`` is ``(1 + cos(pi * step / T)) / 2``, 1 at step 0 and 0 at T = ``plan.total``.
    A warm-up of W iterations multiplies any of them by ``min(1, (step + 1) / W)``: the first
    update uses lr/W and step W-1 reaches the full rate. The steps come from ``plan`` (``cfg``'s
    durations resolved at one epoch length), the rates and shape from ``cfg``.
    """
    total, warmup, milestones = plan.total, plan.warmup, plan.milestones

    shapes: dict[str, Callable[[int], float]] = {
        "constant": lambda step: 1.0,
        "step": lambda step: cfg.gamma ** sum(step >= m for m in milestones),
        "cosine": lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)),
    }
    base = shapes[cfg.schedule]  # TrainConfig allows only these names

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        return ramp * base(step)

    return factor


def set_lr_(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
