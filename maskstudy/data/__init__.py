"""Dataset registry and loading: every dataset by name, returned as a ready-to-train :class:`Data`.

A registry entry is a loader ``(root: Path, **options) -> (train, test, num_classes)`` giving
normalised CPU splits; :func:`load` adds the validation hold-out, the device and augmentation.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from maskstudy.data.base import Data, hold_out
from maskstudy.data.config import DataConfig
from maskstudy.data.datasets import DATASETS, Loader
from maskstudy.errors import ConfigError

DATA_ENV = "MASKSTUDY_DATA"


def default_root() -> Path:
    """The data folder: ``$MASKSTUDY_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_ENV) or "data").expanduser()


def load(
    name: str,
    root: str | Path | None = None,
    *,
    device: Any = "cpu",
    val_size: int = 0,
    seed: int = 0,
    augment: bool = False,
    **options: Any,
) -> Data:
    """Load dataset ``name`` from ``root`` (default :func:`default_root`) onto ``device``.

    ``val_size`` training examples (chosen by ``seed``) become ``Data.val``; normalisation uses
    the whole training set's statistics. ``options`` go to the dataset's loader.
    """
    loader = DATASETS.get(name)
    _check_options(name, loader, options)
    train, test, num_classes = loader(Path(root) if root is not None else default_root(), **options)
    val = None
    if val_size:
        if (
            isinstance(val_size, bool)
            or not isinstance(val_size, int)
            or not 0 < val_size < len(train)
        ):
            raise ConfigError(
                f"val_size = {val_size!r} must be an integer from 0 to {len(train) - 1} "
                f"({name} has {len(train)} training examples)"
            )
        train, val = hold_out(train, val_size, seed)
    if augment and train.x.dim() != 4:
        raise ConfigError(
            f"augment = true needs image inputs (C, H, W), but {name} inputs have shape "
            f"{tuple(train.x.shape[1:])}; set augment = false"
        )
    return Data(name, train, test, num_classes, val, augment).to(device)


def from_config(cfg: DataConfig, root: str | Path | None = None, device: Any = "cpu") -> Data:
    """:func:`load` for a run's :class:`DataConfig` (``synthetic_*`` fields become options)."""
    options: dict[str, Any] = {}
    if cfg.name == "synthetic":
        options = {
            "shape": tuple(cfg.synthetic_shape),
            "classes": cfg.synthetic_classes,
            "size": cfg.synthetic_size,
        }
    return load(
        cfg.name, root, device=device, val_size=cfg.val_size, augment=cfg.augment, **options
    )


def _check_options(name: str, loader: Loader, options: dict[str, Any]) -> None:
    """ConfigError naming the unknown options and the ones the loader accepts."""
    params = inspect.signature(loader).parameters
    accepted = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"dataset {name!r} has no option {', '.join(unknown)}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )
