"""The ``prune`` section of a run's config: criterion, amount, scope, and one section per option set.

Criteria own their options: each registers a frozen dataclass as ``Criterion.options`` under a
section name (``drop`` → ``prune.drop.*``; snip, grasp, synflow and pca share ``saliency``), and
``PruneConfig`` is the shared fields plus one field per registered section. The package imports
all its modules first (``maskstudy/pruning/__init__.py``), so a new criterion is one file here.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any

from maskstudy.errors import ConfigError
from maskstudy.fields import choice, fraction, registered
from maskstudy.pruning.criteria import CRITERIA
from maskstudy.pruning.schedules import SCHEDULES, GradualConfig

SCOPES = ("layer", "global")
ROUNDINGS = ("round", "ceil", "floor")
SCORE_WEIGHTS = ("auto", "trained", "init")


@dataclass(frozen=True)
class PruneFields:
    """What every criterion reads; ``PruneConfig`` adds the criteria's option sections."""

    criterion: str = "magnitude"
    amount: float = 0.2  # fraction of the still-unpruned weights removed per level
    scope: str = "layer"  # layer | global
    layer_amounts: dict[str, float] = field(default_factory=dict)  # per-tensor overrides
    exclude: tuple[str, ...] = ()  # tensors never pruned
    rounding: str = "round"  # how amount × alive becomes a count (torch.nn.utils.prune: round)
    n: int = 1  # norm order for ln_structured
    dim: int = 0  # ln/random_structured: 0 = filters (outputs), 1 = input channels
    # which weights level L scores: "trained" (level L-1's), "init" (θ0: pruning at init) or
    # "auto" = init for the at-init criteria snip/grasp/synflow, trained for all others
    score_weights: str = "auto"
    schedule: str = "iterative"  # iterative | gradual (one run on a density ramp: prune.gradual)
    gradual: GradualConfig = field(default_factory=GradualConfig)

    def __post_init__(self) -> None:
        registered(CRITERIA, self.criterion, "prune.criterion")
        fraction(self.amount, "prune.amount")
        choice(self.scope, SCOPES, "prune.scope")
        choice(self.rounding, ROUNDINGS, "prune.rounding")
        choice(self.score_weights, SCORE_WEIGHTS, "prune.score_weights")
        choice(self.schedule, SCHEDULES, "prune.schedule")
        for name, amount in self.layer_amounts.items():
            fraction(amount, f"prune.layer_amounts[{name!r}]")
        if self.dim not in (0, 1):
            raise ConfigError(f"prune.dim = {self.dim!r} must be 0 (filters) or 1 (channels)")
        if self.n not in (1, 2):
            raise ConfigError(f"prune.n = {self.n!r} must be 1 or 2")
        for name in sections(type(self)):
            section = getattr(self, name)
            if hasattr(section, "check"):
                section.check(self)

    def criterion_options(self) -> dict[str, Any]:
        """The keyword options ``prune``/``saliency_prune`` pass to this criterion: its section's
        fields, and ``n``, ``dim`` for a structured criterion."""
        crit = CRITERIA.get(self.criterion)
        options = {"n": self.n, "dim": self.dim} if crit.structured else {}
        if crit.section:
            options.update(dataclasses.asdict(getattr(self, crit.section)))
        return options

    @property
    def scores_init(self) -> bool:
        """Whether a level scores θ0 (pruning at initialization) rather than trained weights."""
        if self.score_weights == "auto":
            return CRITERIA.get(self.criterion).at_init
        return self.score_weights == "init"

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """``d`` with fields written before they had a section (``drop_away``) moved into it
        (``drop: {away}``): stored configs, sweep files and ``--set`` keep working."""
        out = dict(d)
        for old, (section, name) in moved_fields(cls).items():
            if old in out and isinstance(out.get(section, {}), dict):
                out[section] = {**out.get(section, {}), name: out.pop(old)}
        return out


@functools.cache
def sections(cls: type) -> dict[str, type]:
    """Section name → options class of a prune config class: ``gradual`` and the criteria's."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(cls)
        if dataclasses.is_dataclass(hints[f.name])
    }


@functools.cache
def moved_fields(cls: type) -> dict[str, tuple[str, str]]:
    """``{"drop_away": ("drop", "away"), ...}`` for every section with an ``ID_PREFIX``."""
    return {
        f"{options.ID_PREFIX}{f.name}": (name, f.name)
        for name, options in sections(cls).items()
        if getattr(options, "ID_PREFIX", "")
        for f in dataclasses.fields(options)
    }


def _option_sections() -> dict[str, type]:
    """Section name → options class of every registered criterion (shared sections once)."""
    found: dict[str, type] = {}
    for name in CRITERIA.names():
        crit = CRITERIA.get(name)
        if crit.options is None:
            continue
        if found.setdefault(crit.section, crit.options) is not crit.options:
            raise ValueError(f"criterion {name!r}: section {crit.section!r} has two option classes")
    return found


PruneConfig = dataclasses.make_dataclass(
    "PruneConfig",
    [(name, cls, field(default_factory=cls)) for name, cls in _option_sections().items()],
    bases=(PruneFields,),
    frozen=True,
    namespace={
        "__module__": __name__,  # pickled by name, as any class of this module
        "__doc__": "The prune section: the shared fields plus each criterion's option section.",
    },
)
