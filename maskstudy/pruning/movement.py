"""Movement criteria of Zhou et al. (2019, "Deconstructing Lottery Tickets"), Fig. 2 and §2.

They rank a weight by how it moved in training rather than by where it ended, comparing the
trained weight w_f with its initial value w_i (θ0 of the run):

- ``prune.movement.measure = "distance"``: |w_f − w_i| ("movement");
- ``prune.movement.measure = "increase"``: |w_f| − |w_i| ("magnitude increase"), which Zhou et al.
  found to find tickets as well as the lottery ticket's |w_f| ("large final").

The lowest scores are pruned first, as for every criterion; the run passes θ0 as ``init=``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maskstudy.errors import ConfigError
from maskstudy.fields import choice
from maskstudy.pruning.criteria import CRITERIA, Criterion

MEASURES = ("distance", "increase")


@dataclass(frozen=True)
class MovementConfig:
    """``prune.movement``: which movement of a weight from θ0 is ranked."""

    measure: str = "distance"  # distance |w_f − w_i| | increase |w_f| − |w_i|

    def __post_init__(self) -> None:
        choice(self.measure, MEASURES, "prune.movement.measure")


def movement_scores(
    w: torch.Tensor, *, init: torch.Tensor, measure: str = "distance", **_: object
) -> torch.Tensor:
    """|w − init| (distance) or |w| − |init| (increase), elementwise."""
    MovementConfig(measure)  # a bad measure is refused here too, not read as 'increase'
    if init.shape != w.shape:
        raise ConfigError(f"init has shape {tuple(init.shape)}, the weight {tuple(w.shape)}")
    init = init.to(w.device, w.dtype)
    return (w - init).abs() if measure == "distance" else w.abs() - init.abs()


CRITERIA.register("movement")(
    Criterion(movement_scores, needs_init=True, options=MovementConfig, section="movement")
)
