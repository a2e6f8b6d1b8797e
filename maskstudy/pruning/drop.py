"""Drop Pruning (Jia et al. 2018; docs/methods.md#drop-pruning-drop): stochastic drop-away and drop-back.

One step on a tensor with n of its N weights alive: the candidates are the weights magnitude
pruning at rate r would remove (the lowest-|w| fraction r of the alive weights: per layer, or
pooled with ``scope="global"``); each candidate is removed with probability p_away and each
weight pruned before the step revives with probability p_back. In expectation
n' = n − p_away·r·n + p_back·(N − n), which flows to the fixed point
n*/N = p_back / (p_away·r + p_back) from any start. ``back_for_target`` picks p_back for a
target density. With p_back = 0 the masks are nested; with p_back > 0 they are not.

In a run (``prune.criterion = "drop"``), r is ``prune.amount`` (``prune.layer_amounts``
overrides r per tensor), p_away is ``prune.drop.away`` and p_back is set from
``prune.drop.target`` and the run-wide r. A tensor given a smaller r than the rest therefore
settles at a higher density, p_back/(p_away·r_layer + p_back), as IMP's "output layer at half
rate" does. ``prune.drop.revive`` says what a revived weight restarts from when the regime
keeps trained values (finetune, lr_rewind): 0, or its value the last time it was alive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from maskstudy.errors import ConfigError
from maskstudy.fields import choice
from maskstudy.masks import Mask
from maskstudy.pruning.criteria import CRITERIA, Criterion, magnitude_scores, prune

if TYPE_CHECKING:
    from maskstudy.pruning.config import PruneConfig

DROP = "drop"
REVIVES = ("zero", "last")


def _probability(value: object, name: str, *, zero_ok: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0 <= value <= 1) or (value == 0 and not zero_ok):
        bound = "in [0, 1]" if zero_ok else "in (0, 1]"
        raise ConfigError(f"{name} = {value!r} must be a probability {bound}")
    return float(value)


def _check_target(target: object) -> None:
    ok = isinstance(target, (int, float)) and not isinstance(target, bool)
    if not ok or not 0 <= target < 1:
        raise ConfigError(
            f"prune.drop.target = {target!r} must be a density in [0, 1) "
            "(0 = no drop-back: nested masks flowing to 0)"
        )


def back_for_target(target: float, rate: float, away: float) -> float:
    """The drop-back probability whose fixed point p_back/(p_away·r + p_back) equals ``target``."""
    _check_target(target)
    _probability(rate, "prune.amount")
    _probability(away, "prune.drop.away", zero_ok=False)
    back = target * away * rate / (1 - target)
    if back > 1:
        reach = 1 / (1 + away * rate)
        raise ConfigError(
            f"prune.drop.target = {target!r} is out of reach: with drop.away × amount = "
            f"{away * rate:g} the densest fixed point is {reach:.4g} (drop-back probability 1); "
            "lower prune.drop.target or raise prune.drop.away or prune.amount"
        )
    return back


def fixed_density(rate: float, away: float, back: float) -> float:
    """The density drop steps flow to, p_back/(p_away·r + p_back); nan when nothing ever changes."""
    flow = away * rate + back
    return back / flow if flow > 0 else float("nan")


@dataclass(frozen=True)
class DropConfig:
    """``prune.drop``: Drop Pruning's probabilities (read with ``prune.criterion = "drop"``)."""

    ID_PREFIX: ClassVar[str] = "drop_"  # hashed as prune.drop_<field>, its name before sections

    away: float = 0.5  # p_away: each candidate (lowest-|w| ``amount`` of the alive) goes with it
    target: float = 0.07  # density the steps flow to; 0 = no drop-back (nested masks)
    revive: str = "zero"  # finetune: a revived weight restarts at 0 or its "last" alive value

    def __post_init__(self) -> None:
        _probability(self.away, "prune.drop.away", zero_ok=False)
        choice(self.revive, REVIVES, "prune.drop.revive")
        _check_target(self.target)

    def check(self, p: PruneConfig) -> None:
        """The target must be reachable at the run's ``prune.amount`` (only for criterion drop)."""
        if p.criterion == DROP:
            back_for_target(self.target, p.amount, self.away)


def drop_step(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor] | None,
    rate: float,
    *,
    away: float,
    back: float,
    scope: str = "layer",
    layer_amounts: Mapping[str, float] | None = None,
    exclude: Iterable[str] = (),
    rounding: str = "round",
    generator: torch.Generator | None = None,
) -> Mask:
    """One Drop Pruning step: each of the lowest-|w| ``rate`` of the alive weights goes with
    probability ``away``; each pruned weight comes back with probability ``back``.

    ``rate``, ``scope``, ``layer_amounts``, ``exclude`` and ``rounding`` select the candidates
    exactly as ``prune(..., "magnitude", rate, ...)`` would remove them; tensors in
    ``exclude`` pass through unchanged. Draws come from ``generator`` (CPU), tensor by tensor
    in mask order, so a seeded generator gives the same mask on every device.
    """
    away = _probability(away, "away")
    back = _probability(back, "back")
    excluded = set(exclude)
    kept = prune(
        weights,
        mask,
        "magnitude",
        rate,
        scope,
        layer_amounts=layer_amounts,
        exclude=excluded,
        rounding=rounding,
    )
    current = dict(mask) if mask is not None else {n: torch.ones_like(k) for n, k in kept.items()}
    out = {}
    for name, m in current.items():
        if name in excluded:
            out[name] = m.clone()
            continue
        u_away = torch.rand(m.shape, generator=generator).to(m.device)
        u_back = torch.rand(m.shape, generator=generator).to(m.device)
        removed = m & ~kept[name] & (u_away < away)
        revived = ~m & (u_back < back)
        out[name] = (m & ~removed) | revived
    return out


def drop_level(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor] | None,
    amount: float,
    *,
    away: float = 0.5,
    target: float = 0.07,
    revive: str = "zero",  # what a revived weight restarts from: the store's (revived_start)
    **how: Any,
) -> Mask:
    """``prune(..., "drop", amount, away=, target=)``: a drop step whose drop-back probability
    makes the density flow to ``target`` at the run-wide rate ``amount``."""
    back = back_for_target(target, amount, away)
    return drop_step(weights, mask, amount, away=away, back=back, **how)


# Candidates are ranked by |w| (the registry's score); the step then drops and revives them.
CRITERIA.register(DROP)(
    Criterion(magnitude_scores, step=drop_level, options=DropConfig, section="drop")
)


def revived_start(
    final: Callable[[int], Mapping[str, torch.Tensor]],
    mask_at: Callable[[int], Mapping[str, torch.Tensor]],
    level: int,
    mask: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Finetune start of ``level`` with ``prune.drop.revive = "last"``: level−1's trained weights,
    each revived weight set to its trained value at the last level it was alive.

    ``final(j)`` / ``mask_at(j)`` read level j's trained weights and mask (``Run.weights``,
    ``Run.mask``); ``mask`` is level ``level``'s mask. Level 0 keeps every weight, so every
    revived weight has a last value.
    """
    state = {name: t.clone() for name, t in final(level - 1).items()}
    previous = mask_at(level - 1)
    missing = {name: m & ~previous[name] for name, m in mask.items()}
    for j in range(level - 2, -1, -1):
        if not any(bool(m.any()) for m in missing.values()):
            break
        alive, trained = mask_at(j), final(j)
        for name, wanted in missing.items():
            hit = wanted & alive[name]
            state[name] = torch.where(hit, trained[name], state[name])
            missing[name] = wanted & ~hit
    return state
