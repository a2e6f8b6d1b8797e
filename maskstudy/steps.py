"""Durations as strings, OpenLTH-style: ``"160ep"``, ``"500it"`` or ``"2ep50it"``."""

from __future__ import annotations

import re

from maskstudy.errors import ConfigError

_STEP = re.compile(r"^(?:(\d+(?:\.\d+)?)ep)?(?:(\d+)it)?$")


def check_steps(text: str, field: str) -> None:
    """Raise ConfigError unless ``text`` is a duration like '10ep', '500it' or '2ep50it'."""
    if not isinstance(text, str) or not text or not _STEP.match(text):
        raise ConfigError(
            f"{field} = {text!r} is not a duration; write '<n>ep', '<n>it' or '<n>ep<m>it' "
            "(e.g. '160ep', '50000it')"
        )


def check_some_steps(text: str, field: str, iterations_per_epoch: int | None = None) -> None:
    """ConfigError unless duration ``text`` is at least one iteration: at any epoch length when
    ``iterations_per_epoch`` is None (so only '0ep', '0it', '0ep0it' are refused), else at that
    one (where '0.1ep' may round to none)."""
    check_steps(text, field)
    if iterations_per_epoch is None:
        epochs, iters = _STEP.match(text).groups()  # type: ignore[union-attr]
        zero = float(epochs or 0) == 0 and int(iters or 0) == 0
        where = ""
    else:
        zero = to_iterations(text, iterations_per_epoch) < 1
        where = f" at {iterations_per_epoch} iterations per epoch"
    if zero:
        raise ConfigError(
            f"{field} = {text!r} is 0 iterations{where}; give at least one, e.g. '1ep' or '100it'"
        )


def to_iterations(text: str, iterations_per_epoch: int) -> int:
    """Convert a duration string to a whole number of iterations."""
    check_steps(text, "duration")
    epochs, iters = _STEP.match(text).groups()  # type: ignore[union-attr]
    return round(float(epochs or 0) * iterations_per_epoch) + int(iters or 0)
