"""Pruning criteria registry."""

from maskstudy.registry import Registry

CRITERIA: Registry = Registry("criterion")
