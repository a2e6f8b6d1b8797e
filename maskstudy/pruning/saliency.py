"""Model- and data-dependent pruning scores: SNIP, GraSP, SynFlow and PCA (docs/methods.md).

Each registers a ``Criterion`` whose ``model_score(model, x, y, mask, **options) -> Scored`` gives
per-weight scores where, as for every criterion, the lowest are pruned first; all four read the
``prune.saliency`` section (``SaliencyConfig``). ``saliency_prune`` runs one
pruning level with them: it scores the model with ``mask`` applied (on a copy: the model's weights,
signs and BatchNorm statistics are never touched) and hands the scores to ``prune()``.

- snip: |g ⊙ w|, g = ∂L/∂w of the cross-entropy on the batch (Lee et al. 2019).
- grasp: GraSP's score is −w ⊙ Hg and it removes the *highest*; the registry returns its
  negation w ⊙ Hg so that "lowest first" removes the same weights (Wang et al. 2020); ties
  among GraSP's highest go lower flat index first, as everywhere. g is the gradient of the alive
  weights (pruned ones stay zero, so their gradient flow does not count); g and Hg are of the
  loss on logits / ``temperature`` (default 200, as in GraSP's code).
- synflow: data-free; |θ| parameters, eval mode, float64, an all-ones input shaped like one
  example of ``x``, R = 1ᵀ(∏|W|)1 and s = (∂R/∂w) ⊙ w (Tanaka et al. 2020). Biases, BatchNorm
  shifts and running means are zeroed (BatchNorm scales enter as |γ|/√var) so that R is exactly
  that product. The official code takes |bias| instead, which feeds flow in behind a layer: on
  the deep narrow MLP of tests/test_saliency.py that collapsed 5 of 8 layers at 1 % density.
  It runs ``rounds`` sub-rounds (default 100) inside one level on an exponential schedule that
  ends exactly at the level's target.
- pca: Pen-Ultimate (maskstudy.pruning.pca): units beyond each layer's PCA width are dropped,
  then ``amount`` of the remaining connections by relative importance.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from maskstudy.errors import ConfigError
from maskstudy.fields import positive
from maskstudy.masks import Mask, apply_mask_
from maskstudy.pruning.criteria import CRITERIA, Criterion, check_options, prune, prune_count
from maskstudy.pruning.pca import even_chunks, pca_scores

if TYPE_CHECKING:
    from maskstudy.pruning.config import PruneConfig

Tensor = torch.Tensor
GRASP_TEMPERATURE = 200.0  # GraSP's official code divides the logits by T = 200


@dataclass(frozen=True)
class Scored:
    """Per-weight scores (lowest pruned first), the mask pruning starts from, level metrics."""

    scores: dict[str, Tensor]
    start: Mask | None = None  # None: the mask that was scored
    metrics: dict = field(default_factory=dict)


ScoreFn = Callable[..., Scored]


@dataclass(frozen=True)
class SaliencyConfig:
    """``prune.saliency``: options of the model-based criteria snip, grasp, synflow and pca."""

    samples: int = 1024  # training examples scored: SNIP/GraSP loss batch, PCA activation sample
    rounds: int = 0  # sub-rounds per level, exponential schedule; 0 = default (synflow 100, else 1)
    variance: float = 0.99  # pca: explained-variance fraction that fixes each layer's width
    temperature: float = GRASP_TEMPERATURE  # grasp: softmax temperature T of the scored loss

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

    def check(self, p: PruneConfig) -> None:
        """Sub-rounds only for a model-based criterion that can run them."""
        if self.rounds <= 1:
            return
        crit = CRITERIA.get(p.criterion)
        if not crit.needs_model:
            model_based = [n for n in CRITERIA.names() if CRITERIA.get(n).needs_model]
            raise ConfigError(
                f"prune.saliency.rounds applies to {', '.join(model_based)}, not "
                f"prune.criterion = {p.criterion!r}; leave it at 0"
            )
        if crit.one_shot:
            raise ConfigError(
                f"prune.criterion = {p.criterion!r} prunes in one shot: set prune.saliency.rounds "
                "to 0 or 1"
            )


def _ranked_as_given(scores: Tensor, **_: object) -> Tensor:
    """prune()'s ranking of precomputed model-based scores: the scores themselves."""
    return scores


def _register(
    name: str, *, at_init: bool, rounds: int = 1, one_shot: bool = False
) -> Callable[[ScoreFn], ScoreFn]:
    def add(fn: ScoreFn) -> ScoreFn:
        entry = Criterion(
            _ranked_as_given,
            model_score=fn,
            at_init=at_init,
            rounds=rounds,
            one_shot=one_shot,
            options=SaliencyConfig,
            section="saliency",
        )
        CRITERIA.register(name)(entry)
        return fn

    return add


def masked_copy(model: nn.Module, mask: Mapping[str, Tensor]) -> nn.Module:
    """A deep copy of ``model`` with the pruned weights zeroed (the original is left as it is)."""
    net = copy.deepcopy(model)
    device = next(net.parameters()).device
    apply_mask_(net, {n: m.to(device) for n, m in mask.items()})
    return net


def _loss_grads(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    params: list[Tensor],
    hvp_of: list[Tensor] | None = None,
    temperature: float = 1.0,
) -> list[Tensor]:
    """∂L/∂params of the mean cross-entropy of logits/``temperature`` over (x, y), or H·v for
    ``hvp_of`` = v, in chunks."""
    out = [torch.zeros_like(p) for p in params]
    for xb, yb in even_chunks(x, y):
        loss = F.cross_entropy(net(xb) / temperature, yb) * (len(xb) / len(x))
        grads = torch.autograd.grad(loss, params, create_graph=hvp_of is not None)
        if hvp_of is not None:
            dot = sum((g * v).sum() for g, v in zip(grads, hvp_of, strict=True))
            grads = torch.autograd.grad(dot, params)
        for acc, g in zip(out, grads, strict=True):
            acc.add_(g.detach())
    return out


@_register("snip", at_init=True)
def snip_scores(model: nn.Module, x: Tensor, y: Tensor, mask: Mask, **_: object) -> Scored:
    """SNIP connection sensitivity |∂L/∂w ⊙ w| on the batch (x, y)."""
    net = masked_copy(model, mask).train()
    params = dict(net.named_parameters())
    grads = _loss_grads(net, x, y, [params[n] for n in mask])
    return Scored({n: (g * params[n]).detach().abs() for n, g in zip(mask, grads, strict=True)})


def _check_temperature(value: object) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:
        raise ConfigError(f"temperature = {value!r} must be a positive number (GraSP's code: 200)")


@_register("grasp", at_init=True)
def grasp_scores(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    mask: Mask,
    *,
    temperature: float = GRASP_TEMPERATURE,
    **_: object,
) -> Scored:
    """w ⊙ Hg: GraSP's −w ⊙ Hg negated, so removing the lowest removes GraSP's highest.

    g and Hg are taken of the loss on logits / ``temperature``, as GraSP's code does (T = 200).
    """
    _check_temperature(temperature)
    net = masked_copy(model, mask).train()
    params = dict(net.named_parameters())
    weights = [params[n] for n in mask]
    grads = _loss_grads(net, x, y, weights, temperature=temperature)
    g = [gi * mask[n].to(gi.device) for n, gi in zip(mask, grads, strict=True)]
    hg = _loss_grads(net, x, y, weights, hvp_of=g, temperature=temperature)
    return Scored({n: (w * h).detach() for n, w, h in zip(mask, weights, hg, strict=True)})


@_register("synflow", at_init=True, rounds=100)
def synflow_scores(model: nn.Module, x: Tensor, y: Tensor, mask: Mask, **_: object) -> Scored:
    """SynFlow |∂R/∂w ⊙ w| with R the all-ones output sum of the |θ| network (data-free)."""
    net = masked_copy(model, mask).double().eval()
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                t.zero_() if name.endswith(("bias", "running_mean")) else t.abs_()
    params = dict(net.named_parameters())
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    grads = torch.autograd.grad(net(ones).sum(), [params[n] for n in mask])
    return Scored({n: (g * params[n]).detach().abs() for n, g in zip(mask, grads, strict=True)})


@_register("pca", at_init=False, one_shot=True)
def pen_ultimate_scores(
    model: nn.Module, x: Tensor, y: Tensor, mask: Mask, *, variance: float = 0.99, **_: object
) -> Scored:
    """Pen-Ultimate: start from the PCA-width units, rank connections by relative importance."""
    result = pca_scores(model, x, mask, variance)
    return Scored(result.importance, result.mask, result.metrics())


@dataclass(frozen=True)
class _Group:
    """Tensors prune() ranks together; ``pooled`` = the global pool, else one tensor's own rate."""

    names: tuple[str, ...]
    pooled: bool
    start: int  # alive when the level begins
    end: int  # kept when it ends: what one prune() call at the level's rate leaves


def _groups(
    mask: Mask, scope: str, amount: float, layer_amounts: Mapping[str, float], rounding: str
) -> list[_Group]:
    singles = [n for n in mask if scope == "layer" or n in layer_amounts]
    pooled = tuple(n for n in mask if n not in singles)
    rated = [((n,), False, layer_amounts.get(n, amount)) for n in singles]
    out = []
    for names, is_pool, rate in rated + ([(pooled, True, amount)] if pooled else []):
        alive = sum(int(mask[n].sum()) for n in names)
        out.append(_Group(names, is_pool, alive, alive - prune_count(rate, alive, rounding)))
    return out


def _round_rates(
    groups: list[_Group], current: Mask, r: int, rounds: int
) -> tuple[float, dict[str, float]]:
    """prune()'s (amount, layer_amounts) that take each group to round(n0·(K/n0)^(r/rounds))."""
    pooled, singles = 0.0, {}
    for g in groups:
        alive = sum(int(current[n].sum()) for n in g.names)
        target = round(g.start * (g.end / g.start) ** (r / rounds)) if g.start else 0
        rate = (alive - min(target, alive)) / alive if alive else 0.0
        if g.pooled:
            pooled = rate
        else:
            singles[g.names[0]] = rate
    return pooled, singles


def saliency_prune(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    mask: Mapping[str, Tensor],
    criterion: str,
    amount: float,
    *,
    scope: str = "global",
    layer_amounts: Mapping[str, float] | None = None,
    rounding: str = "round",
    rounds: int = 0,
    **options: Any,
) -> tuple[Mask, dict]:
    """One level of a model-based criterion: (new mask, level metrics).

    ``x``, ``y`` are the scoring batch (synflow reads only the shape of ``x``). With ``rounds``
    > 1 (0 = the criterion's default) the level is split into sub-rounds, rescoring before each,
    that take every ranked group from n0 to the K weights one ``prune()`` call with ``amount``
    keeps along the exponential schedule round(n0·(K/n0)^(r/rounds)): it ends exactly at K.
    ``options`` go to the score function: ``temperature`` (grasp), ``variance`` (pca).
    """
    entry = CRITERIA.get(criterion)
    if entry.model_score is None:
        raise ConfigError(
            f"criterion {criterion!r} ranks the weights alone: call maskstudy.pruning.prune"
        )
    check_options(criterion, options)
    rounds = rounds or entry.rounds
    if rounds > 1 and entry.one_shot:
        raise ConfigError(f"{criterion} prunes in one shot: set prune.saliency.rounds to 0 or 1")
    device = next(model.parameters()).device
    home = {n: m.device for n, m in mask.items()}
    current = {n: m.to(device) for n, m in mask.items()}
    params = dict(model.named_parameters())
    weights = {n: params[n].detach() for n in current}
    amounts = dict(layer_amounts or {})
    groups = _groups(current, scope, amount, amounts, rounding)
    for r in range(1, rounds + 1):
        scored = entry.model_score(model, x, y, current, **options)
        start = scored.start if scored.start is not None else current
        if rounds > 1:
            amount, amounts = _round_rates(groups, current, r, rounds)
        current = prune(
            weights,
            start,
            criterion,
            amount,
            scope,
            layer_amounts=amounts,
            rounding="round" if rounds > 1 else rounding,
            scores={n: s.to(device) for n, s in scored.scores.items()},
        )
    return {n: m.to(home[n]) for n, m in current.items()}, scored.metrics
