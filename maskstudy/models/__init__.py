"""Model registry: every architecture by name."""

from maskstudy.registry import Registry

MODELS: Registry = Registry("model")
