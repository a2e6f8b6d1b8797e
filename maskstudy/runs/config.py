"""Typed, validated run configuration; a run's identity is the hash of its non-default fields."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from maskstudy.data.config import DataConfig
from maskstudy.errors import ConfigError, did_you_mean
from maskstudy.eval.config import AttackConfig
from maskstudy.fields import choice, integer_in, positive
from maskstudy.models.config import ModelConfig
from maskstudy.pruning.config import PruneConfig, moved_fields
from maskstudy.pruning.drop import DropConfig
from maskstudy.pruning.saliency import SaliencyConfig
from maskstudy.pruning.schedules import GradualConfig
from maskstudy.runs.regimes import BRANCH_KINDS, MOVED_REGIMES, REGIMES, Rule
from maskstudy.steps import Steps
from maskstudy.train.config import TrainConfig

# The sections are defined by the layers that consume them; a run's config composes them.
__all__ = [
    "AttackConfig",
    "BranchConfig",
    "DataConfig",
    "DropConfig",
    "GradualConfig",
    "ModelConfig",
    "PruneConfig",
    "RunConfig",
    "SaliencyConfig",
    "TrainConfig",
]

# A run prunes (1 - amount) of its weights per level: at the usual amount 0.2, level 1000 keeps
# 0.8^1000 ≈ 1e-97 of them, so every model is empty hundreds of levels earlier (LeNet-300-100's
# 266k weights: by level ~56). More levels is a typo that would train empty nets for ever.
MAX_LEVELS = 1000
# Seeds are what a TOML sweep file can write: a signed 64-bit integer (torch overflows at 2^64).
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class BranchConfig:
    """A branch trains the masks of a parent run instead of pruning (docs/methods.md, Branches)."""

    kind: str = ""  # "" = an ordinary run; else one of BRANCH_KINDS
    parent: str = ""  # the parent's run id
    first: int = 1  # first level trained (with ``levels``: how much of the branch, not its id)

    def __post_init__(self) -> None:
        if not self.kind:
            if self.parent:
                raise ConfigError("branch.parent is set but branch.kind is empty; give the kind")
            return
        choice(self.kind, tuple(BRANCH_KINDS), "branch.kind")
        if not self.parent:
            raise ConfigError("branch.kind needs branch.parent, the parent's run id")
        if isinstance(self.first, bool) or not isinstance(self.first, int) or self.first < 0:
            raise ConfigError(f"branch.first = {self.first!r} must be an integer >= 0")
        if self.first == 0 and BRANCH_KINDS[self.kind].continues:
            raise ConfigError(
                f"a {self.kind} branch continues the parent's level L-1, so it starts at level 1"
            )


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    regime: str = "rewind"  # rewind | finetune | lr_rewind | reinit_prune (docs/methods.md)
    rewind_to: str = "0it"  # rewind point k of the dense run ('0it' = the lottery ticket)
    scratch_cap: float = 0.0  # scratch_b: cap on the FLOPs ratio (Rethinking ImageNet: 2); 0 = none
    levels: int = 5  # pruning levels after the dense level 0 (not part of the run id)
    seed: int = 0  # init seed; data order and pruning randomness derive from it
    branch: BranchConfig = field(default_factory=BranchConfig)

    def __post_init__(self) -> None:
        if self.regime in MOVED_REGIMES:
            raise ConfigError(
                f"regime = {self.regime!r} is no longer a regime: {MOVED_REGIMES[self.regime]}"
            )
        choice(self.regime, tuple(REGIMES), "regime")
        Steps.parse(self.rewind_to, "rewind_to")
        revives = self.prune.drop.revive == "last" and not self.is_branch  # branches: not pruned
        if revives and not REGIMES[self.regime].continues:
            raise ConfigError(
                f"prune.drop.revive = 'last' restores trained values, which regime = "
                f"{self.regime!r} does not keep; use regime = 'finetune' or 'lr_rewind', or "
                "prune.drop.revive = 'zero'"
            )
        positive(self.scratch_cap, "scratch_cap", zero_ok=True)
        if 0 < self.scratch_cap < 1:
            raise ConfigError(
                f"scratch_cap = {self.scratch_cap!r} would train scratch_b below the dense budget; "
                "give 0 (no cap) or a ratio >= 1, e.g. 2 as Rethinking on ImageNet"
            )
        integer_in(
            self.levels, "levels", MAX_LEVELS, " (level 1000 keeps 0.8^1000 ≈ 1e-97 of the weights)"
        )
        if self.branch.kind and self.branch.first > self.levels:
            raise ConfigError(
                f"branch.first = {self.branch.first} is after the last level ({self.levels})"
            )
        integer_in(self.seed, "seed", MAX_SEED, " (2**63 - 1: a signed 64-bit integer, as in TOML)")
        if self.prune.schedule == "gradual" and self.levels != 0:
            raise ConfigError(
                f"levels = {self.levels} but prune.schedule = 'gradual' prunes within one "
                "training run (level 0); set levels = 0"
            )

    # --- what the run trains -------------------------------------------------------------
    @property
    def is_branch(self) -> bool:
        return bool(self.branch.kind)

    @property
    def rule(self) -> Rule:
        """How levels >= 1 train: the branch kind for a branch, else the regime (regimes.py)."""
        return BRANCH_KINDS[self.branch.kind] if self.is_branch else REGIMES[self.regime]

    def level_range(self) -> range:
        """The levels this run trains: 0..levels, or branch.first..levels for a branch."""
        return range(self.branch.first if self.is_branch else 0, self.levels + 1)

    # --- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    def run_id(self) -> str:
        """Readable prefix + hash of the non-default fields (``levels`` excluded)."""
        body = json.dumps(_non_default(self), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(body.encode()).hexdigest()[:10]
        method = f"{self.regime}.{self.branch.kind}" if self.is_branch else self.regime
        return f"{self.model.name}-{self.data.name}-{self.prune.criterion}-{method}-s{self.seed}-{digest}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Build from a (possibly partial) nested dict; unknown keys raise ConfigError."""
        return _build(cls, d, "")

    def replace(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with dotted-path overrides applied, e.g. ``{"train.lr": 0.01}``."""
        d = self.to_dict()
        for path, value in overrides.items():
            path = current_path(path)
            node = d
            *parents, leaf = path.split(".")
            for i, key in enumerate(parents):
                if not isinstance(node.get(key), dict):
                    raise ConfigError(_unknown_field(".".join(parents[: i + 1]), cls=RunConfig))
                node = node[key]
            if leaf not in node:
                raise ConfigError(_unknown_field(path, cls=RunConfig))
            node[leaf] = value
        return RunConfig.from_dict(d)


def parse_value(text: str) -> Any:
    """Parse a ``--set key=value`` value: JSON when it parses (numbers, lists, true), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def current_path(path: str) -> str:
    """A dotted field name written before its section existed (``prune.drop_away``), moved."""
    section, _, name = path.partition(".")
    moved = moved_fields(PruneConfig).get(name) if section == "prune" else None
    return f"prune.{moved[0]}.{moved[1]}" if moved else path


def _non_default(cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cfg):
        if f.name in ("levels", "first"):  # how much of a run, not which run
            continue
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            sub = _non_default(value)
            # a section whose fields once sat flat in its parent is hashed under those names,
            # so that run ids (and the runs stored under them) stay what they were
            prefix = getattr(value, "ID_PREFIX", "")
            out.update({f"{prefix}{k}": v for k, v in sub.items()} if prefix else {})
            if sub and not prefix:
                out[f.name] = sub
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if _jsonable(value) != _jsonable(default):
            out[f.name] = _jsonable(value)
    return out


def _unknown_field(path: str, cls: type) -> str:
    valid = field_paths(cls)
    return f"unknown config field {path!r}{did_you_mean(path, valid)}; valid fields: {', '.join(valid)}"


def field_paths(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted field name of a config class (what ``--set`` accepts)."""
    hints = typing.get_type_hints(cls)
    paths: list[str] = []
    for f in fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            paths += field_paths(hints[f.name], f"{prefix}{f.name}.")
        else:
            paths.append(f"{prefix}{f.name}")
    return paths


def _coerce(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} = {value!r} must be a list")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(v, item, path) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} = {value!r} must be a table of name = value")
        return {str(k): _coerce(v, float, f"{path}[{k!r}]") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} = {value!r} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path} = {value!r} must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} = {value!r} must be a number")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{path} = {value!r} must be a finite number") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} = {value!r} must be a string")
        return value
    return value


def _build(cls: type, d: Any, prefix: str) -> Any:
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table, got {d!r}")
    if hasattr(cls, "upgrade"):
        d = cls.upgrade(d)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(str(k) for k in d if k not in names)
    if unknown:
        raise ConfigError(_unknown_field(prefix + unknown[0], cls=RunConfig))
    kwargs = {}
    for key, value in d.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, prefix + key)
    return cls(**kwargs)
