"""Errors maskstudy raises on purpose: each names the problem and how to fix it."""

from __future__ import annotations


class MaskstudyError(Exception):
    """Base class of every deliberate maskstudy error."""


class ConfigError(MaskstudyError, ValueError):
    """A configuration, sweep file or argument is invalid."""


class DataError(MaskstudyError, ValueError):
    """A dataset file is missing, damaged or of the wrong shape."""


class StoreError(MaskstudyError):
    """A run directory is missing, damaged, or holds another config."""
