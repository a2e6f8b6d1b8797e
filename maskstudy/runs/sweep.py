"""Sweep files (TOML) → lists of run configs, and reading a sweep directory back as one table.

A sweep file names a base config (a preset and/or a ``[base]`` table), grid axes (cartesian
product), tied axes that vary together, and seeds::

    preset = "lenet300_digits"
    levels = 5
    seeds = [0, 1, 2]
    [base]
    train.lr = 0.01
    [grid]
    "prune.criterion" = ["magnitude", "random"]
    regime = ["rewind", "finetune"]
    [[tied]]
    "prune.amount" = [0.2, 0.5]
    "train.duration" = ["4ep", "8ep"]
    [slurm]
    timeout_min = 120
    [branches]                          # controls trained on the runs' masks (runs/branch.py)
    kinds = ["reinit", "random_mask"]
    of = { regime = "rewind" }          # optional: which runs are parents (default: all)

A sweep directory holds ``sweep.toml`` and ordinary run directories, so everything that reads
one run reads a sweep.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from maskstudy.errors import ConfigError, MaskstudyError, StoreError, did_you_mean
from maskstudy.files import is_temp_file, write_atomic
from maskstudy.runs.branch import branch_config, waiting_for
from maskstudy.runs.config import RunConfig, current_path
from maskstudy.runs.lock import run_state
from maskstudy.runs.loggers import check_loggers
from maskstudy.runs.presets import get_preset
from maskstudy.runs.run import preflight
from maskstudy.runs.store import Run, is_run_dir
from maskstudy.runs.table import ALIASES, config_columns, flatten, runs_frame

SWEEP_FILE = "sweep.toml"
TOP_LEVEL = (
    "preset",
    "base",
    "levels",
    "seeds",
    "grid",
    "tied",
    "branches",
    "slurm",
    "name",
    "description",
    "log",
)
BRANCH_KEYS = ("kinds", "of", "seeds", "set")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file: the configs it expands to and the Slurm resources it asks for."""

    configs: list[RunConfig]  # the runs, then their branches
    slurm: dict[str, Any] = field(default_factory=dict)
    axes: tuple[str, ...] = ()  # the fields that vary across the sweep (dotted names)
    log: tuple[str, ...] = ()  # experiment loggers every run streams to (runs/loggers.py)


def _sections(cfg: Any, prefix: str = "") -> set[str]:
    """Dotted names of the config's nested sections ('train', 'prune', ...), which TOML may nest."""
    out = set()
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.add(prefix + f.name)
            out |= _sections(value, prefix + f.name + ".")
    return out


SECTIONS = _sections(RunConfig())


def dotted(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested TOML tables into dotted config paths; dict-valued fields stay values."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = prefix + key
        if isinstance(value, dict) and path in SECTIONS:
            out.update(dotted(value, path + "."))
        else:
            out[current_path(path)] = value
    return out


def _axis_values(name: str, values: Any, where: str) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise ConfigError(
            f"{where}: axis {name!r} must be a non-empty list of values, got {values!r}"
        )
    return values


def _table(spec: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = spec.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: {key} must be a table ([{key}] or {key} = {{...}}), got {value!r}"
        )
    return value


def _tied_groups(spec: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """The [[tied]] tables, flattened to dotted names."""
    groups = spec.get("tied", [])
    if not isinstance(groups, list):
        raise ConfigError(f"{where}: write tied axes as [[tied]] tables (a list of tables)")
    out = []
    for i, group in enumerate(groups, 1):
        if not isinstance(group, dict):
            raise ConfigError(f"{where}: tied group {i} must be a table of axes, got {group!r}")
        if not group:
            raise ConfigError(f"{where}: tied group {i} is empty; give it axes or remove it")
        out.append(dotted(group))
    return out


def grid_names(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The [grid] axes by dotted name."""
    return dotted(_table(spec, "grid", where))


def _points(spec: Mapping[str, Any], where: str) -> Iterator[dict[str, Any]]:
    """Every override dict of the grid × tied groups × seeds."""
    grid = grid_names(spec, where)
    axes = [[(name, v) for v in _axis_values(name, values, where)] for name, values in grid.items()]
    for group in _tied_groups(spec, where):
        lengths = {name: len(_axis_values(name, v, where)) for name, v in group.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"{where}: tied axes must have equal lengths, got {lengths}")
        n = next(iter(lengths.values()))
        axes.append([tuple((name, group[name][i]) for name in group) for i in range(n)])
    seeds = spec.get("seeds")
    if seeds is not None:
        if "seed" in grid:
            raise ConfigError(
                f"{where}: give seeds either as `seeds = [...]` or as a grid axis, not both"
            )
        axes.append([("seed", s) for s in _axis_values("seeds", seeds, where)])
    for combo in itertools.product(*axes):
        point: dict[str, Any] = {}
        for item in combo:
            pairs = item if isinstance(item[0], tuple) else (item,)
            point.update(dict(pairs))
        yield point


def parse_sweep(text: str, where: str = "sweep file") -> SweepSpec:
    """Parse the TOML text of a sweep file into its configs (every one validated)."""
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where} is not valid TOML: {e}") from None
    unknown = sorted(set(spec) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level key(s) {unknown}"
            f"{''.join(did_you_mean(k, TOP_LEVEL) for k in unknown)}; allowed: {', '.join(TOP_LEVEL)}"
        )
    preset = spec.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"{where}: preset = {preset!r} must be the name of a preset (a string)")
    overrides = dotted(_table(spec, "base", where))
    if "levels" in spec:
        overrides["levels"] = spec["levels"]
    slurm = _table(spec, "slurm", where)
    try:
        base = (get_preset(preset) if preset is not None else RunConfig()).replace(overrides)
        configs = [base.replace(point) for point in _points(spec, where)]
        configs += _branches(spec, configs, where)
    except ConfigError as e:
        raise ConfigError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None
    axes = sorted(set(grid_names(spec, where)) | {k for g in _tied_groups(spec, where) for k in g})
    repeated = [i for i, n in Counter(c.run_id() for c in configs).items() if n > 1]
    if repeated:
        written = ", ".join(axes + (["seeds"] if "seeds" in spec else [])) or "none"
        raise ConfigError(
            f"{where}: the sweep yields the same run more than once ({repeated[0]}); remove "
            f"repeated values or an axis given twice (axes: {written})"
        )
    if "seeds" in spec:
        axes.append("seed")
    if "branches" in spec:
        axes.append("branch.kind")
    log = spec.get("log", [])
    if not isinstance(log, list | str):
        raise ConfigError(f'{where}: log = {log!r} must be a list of loggers, e.g. log = ["csv"]')
    return SweepSpec(configs, dict(slurm), tuple(axes), check_loggers(log, f"{where}: log"))


def _branch_tables(spec: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """``[branches]`` or ``[[branches]]``, each checked for its keys."""
    tables = spec.get("branches", [])
    tables = [tables] if isinstance(tables, dict) else tables
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{where}: write branches as a [branches] table (or [[branches]] tables)")
    for table in tables:
        unknown = sorted(set(table) - set(BRANCH_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown} in [branches]"
                f"{''.join(did_you_mean(k, BRANCH_KEYS) for k in unknown)}; "
                f"allowed: {', '.join(BRANCH_KEYS)}"
            )
        kinds = table.get("kinds")
        if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
            raise ConfigError(
                f'{where}: [branches] needs kinds = [...], e.g. kinds = ["reinit", "scratch_b"]'
            )
    return tables


def _matches(cfg: RunConfig, of: Mapping[str, Any], where: str) -> bool:
    """Whether a run is a parent under the ``of`` filter (a value or a list of values per field)."""
    for path, wanted in dotted(of).items():
        try:
            value = _field(cfg, path)
        except AttributeError:
            raise ConfigError(
                f"{where}: [branches] of names {path!r}, which is not a config field"
            ) from None
        if value not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


def _branches(spec: Mapping[str, Any], runs: list[RunConfig], where: str) -> list[RunConfig]:
    """The branch configs of a sweep file: each kind of each [branches] table, for every run
    its ``of`` filter picks (and every seed of its ``seeds``, default the parent's)."""
    out = []
    for table in _branch_tables(spec, where):
        of, overrides = _table(table, "of", where), dotted(_table(table, "set", where))
        seeds = (
            _axis_values("branches.seeds", table["seeds"], where) if "seeds" in table else [None]
        )
        parents = [c for c in runs if _matches(c, of, where)]
        if not parents:
            raise ConfigError(f"{where}: [branches] of = {of!r} picks none of the sweep's runs")
        for parent in parents:
            out += [
                branch_config(parent, kind, seed=seed, overrides=overrides)
                for kind in table["kinds"]
                for seed in seeds
            ]
    return out


def read_sweep_text(path: Path) -> str:
    """The text of a sweep file (TOML: UTF-8); ConfigError naming it when it is missing,
    unreadable or not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"sweep file {path} not found; pass the path of a .toml sweep file"
        ) from None
    except UnicodeDecodeError as e:
        bad = e.object[e.start : e.start + 1]
        raise ConfigError(
            f"sweep file {path} is not UTF-8 text (byte {e.start} is {bad!r}); TOML files are "
            "UTF-8: save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    except OSError as e:
        raise ConfigError(f"could not read sweep file {path}: {e.strerror or e}") from None


def read_sweep(path: str | Path) -> SweepSpec:
    """Read and parse a sweep file."""
    return parse_sweep(read_sweep_text(Path(path)), str(path))


# --- reading a sweep directory ----------------------------------------------------------------
RUN_STATES = ("done", "partial", "running", "waiting", "diverged", "failed", "pending")


class Sweep:
    """A sweep directory (contract: ``maskstudy.open_sweep``): its spec, runs, table and status."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        spec_path = self.path / SWEEP_FILE
        if not spec_path.is_file():
            raise StoreError(
                f"{self.path} is not a sweep directory (no {SWEEP_FILE}); pass the --out of `maskstudy sweep`"
            )
        self.spec = read_sweep(spec_path)

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}, runs={len(self.spec.configs)})"

    @property
    def runs(self) -> list[Run]:
        """The sweep's runs that have started (a config.json on disk), in sweep-file order."""
        dirs = [self.path / c.run_id() for c in self.spec.configs]
        return [Run(d) for d in dirs if is_run_dir(d)]

    def select(self, **where: Any) -> list[Run]:
        """The started runs whose columns match: ``select(criterion="magnitude", regime="rewind",
        seed=0)``; a key is a column of ``frame()`` (an alias such as criterion, regime, seed,
        model, dataset, or a dotted field with ``.`` written ``__``: ``train__lr=0.1``); a list
        or tuple value matches any of its items."""
        chosen = []
        for run in self.runs:
            columns = config_columns(run)
            for key in where:
                if key.replace("__", ".") not in columns:
                    raise ConfigError(
                        f"select: no column {key!r}{did_you_mean(key, columns)}; columns: "
                        f"{', '.join(c for c in columns if '.' not in c)} and the dotted fields"
                    )
            if all(_is_or_in(columns[k.replace("__", ".")], v) for k, v in where.items()):
                chosen.append(run)
        return chosen

    def frame(self, long: bool = False, all_columns: bool = False) -> pd.DataFrame:
        """One row per (run, level) with config columns; ``long``: one row per (run, level, layer).

        The config columns are those that tell the runs apart: the short names (model, dataset,
        criterion, scope, regime, seed) and every dotted field whose value varies; the dotted
        twins of the short names and the fields that are the same for every run are left out,
        as are the branch columns of a sweep without branches. ``all_columns``: keep them all.
        """
        runs = self.runs
        frame = runs_frame(runs)
        if not all_columns and not frame.empty:
            fields = flatten(runs[0].config.to_dict())
            frame = frame.drop(columns=_same_or_twin(frame, fields))
        if not long or frame.empty:
            return frame
        density = [c for c in frame.columns if c.startswith("density[")]
        rows = frame.melt(
            id_vars=[c for c in frame.columns if c not in density],
            value_vars=density,
            var_name="layer",
            value_name="density",
        )
        rows["layer"] = rows["layer"].str.slice(len("density["), -1)
        return rows.dropna(subset=["density"]).sort_values(
            ["run_id", "level", "layer"], ignore_index=True
        )

    def status(self) -> pd.DataFrame:
        """One row per run: state (one of RUN_STATES), levels done, detail (error or divergence)."""
        rows = []
        for cfg in self.spec.configs:
            expected = len(cfg.level_range())
            state, done, detail = _run_state(self.path / cfg.run_id(), expected)
            if cfg.is_branch and state in ("pending", "partial"):
                state, detail = _waiting(cfg, self.path / cfg.run_id(), state, detail)
            rows.append(
                {
                    "run_id": cfg.run_id(),
                    **{axis: _field(cfg, axis) for axis in self.spec.axes},
                    "state": state,
                    "levels": f"{done}/{expected}",
                    "detail": detail,
                }
            )
        return pd.DataFrame(rows)


def _same_or_twin(frame: pd.DataFrame, fields: Iterable[str]) -> list[str]:
    """Config columns of ``frame`` (the dotted ``fields``) that tell no run apart: the twins of
    the short names, fields with one value in every row, and the branch columns when nothing
    is a branch."""
    twins = [c for c in ALIASES if c in frame and ALIASES[c] != c]
    dotted = [c for c in fields if c in frame and c not in twins and c != ALIASES.get(c)]
    same = [c for c in dotted if frame[c].astype(str).nunique() == 1]
    no_branch = (frame["branch"] == "").all() if "branch" in frame else False
    branch = [c for c in ("branch", "parent", "parent_regime") if no_branch and c in frame]
    return twins + same + branch


def _run_state(run_dir: Path, expected: int) -> tuple[str, int, str]:
    """``run_state``, with a run directory too damaged to read shown as failed with the reason
    instead of stopping the whole table."""
    try:
        return run_state(run_dir, expected)
    except (MaskstudyError, OSError) as error:
        return "failed", 0, f"{type(error).__name__}: {error}"


def _waiting(cfg: RunConfig, run_dir: Path, state: str, detail: str) -> tuple[str, str]:
    """A branch not yet trained is 'waiting' while its parent lacks levels it needs."""
    try:
        missing = waiting_for(cfg, run_dir)
    except MaskstudyError as error:  # a damaged parent: its own row says so
        return state, f"parent unreadable: {error}"
    return ("waiting", f"for levels {missing} of its parent") if missing else (state, detail)


def _is_or_in(value: Any, wanted: Any) -> bool:
    return value in wanted if isinstance(wanted, (list, tuple)) else value == wanted


def _field(cfg: RunConfig, path: str) -> Any:
    value: Any = cfg
    for part in path.split("."):
        value = getattr(value, part)
    return value


def open_sweep(path: str | Path) -> Sweep:
    """Open a sweep directory for reading (contract)."""
    return Sweep(path)


def _same_runs(stored: str, spec: SweepSpec, where: str) -> bool:
    """Whether the stored sweep file describes exactly ``spec``'s runs and resources (it may
    differ in comments, layout, order of keys or old field names)."""
    try:
        old = parse_sweep(stored, where)
    except ConfigError:
        return False
    return old.configs == spec.configs and old.slurm == spec.slurm


def prepare_sweep_dir(
    sweep_file: str | Path,
    out: str | Path,
    extend: bool = False,
    data_root: str | Path | None = None,
    here: bool = True,
) -> SweepSpec:
    """Parse the sweep file, check every run of it (:func:`preflight`: the data read from
    ``data_root``, the memory checked when the runs train ``here``) and copy it to
    ``out/sweep.toml``; never overwrite a different one unless ``extend`` (the old file is
    kept as ``sweep.<n>.toml``). A sweep that fails a check writes nothing."""
    sweep_file, out = Path(sweep_file), Path(out)
    text = read_sweep_text(sweep_file)
    spec = parse_sweep(text, str(sweep_file))
    preflight(spec.configs, data_root, str(sweep_file), here)
    target = out / SWEEP_FILE
    if not target.is_file() and not extend and out.exists():
        # another process starting this sweep may be writing sweep.toml (a temp file) or have
        # just written it: only then is a non-empty directory fine
        others = [p for p in out.iterdir() if not is_temp_file(p)]
        if others and not target.is_file():
            raise StoreError(
                f"{out} exists and is not a sweep directory (no {SWEEP_FILE}); nothing was written. Choose an empty or new --out"
            )
    if target.is_file():
        old = read_sweep_text(target)
        if old == text or _same_runs(old, spec, str(target)):
            return spec  # the stored file is kept as it is (its comments and spellings too)
        if not extend:
            raise StoreError(
                f"{out} already holds a different sweep ({target}); nothing was written. "
                "Use another --out, or --extend to grow that sweep (its file is kept as sweep.<n>.toml)"
            )
        n = 1
        while (out / f"sweep.{n}.toml").exists():
            n += 1
        write_atomic(out / f"sweep.{n}.toml", old.encode())
    write_atomic(target, text.encode())
    return spec
