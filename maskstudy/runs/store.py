"""A run directory (design.md §3): config, θ0/θk, and per level a packed mask, weights, metrics, DONE.

A level is complete only when its DONE file exists; DONE is written last and records the sha256 of
every file of the level, so a half-written or altered file is detected on read.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import maskstudy
from maskstudy.errors import StoreError
from maskstudy.pruning.masks import Mask
from maskstudy.runs.config import RunConfig
from maskstudy.runs.files import (
    pack_mask,
    read_bytes,
    read_json,
    tensors_from_bytes,
    tensors_to_bytes,
    unpack_mask,
    write_atomic,
    write_json,
)

WEIGHT_FILES = {"init": "init.safetensors", "rewind": "rewind.safetensors"}
LEVEL_FILES = ("mask.safetensors", "final.safetensors", "metrics.json")
START_FILE = "start.safetensors"  # only for regimes whose starting weights are not θ0/θk/final
SIDE_FILES = (".lock", "error.txt")  # a sweep's lock and failure record may precede config.json


def level_dir(run_dir: Path, level: int) -> Path:
    return Path(run_dir) / "levels" / f"{level:02d}"


def versions() -> dict[str, str]:
    return {
        "maskstudy": maskstudy.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


class Run:
    """Read access to one run directory (contract: ``maskstudy.open_run``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        info_path = self.path / "config.json"
        if not info_path.is_file():
            raise StoreError(
                f"{self.path} is not a maskstudy run directory (no config.json); "
                "pass the directory printed by `maskstudy run`"
            )
        self.info: dict[str, Any] = read_json(info_path)
        try:
            self.config = RunConfig.from_dict(self.info["config"])
        except KeyError as e:
            raise StoreError(f"{info_path} has no {e} entry; the file is damaged") from e
        self.run_id: str = self.info.get("run_id", self.path.name)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, levels={self.levels})"

    # --- levels -------------------------------------------------------------------------------
    @property
    def levels(self) -> list[int]:
        """Completed levels (those with a DONE file), in order."""
        root = self.path / "levels"
        if not root.is_dir():
            return []
        return sorted(
            int(d.name) for d in root.iterdir() if d.name.isdigit() and (d / "DONE").is_file()
        )

    def _done(self, level: int) -> dict[str, Any]:
        path = level_dir(self.path, level) / "DONE"
        if not path.is_file():
            raise StoreError(
                f"level {level} of {self.path} is not complete (no {path.name}); "
                f"completed levels: {self.levels}"
            )
        return read_json(path)

    def _level_file(self, level: int, name: str) -> bytes:
        sha = self._done(level)["files"].get(name)
        return read_bytes(level_dir(self.path, level) / name, sha)

    def mask(self, level: int) -> Mask:
        """The mask training ran with at ``level`` (True = kept)."""
        path = level_dir(self.path, level) / "mask.safetensors"
        return unpack_mask(self._level_file(level, "mask.safetensors"), path)

    def weights(self, level: int | None = None, which: str = "final") -> dict[str, torch.Tensor]:
        """Weights of a level: ``final`` (trained), ``start`` (what its training began from);
        or the run's θ0 (``init``) / θk (``rewind``)."""
        if which == "final":
            return self._level_tensors(level, "final.safetensors", which)
        if which == "start":
            return self._start(level)
        if which not in WEIGHT_FILES:
            raise StoreError(
                f"which = {which!r}; choose one of: final, start, {', '.join(WEIGHT_FILES)}"
            )
        path = self.path / WEIGHT_FILES[which]
        if not path.is_file():
            hint = (
                " (this run rewinds to 0it, so θk = θ0: use which='init')"
                if which == "rewind"
                else ""
            )
            raise StoreError(f"missing file {path}{hint}")
        sha = self.info.get("files", {}).get(path.name)
        return tensors_from_bytes(read_bytes(path, sha), path)[0]

    def _level_tensors(self, level: int | None, name: str, which: str) -> dict[str, torch.Tensor]:
        if level is None:
            raise StoreError(f"weights(which={which!r}) needs a level")
        path = level_dir(self.path, level) / name
        return tensors_from_bytes(self._level_file(level, name), path)[0]

    def _start(self, level: int | None) -> dict[str, torch.Tensor]:
        """The unmasked weights level ``level`` started from (the mask is applied on top)."""
        if level is None:
            raise StoreError("weights(which='start') needs a level")
        if level == 0:
            return self.weights(which="init")
        if START_FILE in self._done(level).get("files", {}):
            return self._level_tensors(level, START_FILE, "start")
        if self.config.regime == "finetune":
            return self.weights(level - 1)
        return self.weights(
            which="rewind" if (self.path / WEIGHT_FILES["rewind"]).is_file() else "init"
        )

    def level_metrics(self, level: int) -> dict[str, Any]:
        path = level_dir(self.path, level) / "metrics.json"
        try:
            return json.loads(self._level_file(level, "metrics.json"))
        except json.JSONDecodeError as e:
            raise StoreError(f"{path} is not valid JSON; the file is damaged") from e

    def metrics(self) -> pd.DataFrame:
        """One row per completed level: accuracy, loss, % remaining, per-layer densities, time."""
        rows = []
        for level in self.levels:
            m = dict(self.level_metrics(level))
            for name, d in m.pop("layer_density", {}).items():
                m[f"density[{name}]"] = d
            rows.append(m)
        return pd.DataFrame(rows)

    def history(self) -> pd.DataFrame:
        """Every evaluation of every completed level (level, step, epoch, lr, losses, accuracies)."""
        path = self.path / "history.jsonl"
        if not path.is_file():
            return pd.DataFrame()
        rows = [json.loads(line) for line in read_bytes(path).decode().splitlines() if line]
        done = set(self.levels)
        return pd.DataFrame([r for r in rows if r["level"] in done])


def open_run(path: str | Path) -> Run:
    """Open a run directory for reading (contract)."""
    return Run(path)


# --- writing -------------------------------------------------------------------------------------
def create_run(run_dir: Path, cfg: RunConfig) -> Run:
    """Create ``run_dir`` for ``cfg``, or reopen it if it holds the same config (levels may differ).

    A directory holding another config is never touched: StoreError.
    """
    run_dir = Path(run_dir)
    info_path = run_dir / "config.json"
    if info_path.is_file():
        run = Run(run_dir)
        old, new = run.config.to_dict(), cfg.to_dict()
        old.pop("levels"), new.pop("levels")
        if old != new:
            diff = sorted(k for k in new if old.get(k) != new[k])
            raise StoreError(
                f"{run_dir} already holds a run with a different config (differs in: "
                f"{', '.join(diff)}); nothing was written. Use another --out directory."
            )
        if cfg.levels > run.config.levels:
            run.info["config"]["levels"] = cfg.levels
            write_json(info_path, run.info)
            run.config = cfg
        return run
    if run_dir.exists() and any(p.name not in SIDE_FILES for p in run_dir.iterdir()):
        raise StoreError(
            f"{run_dir} exists and is not a maskstudy run directory (no config.json); "
            "nothing was written. Choose an empty or new directory."
        )
    info = {
        "run_id": cfg.run_id(),
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "versions": versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {},
    }
    write_json(info_path, info)
    return Run(run_dir)


def save_weights(run: Run, which: str, state: dict[str, torch.Tensor]) -> None:
    """Write θ0 or θk and record its sha256 in config.json."""
    path = run.path / WEIGHT_FILES[which]
    run.info.setdefault("files", {})[path.name] = write_atomic(path, tensors_to_bytes(state))
    write_json(run.path / "config.json", run.info)


def save_level(
    run: Run,
    level: int,
    mask: Mask,
    final: dict[str, torch.Tensor],
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    start: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write one level's files atomically, append its curve to history.jsonl, then DONE.

    ``start`` (the weights training began from) is stored only when it cannot be derived from
    θ0, θk or the previous level (reinitialisation)."""
    directory = level_dir(run.path, level)
    (directory / "DONE").unlink(missing_ok=True)
    files = {
        "mask.safetensors": write_atomic(directory / "mask.safetensors", pack_mask(mask)),
        "final.safetensors": write_atomic(directory / "final.safetensors", tensors_to_bytes(final)),
        "metrics.json": write_atomic(
            directory / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode()
        ),
    }
    if start is not None:
        files[START_FILE] = write_atomic(directory / START_FILE, tensors_to_bytes(start))
    hist_path = run.path / "history.jsonl"
    old = []
    if hist_path.is_file():
        old = [json.loads(x) for x in read_bytes(hist_path).decode().splitlines() if x]
    rows = [r for r in old if r["level"] < level] + [{"level": level, **r} for r in history]
    write_atomic(hist_path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    write_json(directory / "DONE", {"files": files})
