"""Dataset registry: every dataset by name."""

from maskstudy.registry import Registry

DATASETS: Registry = Registry("dataset")
