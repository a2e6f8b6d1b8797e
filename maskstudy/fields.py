"""Validators for config fields: each raises ConfigError naming the field and what it accepts.

Every config section (``DataConfig`` in ``data/``, ``TrainConfig`` in ``train/``, ...) checks its
own fields with these, so the messages read the same everywhere.
"""

from __future__ import annotations

import math
from typing import Any

from maskstudy.errors import ConfigError, did_you_mean
from maskstudy.registry import Registry


def choice(value: Any, allowed: tuple[str, ...], name: str) -> None:
    """ConfigError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(
            f"{name} = {value!r} is not allowed{did_you_mean(value, allowed)}; "
            f"choose one of: {', '.join(allowed)}"
        )


def registered(registry: Registry, value: str, name: str) -> None:
    """ConfigError unless ``value`` names an entry of ``registry``."""
    try:
        registry.get(value)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None


def positive(value: Any, name: str, *, zero_ok: bool = False) -> None:
    """ConfigError unless ``value`` is a finite number > 0 (>= 0 with ``zero_ok``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"{name} = {value!r} must be a finite number {bound}")


def integer_in(value: Any, name: str, top: int, why: str) -> None:
    """ConfigError unless ``value`` is an integer from 0 to ``top`` (``why``: the bound's reason)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise ConfigError(f"{name} = {value!r} must be an integer from 0 to {top}{why}")


def fraction(value: Any, name: str) -> None:
    """ConfigError unless ``value`` lies strictly between 0 and 1."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not 0 < value < 1:
        raise ConfigError(f"{name} = {value!r} must be a fraction strictly between 0 and 1")
