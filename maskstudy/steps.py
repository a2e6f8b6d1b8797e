"""Durations, OpenLTH-style: ``"160ep"``, ``"500it"`` or ``"2ep50it"``, parsed once into ``Steps``.

Configs keep the text (it is what users write and what run ids hash); ``Steps.parse`` is the one
parser, and a run resolves every duration to iterations once, when its plan is made
(``train/plan.py``, ``runs/checks.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maskstudy.errors import ConfigError

_STEP = re.compile(r"^(?:(\d+(?:\.\d+)?)ep)?(?:(\d+)it)?$")


@dataclass(frozen=True)
class Steps:
    """A duration: ``epochs`` (may be fractional) plus ``iterations``."""

    epochs: float = 0.0
    iterations: int = 0

    @classmethod
    def parse(cls, text: str, field: str = "duration") -> Steps:
        """``Steps`` of '10ep', '500it' or '2ep50it'; ConfigError naming ``field`` otherwise."""
        match = _STEP.match(text) if isinstance(text, str) and text else None
        if match is None:
            raise ConfigError(
                f"{field} = {text!r} is not a duration; write '<n>ep', '<n>it' or '<n>ep<m>it' "
                "(e.g. '160ep', '50000it')"
            )
        epochs, iters = match.groups()
        return cls(float(epochs or 0), int(iters or 0))

    def at(self, iterations_per_epoch: int) -> int:
        """The whole number of iterations at this epoch length (epochs rounded)."""
        return round(self.epochs * iterations_per_epoch) + self.iterations

    @property
    def is_zero(self) -> bool:
        return self.epochs == 0 and self.iterations == 0


def check_some_steps(text: str, field: str, iterations_per_epoch: int | None = None) -> Steps:
    """Duration ``text`` parsed; ConfigError unless it is at least one iteration: at any epoch
    length when ``iterations_per_epoch`` is None (so only '0ep', '0it', '0ep0it' are refused),
    else at that one (where '0.1ep' may round to none)."""
    steps = Steps.parse(text, field)
    if iterations_per_epoch is None:
        zero, where = steps.is_zero, ""
    else:
        zero, where = (
            steps.at(iterations_per_epoch) == 0,
            f" at {iterations_per_epoch} iterations per epoch",
        )
    if zero:
        raise ConfigError(
            f"{field} = {text!r} is 0 iterations{where}; give at least one, e.g. '1ep' or '100it'"
        )
    return steps


def to_iterations(text: str, iterations_per_epoch: int) -> int:
    """Convert a duration string to a whole number of iterations."""
    return Steps.parse(text).at(iterations_per_epoch)
