"""Density schedules: the AGP cubic ramp of gradual pruning (Zhu & Gupta), linear, and IMP's geometric.

Zhu & Gupta write the sparsity at update step t as s_t = s_f + (s_i − s_f)(1 − (t − t₀)/(nΔt))³.
Density d = 1 − s is an affine image of sparsity, so the same formula holds for densities:
d_t = d_f + (d_i − d_f)(1 − (t − t₀)/(nΔt))³. Updates happen at t₀ + Δt, t₀ + 2Δt, …; when
(end − t₀) is not a multiple of Δt the last update is moved onto ``end`` and the ramp's fraction
is (t − t₀)/(end − t₀), which is the paper's (t − t₀)/(nΔt) whenever Δt divides the span.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, ClassVar

from maskstudy.errors import ConfigError
from maskstudy.fields import choice
from maskstudy.pruning.criteria import CRITERIA
from maskstudy.steps import Steps

if TYPE_CHECKING:
    from maskstudy.pruning.config import PruneConfig

SCHEDULES = ("iterative", "gradual")  # prune.schedule: L retrained levels, or one ramped run
SHAPES = {"cubic": 3, "linear": 1}  # exponent of (1 − fraction) in the ramp


def ramp_density(
    fraction: float, target: float, initial: float = 1.0, shape: str = "cubic"
) -> float:
    """Density at ``fraction`` ∈ [0, 1] of the ramp: target + (initial − target)(1 − fraction)^p."""
    if shape not in SHAPES:
        raise ConfigError(f"shape = {shape!r} is not allowed; choose one of: {', '.join(SHAPES)}")
    fraction = min(1.0, max(0.0, fraction))
    return target + (initial - target) * (1.0 - fraction) ** SHAPES[shape]


def geometric_density(amount: float, level: int) -> float:
    """IMP's schedule: density (1 − amount)^level after ``level`` levels removing ``amount`` each."""
    if not 0 <= amount < 1:
        raise ConfigError(f"amount = {amount!r} must be a fraction in [0, 1)")
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise ConfigError(f"level = {level!r} must be an integer >= 0")
    return (1.0 - amount) ** level


@dataclass(frozen=True)
class GradualSchedule:
    """When and to which density a gradual run recomputes its mask, in absolute iterations.

    ``update_steps`` are the iteration counts after which the mask is recomputed; after the
    last one (``end``, the freeze step) the mask stays fixed to the end of training.
    """

    start: int
    end: int
    every: int
    target: float
    initial: float = 1.0
    shape: str = "cubic"

    def __post_init__(self) -> None:
        for name in ("start", "end", "every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"gradual {name} = {value!r} must be a whole number of iterations"
                )
        if self.every < 1:
            raise ConfigError("gradual every = 0 iterations; give at least one, e.g. '100it'")
        if self.end <= self.start:
            raise ConfigError(
                f"gradual end ({self.end} iterations) must come after start ({self.start}); "
                "prune.gradual.end must be later than prune.gradual.start"
            )
        if not 0 < self.target <= self.initial <= 1:
            raise ConfigError(
                f"gradual target density {self.target!r} must lie in (0, initial = {self.initial}]"
            )
        ramp_density(0.0, self.target, self.initial, self.shape)  # checks the shape

    def update_steps(self) -> list[int]:
        """t₀ + Δt, t₀ + 2Δt, … capped at (and ending on) ``end``."""
        count = math.ceil((self.end - self.start) / self.every)
        return [min(self.start + j * self.every, self.end) for j in range(1, count + 1)]

    def density_at_update(self, step: int) -> float:
        """The ramp's density at iteration ``step`` (the value applied by an update there)."""
        fraction = (step - self.start) / (self.end - self.start)
        return ramp_density(fraction, self.target, self.initial, self.shape)

    def density(self, step: int) -> float:
        """The density in force after ``step`` iterations: that of the latest update ≤ step."""
        done = [t for t in self.update_steps() if t <= step]
        return self.density_at_update(done[-1]) if done else self.initial


@dataclass(frozen=True)
class GradualConfig:
    """``prune.gradual``: the ramp of ``prune.schedule = "gradual"`` (Campfire, pruning/gradual.py).

    One training run whose mask is recomputed every ``every`` iterations from ``start`` to ``end``
    on the AGP ramp (cubic or linear) from density 1 to ``target``, then frozen; needs levels = 0.
    """

    # hashed as prune.gradual_<field>, its name before sections
    ID_PREFIX: ClassVar[str] = "gradual_"

    start: str = "0it"
    end: str = "1ep"  # the freeze step
    every: str = "100it"
    target: float = 0.3  # final density (0.3 = 70 % sparsity)
    shape: str = "cubic"  # cubic (Zhu & Gupta) | linear

    def __post_init__(self) -> None:
        for name in ("start", "end", "every"):
            Steps.parse(getattr(self, name), f"prune.gradual.{name}")
        target = self.target
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
            raise ConfigError(
                f"prune.gradual.target = {target!r} must be the final density, strictly between "
                "0 and 1 (0.3 = 70 % sparsity)"
            )
        choice(self.shape, tuple(SHAPES), "prune.gradual.shape")

    def resolve(self, iterations_per_epoch: int, total: int, duration: str) -> GradualSchedule:
        """The ramp in absolute iterations; ConfigError if it ends after the ``total`` iterations
        of training (``duration``, as written)."""
        start, end, every = (
            Steps.parse(t).at(iterations_per_epoch) for t in (self.start, self.end, self.every)
        )
        if end > total:
            raise ConfigError(
                f"prune.gradual.end = {self.end!r} ({end} iterations) is after the end of training "
                f"(train.duration = {duration!r} = {total} iterations)"
            )
        return GradualSchedule(start, end, every, self.target, shape=self.shape)

    def check(self, prune: PruneConfig) -> None:
        """Only a gradual schedule reads this section, with a criterion that can re-rank weights
        during training and without per-level rates."""
        if prune.schedule != "gradual":
            changed = [f.name for f in fields(self) if getattr(self, f.name) != f.default]
            if changed:
                raise ConfigError(
                    f"prune.gradual.{changed[0]} is only used with prune.schedule = 'gradual' "
                    f"(it is {prune.schedule!r}); remove it or set the schedule"
                )
            return
        _check_gradual_criterion(prune.criterion, prune.scope)
        if prune.layer_amounts:
            raise ConfigError(
                "prune.layer_amounts sets per-level rates of iterative pruning; with prune.schedule "
                "= 'gradual' every tensor follows the same density ramp: remove layer_amounts (use "
                "prune.exclude to keep a tensor dense)"
            )


def _gradual_ready(name: str) -> bool:
    """Whether ``prune`` can rank by the current weights alone (no model/data pass, no drop-back,
    no θ0)."""
    crit = CRITERIA.get(name)
    return crit.step is None and not crit.needs_model and not crit.needs_init


def _check_gradual_criterion(criterion: str, scope: str) -> None:
    if not _gradual_ready(criterion):
        usable = ", ".join(n for n in CRITERIA.names() if _gradual_ready(n))
        raise ConfigError(
            f"prune.criterion = {criterion!r} cannot run with prune.schedule = 'gradual', which "
            f"re-ranks the current weights during training; choose one of: {usable}"
        )
    if CRITERIA.get(criterion).structured and scope == "global":
        raise ConfigError(
            f"prune.criterion = {criterion!r} prunes each tensor on its own: set "
            "prune.scope = 'layer'"
        )
