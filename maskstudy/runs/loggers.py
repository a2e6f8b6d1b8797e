"""Experiment logging: every evaluation of a run streamed, as it happens, to CSV, TensorBoard or
Weights & Biases (``--log`` on the command line, ``log = [...]`` in a sweep file).

One maskstudy run is one logged run, written inside the run's directory, so
``tensorboard --logdir sweeps/pf`` shows every run of a sweep by its path and nothing lands
outside the sweep. Each evaluation row carries step, epoch, lr, losses and accuracies; the
loggers add the level and its density: the fraction of prunable weights the level trains
(for a gradual level, the one it starts with).

- ``csv``: ``<run>/log.csv``, one line per evaluation, appended (``tail -f`` it).
- ``tensorboard``: ``<run>/tensorboard/``; the curves of level L under ``level_L/...`` against
  the iteration within the level, and the final values of each level under ``by_level/...``
  against the level. Needs ``pip install 'maskstudy[tensorboard]'``.
- ``wandb``: ``<run>/wandb/``, offline unless ``WANDB_MODE`` says otherwise (``wandb sync``
  uploads it later), the run named and identified by its run id with its config attached.
  Needs ``pip install 'maskstudy[wandb]'``.

The history of record stays ``history.jsonl``; a level resumed from a checkpoint logs again
the evaluations made after that checkpoint.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from maskstudy.errors import ConfigError, did_you_mean
from maskstudy.runs.config import RunConfig

CSV_COLUMNS = (
    "level",
    "step",
    "epoch",
    "lr",
    "density",
    "train_loss",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
)


class Logger(Protocol):
    def evaluation(self, level: int, density: float, row: Mapping[str, float]) -> None: ...

    def level_done(self, level: int, metrics: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class CsvLog:
    """``<run>/log.csv``: one line per evaluation, flushed at once."""

    def __init__(self, run_dir: Path, cfg: RunConfig) -> None:
        path = run_dir / "log.csv"
        new = not path.exists()
        self._file = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, CSV_COLUMNS, extrasaction="ignore")
        if new:
            self._writer.writeheader()

    def evaluation(self, level: int, density: float, row: Mapping[str, float]) -> None:
        self._writer.writerow({**row, "level": level, "density": density})
        self._file.flush()

    def level_done(self, level: int, metrics: Mapping[str, Any]) -> None:
        pass  # every evaluation is already a line

    def close(self) -> None:
        self._file.close()


class TensorBoardLog:
    """``<run>/tensorboard/``: per-level curves and the by-level summary."""

    def __init__(self, run_dir: Path, cfg: RunConfig) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        text = json.dumps(cfg.to_dict(), indent=2)
        self._writer.add_text("config", f"run {cfg.run_id()}\n\n```\n{text}\n```")

    def evaluation(self, level: int, density: float, row: Mapping[str, float]) -> None:
        step = int(row["step"])
        for key, value in row.items():
            if key != "step":
                self._writer.add_scalar(f"level_{level:02d}/{key}", value, step)
        self._writer.add_scalar(f"level_{level:02d}/density", density, step)
        self._writer.flush()

    def level_done(self, level: int, metrics: Mapping[str, Any]) -> None:
        for key in ("test_acc", "test_loss", "val_acc", "val_loss", "percent_remaining"):
            if key in metrics:
                self._writer.add_scalar(f"by_level/{key}", metrics[key], level)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbLog:
    """A Weights & Biases run in ``<run>/wandb/``, offline by default."""

    def __init__(self, run_dir: Path, cfg: RunConfig) -> None:
        import wandb

        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "maskstudy"),
            name=cfg.run_id(),
            id=cfg.run_id(),
            config=cfg.to_dict(),
            dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),
            resume="allow",
            reinit="create_new",  # replicas trained side by side are runs of their own
            settings=wandb.Settings(silent=True, console="off"),  # maskstudy's output stays its own
        )

    def evaluation(self, level: int, density: float, row: Mapping[str, float]) -> None:
        self._run.log({**row, "level": level, "density": density})

    def level_done(self, level: int, metrics: Mapping[str, Any]) -> None:
        pass  # the evaluations hold every number; the summary keeps the last ones

    def close(self) -> None:
        self._run.finish()


# name -> (class, the package it needs, the extra that installs it)
LOGGERS: dict[str, tuple[type, str | None, str | None]] = {
    "csv": (CsvLog, None, None),
    "tensorboard": (TensorBoardLog, "tensorboard", "tensorboard"),
    "wandb": (WandbLog, "wandb", "wandb"),
}


def check_loggers(names: Iterable[str], where: str = "log") -> tuple[str, ...]:
    """``names`` as a tuple, once each is known and its package installed (ConfigError if not)."""
    if isinstance(names, str):
        names = [names]
    names = tuple(dict.fromkeys(names))
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(
                f"{where}: unknown logger {name!r}{did_you_mean(name, LOGGERS)}; "
                f"choose from {', '.join(LOGGERS)}"
            )
        _, package, extra = LOGGERS[name]
        if package is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"{where}: logger {name!r} needs the {package} package, which is not installed; "
                f"pip install 'maskstudy[{extra}]'"
            )
    return names


class RunLog:
    """The loggers of one run, opened when its training starts, closed when it ends."""

    def __init__(self, names: Sequence[str], run_dir: Path, cfg: RunConfig) -> None:
        self._loggers: list[Logger] = [LOGGERS[name][0](run_dir, cfg) for name in names]

    def evaluation(self, level: int, density: float, row: Mapping[str, float]) -> None:
        for logger in self._loggers:
            logger.evaluation(level, density, row)

    def level_done(self, level: int, metrics: Mapping[str, Any]) -> None:
        for logger in self._loggers:
            logger.level_done(level, metrics)

    def close(self) -> None:
        for logger in self._loggers:
            logger.close()
