"""The ``prune`` section of a run's config: criterion, amount, scope and each criterion's options."""

from __future__ import annotations

from dataclasses import dataclass, field

from maskstudy.errors import ConfigError
from maskstudy.fields import choice, fraction, positive, registered
from maskstudy.pruning.criteria import CRITERIA
from maskstudy.pruning.drop import check_config as check_drop
from maskstudy.pruning.saliency import check_config as check_saliency
from maskstudy.pruning.schedules import check_schedule_fields

SCOPES = ("layer", "global")
ROUNDINGS = ("round", "ceil", "floor")


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
        positive(self.temperature, "prune.saliency.temperature")
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
        registered(CRITERIA, self.criterion, "prune.criterion")
        fraction(self.amount, "prune.amount")
        choice(self.scope, SCOPES, "prune.scope")
        choice(self.rounding, ROUNDINGS, "prune.rounding")
        for name, amount in self.layer_amounts.items():
            fraction(amount, f"prune.layer_amounts[{name!r}]")
        if self.dim not in (0, 1):
            raise ConfigError(f"prune.dim = {self.dim!r} must be 0 (filters) or 1 (channels)")
        if self.n not in (1, 2):
            raise ConfigError(f"prune.n = {self.n!r} must be 1 or 2")
        check_drop(self)
        check_saliency(self)
        check_schedule_fields(self)
