"""Pruning criteria and ``prune``: one level of iterative pruning, mask in → mask out.

Semantics follow torch.nn.utils.prune applied iteratively: ``amount`` is the fraction of the
weights (or, for structured criteria, of the slices) still alive that this call removes, and
the count is ``round(amount × alive)``. Unstructured criteria rank individual weights;
structured criteria rank whole slices along ``dim`` (0 = output filters/units, 1 = input
channels) by a score, exactly as ``ln_structured`` does inside a PruningContainer.

Every criterion removes weights through ``drop_lowest``. Ties: lower score first, then lower flat
(row-major) index; global scope: the index in the concatenation of the tensors in mask order. It
is a stable sort, so the same on every device, where torch's topk leaves tie order unspecified.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from maskstudy.errors import ConfigError
from maskstudy.masks import Mask, check_mask
from maskstudy.registry import Registry

Tensor = torch.Tensor
Scorer = Callable[..., Tensor]


@dataclass(frozen=True)
class Criterion:
    """A named scoring rule: low scores are pruned first.

    ``structured`` criteria score slices along ``dim`` and prune whole slices; the others
    score every weight. ``select(w, mask, amount, rounding, **options)``, when given, returns a
    tensor's new mask itself (granularity.py: kernels, windows inside kernels); ``step(weights,
    mask, amount, **how)`` replaces ranking altogether (drop.py: removes some candidates, revives
    pruned weights). ``model_score(model, x, y, mask, **options)`` criteria (saliency.py: snip,
    grasp, synflow, pca) score the model on data and ``prune`` ranks those scores, passed as
    ``scores=``; ``at_init`` ones score θ0 by default, ``rounds`` is their default number of
    sub-rounds per level, ``one_shot`` ones cannot run in sub-rounds. ``needs_init`` criteria
    (movement.py) also rank by θ0: ``prune`` takes it as ``init=`` and hands ``score`` each
    tensor's own.

    ``options`` is the criterion's own config section, a frozen dataclass read as
    ``prune.<section>.*`` (criteria may share one: snip, grasp, synflow and pca read
    ``prune.saliency``). Its fields reach ``score``/``select``/``step``/``model_score`` as
    keyword options; its ``check(prune)`` method, when defined, validates it against the rest of
    the prune section.
    """

    score: Scorer
    structured: bool = False
    select: Callable[..., Tensor] | None = None
    step: Callable[..., Mask] | None = None
    model_score: Callable[..., Any] | None = None
    needs_init: bool = False
    at_init: bool = False
    rounds: int = 1
    one_shot: bool = False
    options: type | None = None
    section: str = ""

    @property
    def needs_model(self) -> bool:
        return self.model_score is not None


CRITERIA: Registry[Criterion] = Registry("criterion")
ROUNDERS: dict[str, Callable[[float], int]] = {
    "round": round,
    "ceil": math.ceil,
    "floor": math.floor,
}


def _register(name: str, structured: bool = False) -> Callable[[Scorer], Scorer]:
    def add(score: Scorer) -> Scorer:
        CRITERIA.register(name)(Criterion(score, structured))
        return score

    return add


@_register("magnitude")
def magnitude_scores(w: Tensor, **_: object) -> Tensor:
    """|w|: the lottery-ticket criterion (l1_unstructured / global_unstructured)."""
    return w.abs()


@_register("random")
def random_scores(w: Tensor, *, generator: torch.Generator | None = None, **_: object) -> Tensor:
    """Uniform noise: a random mask with the same counts as magnitude pruning."""
    return torch.rand(w.shape, generator=generator).to(w.device)


@_register("ln_structured", structured=True)
def ln_scores(w: Tensor, *, n: int = 1, dim: int = 0, **_: object) -> Tensor:
    """L_n norm of every slice along ``dim`` (torch.nn.utils.prune.ln_structured)."""
    others = [d for d in range(w.dim()) if d != dim]
    return torch.norm(w, p=n, dim=others)


@_register("random_structured", structured=True)
def random_slice_scores(
    w: Tensor, *, dim: int = 0, generator: torch.Generator | None = None, **_: object
) -> Tensor:
    """Uniform noise per slice along ``dim``: random filters (dim 0) or channels (dim 1)."""
    return torch.rand(w.shape[dim], generator=generator).to(w.device)


def prune_count(amount: float, alive: int, rounding: str = "round") -> int:
    """How many of ``alive`` weights (or slices) a level removes: rounding(amount × alive)."""
    if rounding not in ROUNDERS:
        raise ConfigError(
            f"rounding = {rounding!r} is not allowed; choose one of: {', '.join(ROUNDERS)}"
        )
    return min(alive, int(ROUNDERS[rounding](amount * alive)))


def _check_amount(amount: float, where: str) -> None:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount <= 1:
        raise ConfigError(
            f"{where} = {amount!r} must be a fraction between 0 and 1 (of the weights still alive)"
        )


def drop_lowest(scores: Tensor, count: int | Tensor) -> Tensor:
    """Bool keep-mask over ``scores`` with the ``count`` lowest along the last dim set False.

    ``count`` is an int or a tensor broadcasting against (..., 1) (one count per row). Ties: lower
    score first, then lower index (a stable sort: the same on CPU and GPU); −0.0 ranks as 0.0.
    """
    order = torch.argsort(scores + 0.0, dim=-1, stable=True)  # + 0.0 turns −0.0 into 0.0
    place = torch.arange(scores.shape[-1], device=scores.device)
    keep = torch.empty_like(scores, dtype=torch.bool)
    return keep.scatter_(-1, order, (place >= count).expand_as(order))


def _unstructured(score: Tensor, mask: Tensor, amount: float, rounding: str) -> Tensor:
    """Drop the lowest-scored ``amount`` of the alive weights of one tensor (l1_unstructured)."""
    alive = mask.reshape(-1)
    new = alive.clone()
    new[alive] = drop_lowest(
        score.reshape(-1)[alive], prune_count(amount, int(alive.sum()), rounding)
    )
    return new.view(mask.shape)


def _structured(
    name: str,
    w: Tensor,
    mask: Tensor,
    crit: Criterion,
    amount: float,
    dim: int,
    rounding: str,
    options: dict,
) -> Tensor:
    """Prune whole slices among the slices still alive, as torch's PruningContainer does."""
    if dim >= w.dim():
        raise ConfigError(f"cannot prune {name} (shape {tuple(w.shape)}) along dim={dim}")
    others = [d for d in range(w.dim()) if d != dim]
    live_slices = mask.sum(dim=others) != 0
    index = [slice(None)] * w.dim()
    index[dim] = live_slices
    sub_w, sub_mask = (w * mask)[tuple(index)], mask[tuple(index)]
    slices = sub_w.shape[dim]
    keep_slice = drop_lowest(crit.score(sub_w, **options), prune_count(amount, slices, rounding))
    shape = [1] * w.dim()
    shape[dim] = slices
    new = mask.clone()
    new[tuple(index)] = sub_mask & keep_slice.view(shape)
    return new


def _global(
    names: list[str],
    scores: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    amount: float,
    rounding: str,
) -> dict[str, Tensor]:
    """Rank the alive weights of all ``names`` together (global_unstructured)."""
    alive = [mask[n].reshape(-1) for n in names]
    flat = torch.cat([scores[n].reshape(-1)[a] for n, a in zip(names, alive, strict=True)])
    keep = drop_lowest(flat, prune_count(amount, flat.numel(), rounding))
    out, start = {}, 0
    for n, a in zip(names, alive, strict=True):
        new = a.clone()
        k = int(a.sum())
        new[a] = keep[start : start + k]
        start += k
        out[n] = new.view(mask[n].shape)
    return out


def check_options(criterion: str, options: Mapping[str, Any], common: Iterable[str] = ()) -> None:
    """ConfigError naming the valid ones unless every key of ``options`` is one of ``common`` or
    a field of the criterion's option section (a misspelt option is never ignored)."""
    section = CRITERIA.get(criterion).options
    allowed = {*common, *(f.name for f in fields(section))} if section else set(common)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"criterion {criterion!r} takes no option {', '.join(map(repr, unknown))}; its "
            f"options: {', '.join(sorted(allowed)) or 'none'}"
        )


def prune(
    weights: Mapping[str, Tensor],
    mask: Mapping[str, Tensor] | None,
    criterion: str,
    amount: float,
    scope: str = "layer",
    *,
    layer_amounts: Mapping[str, float] | None = None,
    exclude: Iterable[str] = (),
    rounding: str = "round",
    generator: torch.Generator | None = None,
    scores: Mapping[str, Tensor] | None = None,
    **options: Any,
) -> Mask:
    """One pruning level: remove ``amount`` of the alive weights of every masked tensor.

    ``weights`` maps parameter names to tensors; ``mask`` is the current mask (None = all
    of ``weights`` alive). ``scope="global"`` ranks the weights of all tensors together,
    except tensors given their own rate in ``layer_amounts`` (pruned layer by layer at
    that rate). Tensors in ``exclude`` pass through unchanged. ``scores`` replaces the
    weights as the ranked quantity (torch.nn.utils.prune's ``importance_scores``).
    ``options`` go to the criterion: ``n`` and ``dim`` (structured), the fields of its config
    section (``PruneConfig.criterion_options()``), e.g. ``away`` and ``target`` for ``drop``,
    and ``init`` (θ0 by name) for the criteria that rank how weights moved from it.
    """
    crit = CRITERIA.get(criterion)
    check_options(criterion, options, ("n", "dim", "init"))
    if crit.needs_model and scores is None:
        raise ConfigError(
            f"criterion {criterion!r} scores the model on data: call "
            "maskstudy.pruning.saliency.saliency_prune, or pass its scores as scores="
        )
    init = options.pop("init", None)
    if crit.needs_init and (init is None or set(mask or weights) - set(init)):
        raise ConfigError(
            f"criterion {criterion!r} ranks how each weight moved from θ0: pass init=, θ0 of "
            "every masked tensor by name (a run passes its init.safetensors)"
        )
    if crit.step is not None:
        how = dict(scope=scope, layer_amounts=layer_amounts, exclude=exclude, rounding=rounding)
        ranked = scores if scores is not None else weights
        return crit.step(ranked, mask, amount, generator=generator, **how, **options)
    if scope not in ("layer", "global"):
        raise ConfigError(f"scope = {scope!r} is not allowed; choose 'layer' or 'global'")
    if crit.structured and scope == "global":
        raise ConfigError(f"{criterion} prunes each tensor on its own: use scope='layer'")
    _check_amount(amount, "amount")
    layer_amounts = dict(layer_amounts or {})
    for name, value in layer_amounts.items():
        _check_amount(value, f"layer_amounts[{name!r}]")
    current = (
        dict(mask)
        if mask is not None
        else {n_: torch.ones_like(w, dtype=torch.bool) for n_, w in weights.items()}
    )
    check_mask(current, weights)
    for name in [*layer_amounts, *exclude]:
        if name not in current:
            raise ConfigError(
                f"{name!r} is not a masked tensor; masked tensors: {', '.join(current)}"
            )
    excluded = set(exclude)
    ranked = {
        name: (scores[name] if scores is not None else weights[name]).detach() for name in current
    }
    options = {"generator": generator, "n": 1, "dim": 0, **options}
    dim = options["dim"]

    def of(
        name: str,
    ) -> dict[str, Any]:  # the options of one tensor: its θ0 if the criterion wants it
        return {**options, "init": init[name]} if crit.needs_init else options

    out = {name: current[name].clone() for name in excluded}
    pooled = [
        name
        for name in current
        if name not in excluded and name not in layer_amounts and scope == "global"
    ]
    if pooled:
        pooled_scores = {name: crit.score(ranked[name], **of(name)) for name in pooled}
        out.update(_global(pooled, pooled_scores, current, amount, rounding))
    for name, m in current.items():
        if name in out:
            continue
        rate = layer_amounts.get(name, amount)
        if crit.select is not None:
            out[name] = crit.select(ranked[name], m, rate, rounding, **of(name))
        elif crit.structured:
            out[name] = _structured(name, ranked[name], m, crit, rate, dim, rounding, of(name))
        else:
            score = crit.score(ranked[name], **of(name))
            out[name] = _unstructured(score, m, rate, rounding)
    return {name: out[name] for name in current}
