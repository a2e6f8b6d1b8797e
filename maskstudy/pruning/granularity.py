"""Campfire's granularities as criteria: whole kernels, windows inside kernels, or both.

A *kernel* is the slice ``w[o, i]`` of a weight (kh×kw for Conv2d). The criteria follow
``prune``'s amount semantics per tensor, so they serve iterative levels and gradual runs alike:

- ``kernel``: remove ``amount`` of the kernels still alive, lowest L1 first (whole kernels go).
- ``window``: inside every kernel remove ``amount`` of its alive weights, lowest |w| first; at
  density d of a fresh kernel this keeps q = ⌈d·kh·kw⌉ (gradual) weights per kernel.
- ``combined``: ``kernel`` then ``window``, each at the rate 1 − √(1 − amount), so the kept
  fraction multiplies to 1 − amount (d = d_k·d_w, docs/methods.md#campfire-granularities-kernel-window-combined).

Linear weights (out, in) are convolutions with 1×1 kernels. ``kernel`` then ranks single weights
by |w|, which *is* layer-wise magnitude pruning; a 1×1 ``window`` could never prune (⌈d·1⌉ = 1),
so ``window`` also falls back to layer-wise magnitude pruning there. All three refuse
scope='global'.
"""

from __future__ import annotations

import math

import torch

from maskstudy.pruning.criteria import (
    CRITERIA,
    Criterion,
    _unstructured,
    drop_lowest,
    prune_count,
)

Tensor = torch.Tensor


def _kernels(t: Tensor) -> Tensor:
    """View ``t`` (out, in, *k) as rows of kernels: (out·in, prod(k)); 2-D gives 1-wide rows."""
    return t.reshape(t.shape[0] * t.shape[1], -1)


def kernel_scores(w: Tensor, **_: object) -> Tensor:
    """L1 norm of every (out, in) kernel, shaped (out, in)."""
    return _kernels(w).abs().sum(1).view(w.shape[0], w.shape[1])


def window_scores(w: Tensor, **_: object) -> Tensor:
    """|w|: the rank of a weight inside its kernel."""
    return w.abs()


def kernel_select(w: Tensor, mask: Tensor, amount: float, rounding: str, **_: object) -> Tensor:
    """Drop the lowest-L1 ``amount`` of the alive kernels of one tensor (whole kernels)."""
    rows = _kernels(mask)
    alive = rows.any(1)
    scores = kernel_scores(w * mask).reshape(-1)[alive]
    keep = alive.clone()
    keep[alive] = drop_lowest(scores, prune_count(amount, int(alive.sum()), rounding))
    return (rows & keep[:, None]).view(mask.shape)


def window_select(w: Tensor, mask: Tensor, amount: float, rounding: str, **_: object) -> Tensor:
    """In every kernel drop the lowest-|w| ``amount`` of its alive weights (ties: lower index)."""
    rows = _kernels(mask)
    width = rows.shape[1]
    if width == 1:  # 1×1 kernels (Linear): layer-wise magnitude, see the module docstring
        return _unstructured(window_scores(w), mask, amount, rounding)
    removals = torch.tensor([prune_count(amount, c, rounding) for c in range(width + 1)])
    remove = removals.to(mask.device)[rows.sum(1)]
    scores = torch.where(rows, window_scores(_kernels(w)), torch.inf)  # pruned ones rank last
    return (rows & drop_lowest(scores, remove[:, None])).view(mask.shape)


def combined_select(w: Tensor, mask: Tensor, amount: float, rounding: str, **_: object) -> Tensor:
    """``kernel`` then ``window`` pruning, each removing 1 − √(1 − amount) of what is alive."""
    part = 1.0 - math.sqrt(1.0 - amount)
    return window_select(w, kernel_select(w, mask, part, rounding), part, rounding)


CRITERIA.register("kernel")(Criterion(kernel_scores, structured=True, select=kernel_select))
CRITERIA.register("window")(Criterion(window_scores, structured=True, select=window_select))
CRITERIA.register("combined")(Criterion(window_scores, structured=True, select=combined_select))
