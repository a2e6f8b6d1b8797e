"""A run directory (docs/architecture.md): config, θ0/θk, and per level a packed mask, weights, metrics, DONE.

A level is complete only when its DONE file exists; DONE is written last and records the sha256
and size of every file of the level and the sha256 and count of its rows of history.jsonl, so a
half-written or altered file is detected on read (``maskstudy.runs.verify`` checks a whole run).
DONE also keeps the level's wall time, the one timing of a level: every hashed file is the same
bytes however the level was trained (grouped, alone, resumed).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from maskstudy.data import default_root, from_config
from maskstudy.errors import ConfigError, StoreError
from maskstudy.files import (
    digest,
    is_temp_file,
    pack_mask,
    pack_weights,
    read_bytes,
    read_json,
    tensors_from_bytes,
    tensors_to_bytes,
    unpack_mask,
    unpack_weights,
    write_atomic,
    write_json,
)
from maskstudy.masks import Mask, apply_mask_
from maskstudy.models import build
from maskstudy.pruning.drop import revived_start
from maskstudy.runs.config import RunConfig
from maskstudy.runs.gradual import UPDATES_FILE, unpack_updates
from maskstudy.runs.regimes import FRESH_EACH_LEVEL, MOVED_REGIMES

CONFIG_FILE = "config.json"  # a directory holding it is a run directory
DONE_FILE = "DONE"  # a level directory holding it is a completed level
MASK_FILE, FINAL_FILE, METRICS_FILE = "mask.safetensors", "final.safetensors", "metrics.json"
WEIGHT_FILES = {"init": "init.safetensors", "rewind": "rewind.safetensors"}
LEVEL_FILES = (MASK_FILE, FINAL_FILE, METRICS_FILE)
START_FILE = "start.safetensors"  # only for regimes whose starting weights are not θ0/θk/final
HISTORY_FILE = "history.jsonl"
CHECKPOINT_FILE = "checkpoint.safetensors"  # a level's training state while it trains
SCHEMA = 2  # config.json format: 2 = regimes as named since branches (finetune at the final LR)
INFO_TABLES = ("files", "sizes", "parent")  # config.json keys holding tables, when present
SIDE_FILES = (".lock", "error.txt")  # a sweep's lock and failure record may precede config.json


def level_dir(run_dir: Path, level: int) -> Path:
    return Path(run_dir) / "levels" / f"{level:02d}"


def versions() -> dict[str, str]:
    """What trained the run: package versions and the CPU's vector unit as torch uses it (a
    seed trains the same bytes on one machine; AVX2 and AVX-512 kernels round differently)."""
    return {
        "maskstudy": version("maskstudy"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}",
    }


class Run:
    """Read access to one run directory (contract: ``maskstudy.open_run``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        info_path = self.path / CONFIG_FILE
        if not info_path.is_file():
            raise StoreError(
                f"{self.path} is not a maskstudy run directory (no config.json); "
                "pass the directory printed by `maskstudy run`"
            )
        self.info: dict[str, Any] = read_json(info_path)
        if not isinstance(self.info, dict) or not isinstance(self.info.get("config"), dict):
            raise StoreError(f"{info_path} has no 'config' table; the file is damaged")
        check_tables(self.info, info_path)
        try:
            self.config = RunConfig.from_dict(legacy_config(self.info, info_path))
        except ConfigError as e:
            raise StoreError(
                f"{info_path} holds an invalid config ({e}); the file is damaged"
            ) from e
        self.run_id: str = self.info.get("run_id", self.path.name)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, levels={self.levels})"

    @property
    def parent(self) -> Run | None:
        """The run whose masks this branch trains (None for an ordinary run)."""
        if not self.config.is_branch:
            return None
        where = self.info.get("parent", {}).get("path")
        if not isinstance(where, str):
            raise StoreError(f"{self.path / 'config.json'} records no parent path; it is damaged")
        parent = Run((self.path / where).resolve())
        if parent.run_id != self.config.branch.parent:
            raise StoreError(
                f"{parent.path} holds run {parent.run_id}, not this branch's parent "
                f"{self.config.branch.parent}; the parent directory was moved or replaced"
            )
        return parent

    # --- levels -------------------------------------------------------------------------------
    @property
    def levels(self) -> list[int]:
        """Completed levels (those with a DONE file), in order."""
        root = self.path / "levels"
        if not root.is_dir():
            return []
        return sorted(
            int(d.name) for d in root.iterdir() if d.name.isdigit() and (d / DONE_FILE).is_file()
        )

    def _done(self, level: int) -> dict[str, Any]:
        path = level_dir(self.path, level) / DONE_FILE
        if not path.is_file():
            raise StoreError(
                f"level {level} of {self.path} is not complete (no {path.name}); "
                f"completed levels: {self.levels}"
            )
        done = read_json(path)
        if not isinstance(done, dict) or not isinstance(done.get("files"), dict):
            raise StoreError(f"{path} does not list the level's files; the file is damaged")
        return done

    def _level_file(self, level: int, name: str) -> bytes:
        path = level_dir(self.path, level) / name
        sha = self._done(level)["files"].get(name)
        if sha is None:
            raise StoreError(f"{path} is not recorded in its level's DONE; the level is damaged")
        return read_bytes(path, sha)

    def mask(self, level: int) -> Mask:
        """The mask training ran with at ``level`` (True = kept)."""
        path = level_dir(self.path, level) / MASK_FILE
        return unpack_mask(self._level_file(level, MASK_FILE), path)

    def weights(self, level: int | None = None, which: str = "final") -> dict[str, torch.Tensor]:
        """Weights of a level: ``final`` (trained), ``start`` (what its training began from);
        or the run's θ0 (``init``) / θk (``rewind``)."""
        if which == "final":
            if level is None:
                raise StoreError("weights(which='final') needs a level")
            path = level_dir(self.path, level) / FINAL_FILE
            return unpack_weights(self._level_file(level, FINAL_FILE), path, self.mask(level))
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
        if sha is None:
            raise StoreError(
                f"{path} is not recorded in config.json (its run was killed while saving it); "
                "run the config again to complete it"
            )
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
        if level > 0 and self.config.rule.start == FRESH_EACH_LEVEL:  # stored with the level
            return self._level_tensors(level, START_FILE, "start")
        return inherited_start(self, level, self.mask(level))

    @property
    def data_root(self) -> Path | None:
        """The data folder the run last trained from (None: not recorded, or gone since)."""
        where = self.info.get("data_root")
        return Path(where) if where is not None and Path(where).is_dir() else None

    def model(
        self, level: int, which: str = "final", data_root: str | Path | None = None
    ) -> nn.Module:
        """The network of ``level`` ready to use: ``weights(level, which)`` loaded, the level's
        mask applied, in eval mode, on the CPU. The input shape comes from config.json (runs
        before it was recorded load their dataset's shape from ``data_root``, by default the
        folder the run trained from)."""
        record = self.info.get("inputs")
        if record is None:
            data = from_config(self.config.data, data_root or self.data_root)
            shape, classes = data.input_shape, data.num_classes
        else:
            shape, classes = tuple(record["shape"]), int(record["classes"])
        m = self.config.model
        net = build(m.name, shape, classes, init=m.init, width=m.width, seed=self.config.seed)
        net.load_state_dict(self.weights(level, which))
        apply_mask_(net, self.mask(level))
        return net.eval()

    def mask_updates(self, level: int) -> list[tuple[int, Mask]]:
        """(step, mask) of every mask update inside a gradual level's training; [] otherwise."""
        if UPDATES_FILE not in self._done(level)["files"]:
            return []
        path = level_dir(self.path, level) / UPDATES_FILE
        return unpack_updates(self._level_file(level, UPDATES_FILE), path)

    def level_metrics(self, level: int) -> dict[str, Any]:
        path = level_dir(self.path, level) / METRICS_FILE
        try:
            metrics = json.loads(self._level_file(level, METRICS_FILE))
        except json.JSONDecodeError as e:
            raise StoreError(f"{path} is not valid JSON; the file is damaged") from e
        timing = self._done(level).get("seconds")  # kept in DONE, out of the hashed files
        return metrics if timing is None else {**metrics, "seconds": timing}

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
        path = self.path / HISTORY_FILE
        levels = self.levels
        if not path.is_file() and not any("history" in self._done(lv) for lv in levels):
            return pd.DataFrame()  # nothing recorded yet (or a run from before DONE did)
        lines = history_lines(path)
        rows = []
        for level in levels:
            mine = [line for lv, line in lines if lv == level]
            recorded = self._done(level).get("history")
            if recorded is not None and digest("".join(mine).encode()) != recorded:
                raise StoreError(
                    f"{path} is damaged: the rows of level {level} differ from those recorded in "
                    "its DONE; run `maskstudy verify` on the run directory"
                )
            rows += [json.loads(line) for line in mine]
        return pd.DataFrame(rows)


def check_tables(info: dict[str, Any], path: Path) -> None:
    """StoreError unless the tables config.json may hold (files and sizes by file name, the
    parent record and its masks) are tables: readers look names up in them."""
    tables = {key: info.get(key) for key in INFO_TABLES}
    if isinstance(info.get("parent"), dict):
        tables["parent.masks"] = info["parent"].get("masks", {})
    for key, value in tables.items():
        if value is not None and not isinstance(value, dict):
            raise StoreError(
                f"{path}: {key!r} is {type(value).__name__} {value!r:.60}, not a table; the file "
                "is damaged. Run `maskstudy verify` on the run directory"
            )


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory (it holds the run's config.json)."""
    return (Path(path) / CONFIG_FILE).is_file()


def levels_done(run_dir: str | Path) -> list[int]:
    """The completed levels of a run directory ([] before its config.json exists)."""
    return Run(run_dir).levels if is_run_dir(run_dir) else []


def history_lines(path: Path) -> list[tuple[int, str]]:
    """(level, line with its newline) of every row of a history.jsonl; StoreError if damaged."""
    *lines, last = read_bytes(path).decode(errors="replace").split("\n")
    if last:
        raise StoreError(f"{path} ends inside a line; the file is truncated")
    out = []
    for number, line in enumerate(lines, 1):
        try:
            level = json.loads(line)["level"]
        except (json.JSONDecodeError, TypeError, KeyError):
            level = None
        if not isinstance(level, int):
            raise StoreError(
                f"{path} line {number} is not a row of a level ({line[:60]!r}); the file is "
                "damaged. Run `maskstudy verify` on the run directory"
            )
        out.append((level, line + "\n"))
    return out


def inherited_start(run: Run, level: int, mask: Mask) -> dict[str, torch.Tensor]:
    """The weights level ``level`` (pruned to ``mask``) starts from unless they are drawn fresh
    (reinit_prune): θ0 at level 0; finetune and lr_rewind: level L−1's trained weights, the
    parent's for a branch (Drop Pruning with ``prune.drop.revive = "last"``: revived weights at their
    last alive value); every other rule: the run's own θk (θ0 when it rewinds to 0it; a
    reinit or scratch branch's θ0 is its fresh init)."""
    if level == 0:
        return run.weights(which="init")
    if run.config.rule.continues:
        source = run.parent or run
        if run.config.prune.drop.revive == "last":
            return revived_start(source.weights, source.mask, level, mask)
        return source.weights(level - 1)
    rewound = WEIGHT_FILES["rewind"] in run.info.get("files", {})  # θk exists iff k > 0
    return run.weights(which="rewind" if rewound else "init")


def legacy_config(info: dict[str, Any], where: Path) -> dict[str, Any]:
    """The stored config, with regimes renamed when it predates branches (schema 1): its
    'finetune' replayed the schedule (now 'lr_rewind') and its 'reinit' pruned again
    ('reinit_prune'); its scratch and random-mask regimes have no run equivalent."""
    config = info["config"]
    if info.get("schema", 1) >= SCHEMA:
        return config
    regime = config.get("regime", "rewind")
    renamed = {"finetune": "lr_rewind", "reinit": "reinit_prune"}
    if regime in renamed:
        return {**config, "regime": renamed[regime]}
    if regime in MOVED_REGIMES:
        raise StoreError(
            f"{where} is a regime = {regime!r} run from before branches, which pruned its own "
            f"weights; that experiment is not offered any more: {MOVED_REGIMES[regime]}"
        )
    return config


def open_run(path: str | Path) -> Run:
    """Open a run directory for reading (contract)."""
    return Run(path)


# --- writing -------------------------------------------------------------------------------------
def _identity(cfg: RunConfig) -> dict[str, Any]:
    """The config without what only says how much of the run to train."""
    d = cfg.to_dict()
    d.pop("levels")
    d["branch"].pop("first")
    return d


def _parent_record(run_dir: Path, parent: Run) -> dict[str, Any]:
    """Where a branch's parent lies (relative to the branch when they share a root) and the
    sha256 of each parent mask the branch trains, filled in level by level."""
    try:
        where = os.path.relpath(parent.path.resolve(), run_dir.resolve())
    except ValueError:  # another drive (Windows)
        where = str(parent.path.resolve())
    return {"run_id": parent.run_id, "path": where, "masks": {}}


def create_run(
    run_dir: Path,
    cfg: RunConfig,
    parent: Run | None = None,
    inputs: tuple[tuple[int, ...], int] | None = None,
    data_root: str | None = None,
) -> Run:
    """Create ``run_dir`` for ``cfg``, or reopen it if it holds the same config (levels may differ).

    ``inputs`` (the data's input shape and class count) is recorded so that ``Run.model`` can
    build the network without loading the data, and ``data_root``, the absolute data folder it
    trains from (:func:`data_folder`; None: the record stays as it is), so that ``lmc`` finds
    its data again. A directory holding another config is never touched: StoreError.
    """
    run_dir = Path(run_dir)
    info_path = run_dir / CONFIG_FILE
    if info_path.is_file():
        run = Run(run_dir)
        old, new = _identity(run.config), _identity(cfg)
        if old != new:
            diff = sorted(k for k in new if old.get(k) != new[k])
            raise StoreError(
                f"{run_dir} already holds a run with a different config (differs in: "
                f"{', '.join(diff)}); nothing was written. Use another --out directory."
            )
        have = run.config.level_range()
        first, last = min(have.start, cfg.level_range().start), max(have.stop, cfg.levels + 1) - 1
        if (first, last) != (have.start, have.stop - 1):  # asked for more: the run grows
            run.info["config"]["levels"] = last
            if cfg.is_branch:
                run.info["config"]["branch"]["first"] = first
            write_json(info_path, run.info)
            run.config = RunConfig.from_dict(run.info["config"])
        record = {"data_root": data_root} if data_root is not None else {}
        if inputs is not None and "inputs" not in run.info:  # a run from before the record
            record["inputs"] = _inputs_record(inputs)
        if any(run.info.get(key) != value for key, value in record.items()):
            run.info.update(record)
            write_json(info_path, run.info)
        return run
    others = [
        p  # a lock, an error record and temp files of a killed first write are ours
        for p in (run_dir.iterdir() if run_dir.exists() else [])
        if p.name not in SIDE_FILES and not is_temp_file(p)
    ]
    if others:
        raise StoreError(
            f"{run_dir} exists and is not a maskstudy run directory (no config.json); "
            "nothing was written. Choose an empty or new directory."
        )
    if cfg.is_branch and parent is None:
        raise StoreError(f"{run_dir}: a branch is created with its parent run directory")
    info = {
        "run_id": cfg.run_id(),
        "schema": SCHEMA,
        "config": cfg.to_dict(),
        **({"parent": _parent_record(run_dir, parent)} if parent is not None else {}),
        "seed": cfg.seed,
        **({"inputs": _inputs_record(inputs)} if inputs is not None else {}),
        **({"data_root": data_root} if data_root is not None else {}),
        "versions": versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {},
    }
    write_json(info_path, info)
    return Run(run_dir)


def _inputs_record(inputs: tuple[tuple[int, ...], int]) -> dict[str, Any]:
    shape, classes = inputs
    return {"shape": list(shape), "classes": int(classes)}


def data_folder(root: str | Path | None) -> str:
    """The data folder a run trains from, absolute (default: the one ``load`` would use)."""
    return str(Path(root if root is not None else default_root()).expanduser().resolve())


def record_parent_mask(run: Run, level: int) -> None:
    """Record in a branch's config.json the sha256 of the parent mask its ``level`` trains."""
    parent = run.parent
    sha = parent._done(level)["files"][MASK_FILE]
    record = run.info["parent"]
    if record["masks"].get(str(level)) != sha:
        record["masks"][str(level)] = sha
        write_json(run.path / CONFIG_FILE, run.info)


def save_weights(run: Run, which: str, state: dict[str, torch.Tensor]) -> None:
    """Write θ0 or θk and record its sha256 in config.json."""
    path, data = run.path / WEIGHT_FILES[which], tensors_to_bytes(state)
    run.info.setdefault("files", {})[path.name] = write_atomic(path, data)
    run.info.setdefault("sizes", {})[path.name] = len(data)
    write_json(run.path / CONFIG_FILE, run.info)


def save_level(
    run: Run,
    level: int,
    mask: Mask,
    final: dict[str, torch.Tensor],
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    start: dict[str, torch.Tensor] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> None:
    """Write one level's files atomically, replace its rows of history.jsonl, then DONE.

    ``start`` (the weights training began from) is stored only when it cannot be derived from
    θ0, θk or the previous level (reinitialisation). ``extra_files`` are more level files by name
    (a gradual level's mask updates), recorded in DONE like the others."""
    directory = level_dir(run.path, level)
    done = directory / DONE_FILE
    try:
        done.unlink(missing_ok=True)
    except OSError as e:
        raise StoreError(f"could not remove {done}: {e.strerror or e}") from e
    # the wall time goes to DONE, outside every hashed file: a level's files are the same bytes
    # however fast it trained
    untimed = {k: v for k, v in metrics.items() if k != "seconds"}
    timing = {"seconds": metrics["seconds"]} if "seconds" in metrics else {}
    contents = {
        MASK_FILE: pack_mask(mask),
        FINAL_FILE: pack_weights(final, mask),
        METRICS_FILE: (json.dumps(untimed, indent=2) + "\n").encode(),
    }
    if start is not None:
        contents[START_FILE] = tensors_to_bytes(start)
    contents.update(extra_files or {})
    files = {name: write_atomic(directory / name, data) for name, data in contents.items()}
    hist_path = run.path / HISTORY_FILE
    lines = [x for x in history_lines(hist_path) if x[0] != level] if hist_path.is_file() else []
    rows = "".join(json.dumps({"level": level, **r}) + "\n" for r in history)
    lines += [(level, rows)]
    lines.sort(key=lambda x: x[0])  # stable: each level's rows keep their order
    write_atomic(hist_path, "".join(x for _, x in lines).encode())
    sizes = {name: len(data) for name, data in contents.items()}
    curve = {"history": digest(rows.encode()), "history_rows": len(history)}
    # the level's checkpoint has served; gone before DONE, so no completed level keeps one
    (directory / CHECKPOINT_FILE).unlink(missing_ok=True)
    write_json(done, {"files": files, "sizes": sizes, **curve, **timing})


@dataclass
class LevelCheckpoints:
    """A replica group's in-level checkpoints (train/checkpoint.py): the same file in each
    member's level directory, naming the group's members, so any member's copy resumes the
    group and a checkpoint of another grouping is never used."""

    dirs: list[Path]
    members: list[str]
    every: float  # seconds between checkpoints

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        paths = [d / CHECKPOINT_FILE for d in self.dirs]
        if not all(p.is_file() for p in paths):
            return None
        data = [read_bytes(p) for p in paths]
        if any(d != data[0] for d in data):  # killed while writing them: start the level anew
            return None
        try:
            tensors, meta = tensors_from_bytes(data[0], paths[0])
            state = json.loads(meta["checkpoint"])
        except (StoreError, KeyError, json.JSONDecodeError):  # damaged: start the level anew
            return None
        return (tensors, state) if state.get("members") == self.members else None

    def save(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        text = json.dumps({**meta, "members": self.members})  # rows keep their column order
        data = tensors_to_bytes(tensors, {"checkpoint": text})
        for directory in self.dirs:
            write_atomic(directory / CHECKPOINT_FILE, data)
