"""Typed, validated run configuration; a run's identity is the hash of its non-default fields."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from maskstudy.errors import ConfigError
from maskstudy.runs.steps import check_some_steps, check_steps

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
SCOPES = ("layer", "global")
ROUNDINGS = ("round", "ceil", "floor")
# A run prunes (1 - amount) of its weights per level: at the usual amount 0.2, level 1000 keeps
# 0.8^1000 ≈ 1e-97 of them, so every model is empty hundreds of levels earlier (LeNet-300-100's
# 266k weights: by level ~56). More levels is a typo that would train empty nets for ever.
MAX_LEVELS = 1000
# Seeds are what a TOML sweep file can write: a signed 64-bit integer (torch overflows at 2^64).
MAX_SEED = 2**63 - 1
INITS = ("kaiming_normal", "kaiming_uniform", "glorot_normal", "glorot_uniform")
# How an ordinary run trains level L >= 1 after pruning its own level L-1 (docs/methods.md):
REGIMES = ("rewind", "finetune", "lr_rewind", "reinit_prune")
# How a branch trains its parent's mask of level L (maskstudy.runs.branch):
BRANCH_KINDS = (
    "reinit",
    "random_mask",
    "shuffle",
    "rewind",
    "scratch_e",
    "scratch_b",
    "finetune",
    "lr_rewind",
)
# Values that were regimes before branches existed, and what a user wants instead.
MOVED_REGIMES = {
    "reinit": "the lottery-ticket control (the ticket's mask, a fresh init) is the branch kind "
    "'reinit' (`maskstudy branch RUN --kind reinit` or a [branches] table); Paganini & Forde's "
    "reinitialise-then-prune-again is regime = 'reinit_prune'",
    "random_mask": "a random mask with the parent's per-layer counts is the branch kind "
    "'random_mask' (`maskstudy branch RUN --kind random_mask` or a [branches] table)",
    "scratch_e": "Rethinking's scratch baselines train the parent's masks: branch kind "
    "'scratch_e' (`maskstudy branch RUN --kind scratch_e` or a [branches] table)",
    "scratch_b": "Rethinking's scratch baselines train the parent's masks: branch kind "
    "'scratch_b' (`maskstudy branch RUN --kind scratch_b` or a [branches] table)",
}


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} = {value!r} is not allowed; choose one of: {', '.join(allowed)}")


def _registered(registry: Any, value: str, name: str) -> None:
    try:
        registry.get(value)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None


def _positive(value: Any, name: str, *, zero_ok: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"{name} = {value!r} must be a finite number {bound}")


def _integer_in(value: Any, name: str, top: int, why: str) -> None:
    """ConfigError unless ``value`` is an integer from 0 to ``top`` (``why``: the bound's reason)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise ConfigError(f"{name} = {value!r} must be an integer from 0 to {top}{why}")


def _fraction(value: Any, name: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not 0 < value < 1:
        raise ConfigError(f"{name} = {value!r} must be a fraction strictly between 0 and 1")


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist"
    val_size: int = 0  # training examples held out as a validation split
    augment: bool = False  # pad-4 crop + flip on training batches (CIFAR)
    synthetic_shape: tuple[int, ...] = (1, 8, 8)  # only for name = "synthetic"
    synthetic_classes: int = 10
    synthetic_size: int = 2048

    def __post_init__(self) -> None:
        from maskstudy.data import DATASETS

        _registered(DATASETS, self.name, "data.name")
        _positive(self.val_size, "data.val_size", zero_ok=True)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "lenet300_100"
    init: str = "kaiming_normal"
    width: float = 1.0  # channel / unit multiplier (Rethinking's smaller target architectures)

    def __post_init__(self) -> None:
        from maskstudy.models import MODELS

        _registered(MODELS, self.name, "model.name")
        _choice(self.init, INITS, "model.init")
        _positive(self.width, "model.width")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 128
    duration: str = "10ep"  # training length per level: '<n>ep' or '<n>it'
    schedule: str = "constant"  # constant | step (milestones × gamma) | cosine
    milestones: tuple[str, ...] = ()  # for schedule = 'step', e.g. ('80ep', '120ep')
    gamma: float = 0.1
    warmup: str = "0it"  # linear learning-rate warm-up from 0
    eval_every: str = "1ep"  # evaluation period
    # CPU threads of the run's arithmetic; part of its identity, as a matrix product split over
    # more threads rounds differently. More are faster for one big run; --jobs uses the cores.
    threads: int = 1

    def __post_init__(self) -> None:
        _choice(self.optimizer, OPTIMIZERS, "train.optimizer")
        _choice(self.schedule, SCHEDULES, "train.schedule")
        _positive(self.lr, "train.lr")
        _positive(self.momentum, "train.momentum", zero_ok=True)
        _positive(self.weight_decay, "train.weight_decay", zero_ok=True)
        _positive(self.gamma, "train.gamma")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"train.batch_size = {self.batch_size!r} must be an integer >= 1")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(
                f"train.threads = {self.threads!r} must be an integer >= 1 (CPU threads per run)"
            )
        if self.nesterov and self.momentum == 0:
            raise ConfigError("train.nesterov = true needs train.momentum > 0")
        for name in ("duration", "warmup", "eval_every"):
            check_steps(getattr(self, name), f"train.{name}")
        for name in ("duration", "eval_every"):  # no training, never an evaluation
            check_some_steps(getattr(self, name), f"train.{name}")
        for m in self.milestones:
            check_steps(m, "train.milestones")


@dataclass(frozen=True)
class SaliencyConfig:
    """Options of the model-based criteria snip, grasp, synflow and pca (pruning/saliency.py)."""

    samples: int = 1024  # training examples scored: SNIP/GraSP loss batch, PCA activation sample
    rounds: int = 0  # sub-rounds per level, exponential schedule; 0 = default (synflow 100, else 1)
    variance: float = 0.99  # pca: explained-variance fraction that fixes each layer's width
    temperature: float = (
        200.0  # grasp: softmax temperature T of the scored loss (GraSP's code: 200)
    )

    def __post_init__(self) -> None:
        for name, low, note in (("samples", 1, ""), ("rounds", 0, " (0 = criterion default)")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"prune.saliency.{name} = {value!r} must be an integer >= {low}{note}"
                )
        _positive(self.temperature, "prune.saliency.temperature")
        ok = isinstance(self.variance, (int, float)) and not isinstance(self.variance, bool)
        if not ok or not 0 < self.variance <= 1:
            raise ConfigError(
                f"prune.saliency.variance = {self.variance!r} must be a fraction in (0, 1], e.g. 0.99"
            )


@dataclass(frozen=True)
class PruneConfig:
    criterion: str = "magnitude"
    amount: float = 0.2  # fraction of the still-unpruned weights removed per level
    scope: str = "layer"  # layer | global
    layer_amounts: dict[str, float] = field(default_factory=dict)  # per-tensor overrides
    exclude: tuple[str, ...] = ()  # tensors never pruned
    rounding: str = "round"  # how amount × alive becomes a count (torch.nn.utils.prune: round)
    n: int = 1  # norm order for ln_structured
    dim: int = 0  # ln/random_structured: 0 = filters (outputs), 1 = input channels
    # criterion = "drop" (Drop Pruning, pruning/drop.py): the candidates are the lowest-|w|
    # `amount` of the alive weights; each goes with probability drop_away, and each pruned
    # weight comes back with the probability that makes the density flow to drop_target
    drop_away: float = 0.5
    drop_target: float = 0.07  # 0 = no drop-back (nested masks); 0.07 = LeNet-5 (docs/methods.md)
    drop_revive: str = "zero"  # finetune: a revived weight restarts at 0 or "last" alive value
    # which weights level L scores: "trained" (level L-1's), "init" (θ0: pruning at init) or
    # "auto" = init for the at-init criteria snip/grasp/synflow, trained for all others
    score_weights: str = "auto"
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    # schedule = "gradual" (Campfire, pruning/gradual.py): one training run whose mask is
    # recomputed every gradual_every iterations from gradual_start to gradual_end on the AGP
    # ramp (cubic or linear) from density 1 to gradual_target, then frozen; needs levels = 0
    schedule: str = "iterative"  # iterative | gradual
    gradual_start: str = "0it"
    gradual_end: str = "1ep"  # the freeze step
    gradual_every: str = "100it"
    gradual_target: float = 0.3  # final density (0.3 = 70 % sparsity)
    gradual_shape: str = "cubic"  # cubic (Zhu & Gupta) | linear

    def __post_init__(self) -> None:
        from maskstudy.pruning import CRITERIA
        from maskstudy.pruning.drop import check_config
        from maskstudy.pruning.saliency import check_config as check_saliency
        from maskstudy.pruning.schedules import check_schedule_fields

        _registered(CRITERIA, self.criterion, "prune.criterion")
        _fraction(self.amount, "prune.amount")
        _choice(self.scope, SCOPES, "prune.scope")
        _choice(self.rounding, ROUNDINGS, "prune.rounding")
        for name, amount in self.layer_amounts.items():
            _fraction(amount, f"prune.layer_amounts[{name!r}]")
        if self.dim not in (0, 1):
            raise ConfigError(f"prune.dim = {self.dim!r} must be 0 (filters) or 1 (channels)")
        if self.n not in (1, 2):
            raise ConfigError(f"prune.n = {self.n!r} must be 1 or 2")
        check_config(self)
        check_saliency(self)
        check_schedule_fields(self)


@dataclass(frozen=True)
class AttackConfig:
    """Adversarial evaluation of every level's final weights on the test split (eval/)."""

    eps: tuple[float, ...] = ()  # L∞ radii in [0, 1] pixel units, e.g. 8/255; () = no attacks
    kinds: tuple[str, ...] = ("fgsm", "pgd")
    pgd_steps: int = 10
    pgd_step: float = 0.25  # PGD step size as a fraction of eps (Campfire: eps/4)
    random_start: bool = False  # PGD starts from a uniform point of the eps-ball
    subset: int = 0  # attack the first n test examples; 0 = the whole test split

    def __post_init__(self) -> None:
        from maskstudy.eval.robust import check_attack

        check_attack(self)


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
        _choice(self.kind, BRANCH_KINDS, "branch.kind")
        if not self.parent:
            raise ConfigError("branch.kind needs branch.parent, the parent's run id")
        if isinstance(self.first, bool) or not isinstance(self.first, int) or self.first < 0:
            raise ConfigError(f"branch.first = {self.first!r} must be an integer >= 0")
        if self.first == 0 and self.kind in ("finetune", "lr_rewind"):
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
        _choice(self.regime, REGIMES, "regime")
        check_steps(self.rewind_to, "rewind_to")
        revives = self.prune.drop_revive == "last" and not self.is_branch  # branches: not pruned
        if revives and self.regime not in ("finetune", "lr_rewind"):
            raise ConfigError(
                f"prune.drop_revive = 'last' restores trained values, which regime = "
                f"{self.regime!r} does not keep; use regime = 'finetune' or 'lr_rewind', or "
                "drop_revive = 'zero'"
            )
        _positive(self.scratch_cap, "scratch_cap", zero_ok=True)
        if 0 < self.scratch_cap < 1:
            raise ConfigError(
                f"scratch_cap = {self.scratch_cap!r} would train scratch_b below the dense budget; "
                "give 0 (no cap) or a ratio >= 1, e.g. 2 as Rethinking on ImageNet"
            )
        _integer_in(
            self.levels, "levels", MAX_LEVELS, " (level 1000 keeps 0.8^1000 ≈ 1e-97 of the weights)"
        )
        if self.branch.kind and self.branch.first > self.levels:
            raise ConfigError(
                f"branch.first = {self.branch.first} is after the last level ({self.levels})"
            )
        _integer_in(
            self.seed, "seed", MAX_SEED, " (2**63 - 1: a signed 64-bit integer, as in TOML)"
        )
        from maskstudy.pruning.schedules import check_schedule_run

        check_schedule_run(self)

    # --- what the run trains -------------------------------------------------------------
    @property
    def is_branch(self) -> bool:
        return bool(self.branch.kind)

    def training_rule(self) -> str:
        """How levels >= 1 train: the branch kind for a branch, else the regime."""
        return self.branch.kind or self.regime

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


def _non_default(cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cfg):
        if f.name in ("levels", "first"):  # how much of a run, not which run
            continue
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            sub = _non_default(value)
            if sub:
                out[f.name] = sub
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if _jsonable(value) != _jsonable(default):
            out[f.name] = _jsonable(value)
    return out


def _unknown_field(path: str, cls: type) -> str:
    return f"unknown config field {path!r}; valid fields: {', '.join(field_paths(cls))}"


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
