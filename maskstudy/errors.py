"""Errors maskstudy raises on purpose: each names the problem and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MaskstudyError(Exception):
    """Base class of every deliberate maskstudy error."""


class ConfigError(MaskstudyError, ValueError):
    """A configuration, sweep file or argument is invalid."""


class DataError(MaskstudyError, ValueError):
    """A dataset file is missing, damaged or of the wrong shape."""


class StoreError(MaskstudyError):
    """A run directory is missing, damaged, or holds another config."""


def did_you_mean(name: object, valid: Iterable[str]) -> str:
    """ " (did you mean 'x' or 'y'?)" for the valid names closest to a mistyped ``name``; ""
    when none is close. Matching ignores case and treats '-' and '_' alike."""
    options = list(valid)
    key = str(name).lower().replace("-", "_")
    folded = {o.lower().replace("-", "_"): o for o in options}
    close = difflib.get_close_matches(key, list(folded), n=2, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(folded[c]) for c in close) + "?)"
