"""A ``TrainConfig``'s durations resolved to iterations once, at one epoch length.

The loop, the learning-rate schedule and the per-level budgets (Scratch-B's stretched schedule,
fine-tuning at the final rate) all read these integers; nothing re-parses the duration strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from maskstudy.steps import Steps, check_some_steps
from maskstudy.train.config import TrainConfig


@dataclass(frozen=True)
class TrainPlan:
    """Iterations of one level's training: its length, evaluation period, warm-up, milestones."""

    total: int
    eval_every: int
    warmup: int = 0
    milestones: tuple[int, ...] = ()

    @classmethod
    def of(cls, cfg: TrainConfig, iterations_per_epoch: int) -> TrainPlan:
        """Resolve ``cfg``'s durations; ConfigError if training or its evaluation period rounds
        to no iteration at this epoch length."""
        n = iterations_per_epoch
        total = check_some_steps(cfg.duration, "train.duration", n)
        every = check_some_steps(cfg.eval_every, "train.eval_every", n)
        warmup = Steps.parse(cfg.warmup, "train.warmup")
        milestones = tuple(Steps.parse(m, "train.milestones").at(n) for m in cfg.milestones)
        return cls(total.at(n), every.at(n), warmup.at(n), milestones)

    def stretched(self, ratio: Fraction) -> TrainPlan:
        """Training ``floor(total · ratio)`` iterations, each milestone ``m`` moved to
        ``floor(m · new_total / total)`` (Scratch-B); evaluation and warm-up unchanged."""
        total = int(self.total * ratio)
        milestones = tuple(m * total // self.total for m in self.milestones)
        return TrainPlan(total, self.eval_every, self.warmup, milestones)
