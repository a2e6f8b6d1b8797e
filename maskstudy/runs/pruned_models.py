"""Models pruned with ``torch.nn.utils.prune`` read like maskstudy runs (one level each)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from maskstudy.errors import ConfigError, StoreError
from maskstudy.masks import Mask
from maskstudy.pruning.interop import from_torch_prune, plain_state_dict
from maskstudy.runs.config import RunConfig
from maskstudy.runs.foreign import ForeignRun, State
from maskstudy.runs.run import level_metrics

ConfigLike = RunConfig | Mapping[str, Any] | None

# --- models pruned with torch.nn.utils.prune ------------------------------------------------
_TORCH_CRITERIA = {
    torch_prune.L1Unstructured: "magnitude",
    torch_prune.RandomUnstructured: "random",
    torch_prune.LnStructured: "ln_structured",
    torch_prune.RandomStructured: "random_structured",
}


def _hook_settings(hook: torch_prune.BasePruningMethod) -> dict[str, Any] | None:
    """The prune.* fields of one torch pruning hook, or None when maskstudy has no equivalent."""
    criterion = _TORCH_CRITERIA.get(type(hook))
    amount = getattr(hook, "amount", None)
    if criterion is None or not isinstance(amount, float) or not 0 < amount < 1:
        return None
    settings = {"prune.criterion": criterion, "prune.amount": amount}
    if hasattr(hook, "dim"):
        settings["prune.dim"] = hook.dim
    if hasattr(hook, "n"):
        settings["prune.n"] = hook.n
    return settings


def torch_prune_settings(model: nn.Module) -> dict[str, Any]:
    """Dotted prune.* overrides when every pruned tensor of ``model`` had the same single
    torch method (e.g. l1_unstructured at 0.2); {} when they differ, were pruned repeatedly
    (PruningContainer), by a mask (custom_from_mask) or with a count instead of a fraction."""
    settings = [
        _hook_settings(hook)
        for module in model.modules()
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, torch_prune.BasePruningMethod)
    ]
    if not settings or settings[0] is None or any(s != settings[0] for s in settings):
        return {}
    return settings[0]


class ImportedRun(ForeignRun):
    """One level (0) of a model pruned with torch.nn.utils.prune, read like a maskstudy run.

    ``weights(0)`` (``final``) is the trained network; ``start`` exists only when the model's
    own weights were the starting point of a later training (``trained`` given). Level
    metrics are the mask counts plus whatever ``metrics`` the caller measured (e.g. test_acc).
    """

    def __init__(
        self,
        run_id: str,
        config: RunConfig,
        mask: Mask,
        weights: Mapping[str, State],
        metrics: Mapping[str, Any] | None = None,
        unknown: Sequence[str] = (),
    ) -> None:
        self.run_id, self.config, self._mask = run_id, config, mask
        self._weights, self._metrics = dict(weights), dict(metrics or {})
        # config fields nothing told (left at their defaults): tables show them as 'unknown'
        self.unknown = tuple(unknown)

    @property
    def levels(self) -> list[int]:
        return [0]

    def mask(self, level: int) -> Mask:
        self._require(level)
        return {name: m.clone() for name, m in self._mask.items()}

    def weights(self, level: int | None = 0, which: str = "final") -> State:
        if level is not None:
            self._require(level)
        if which not in self._weights:
            raise StoreError(
                f"{self.run_id} has no {which!r} weights; it has: {', '.join(self._weights)} "
                "(pass trained= to from_pruned_model to make the model's weights the start)"
            )
        return {name: w.clone() for name, w in self._weights[which].items()}

    def level_metrics(self, level: int) -> dict[str, Any]:
        # The step training started from is unknown for an imported model.
        metrics = level_metrics(self._require(level), self._mask, self._metrics, start_step=0)
        del metrics["start_step"]
        return metrics


def _plain(weights: nn.Module | Mapping[str, torch.Tensor]) -> State:
    if isinstance(weights, nn.Module):
        return plain_state_dict(weights)
    return {name: w.detach().clone() for name, w in weights.items()}


def from_pruned_model(
    model: nn.Module,
    name: str = "imported",
    trained: nn.Module | Mapping[str, torch.Tensor] | None = None,
    config: ConfigLike = None,
    metrics: Mapping[str, Any] | None = None,
) -> ImportedRun:
    """A one-level run from ``model`` pruned with torch.nn.utils.prune (its ``weight_mask`` buffers).

    ``trained``: the network after training under this mask (a module or state dict); then
    ``model``'s own weights are the level's ``start``. Without it ``model``'s weights (orig ×
    mask) are the ``final`` ones. ``config``: a RunConfig, or dotted overrides such as
    ``{"model.name": "lenet5", "seed": 3}`` on top of the prune.* settings read from the
    model's pruning hooks (:func:`torch_prune_settings`) and ``levels = 0``.
    """
    mask = from_torch_prune(model)
    if not mask:
        raise ConfigError(
            f"model {name!r} has no torch.nn.utils.prune masks (no *_mask buffers); prune it "
            "first, e.g. torch.nn.utils.prune.l1_unstructured(layer, 'weight', amount=0.2)"
        )
    own = plain_state_dict(model)
    weights = {"final": own}
    if trained is not None:
        final = _plain(trained)
        if set(final) != set(own):
            raise ConfigError(
                f"trained weights of {name!r} do not match the model (missing: "
                f"{sorted(set(own) - set(final))}, extra: {sorted(set(final) - set(own))}); "
                "pass the same architecture after training"
            )
        weights = {"final": final, "start": own}
    cfg, unknown = _imported_config(model, config)
    if unknown:
        warnings.warn(
            f"{name!r}: {' and '.join(unknown)} unknown: its torch.nn.utils.prune hooks do not "
            "name one method at one fraction (several methods, repeated or global pruning, "
            "custom_from_mask, or a count); tables show 'unknown'. Pass them, e.g. "
            "config={'prune.criterion': 'magnitude', 'prune.amount': 0.2}",
            stacklevel=2,
        )
    return ImportedRun(name, cfg, mask, weights, metrics, unknown)


PRUNE_FIELDS = ("prune.criterion", "prune.amount")  # what the hooks tell, when they can


def _imported_config(model: nn.Module, config: ConfigLike) -> tuple[RunConfig, tuple[str, ...]]:
    """The run's config, and the prune fields neither the hooks nor ``config`` told."""
    if isinstance(config, RunConfig):
        return config, ()
    read = torch_prune_settings(model)
    given = dict(config or {})
    unknown = tuple(f for f in PRUNE_FIELDS if f not in read and f not in given)
    return RunConfig(levels=0).replace({**read, **given}), unknown


def runs_from_pruned_models(
    models: Sequence[nn.Module],
    names: Sequence[str] | None = None,
    configs: Sequence[ConfigLike] | None = None,
) -> list[ImportedRun]:
    """One :func:`from_pruned_model` run per model, named ``names`` (default imported-<i>).

    ``overlap_table(runs, along=F)`` pairs runs whose configs differ only in ``F``: models
    pruned by different torch methods differ in ``criterion`` already; for others pass
    ``configs``, e.g. ``[{"seed": 0}, {"seed": 1}]`` to compare ``along="seed"``.
    """
    names = [f"imported-{i}" for i in range(len(models))] if names is None else list(names)
    configs = [None] * len(models) if configs is None else list(configs)
    if not len(models) == len(names) == len(configs):
        raise ConfigError(
            f"got {len(models)} models, {len(names)} names and {len(configs)} configs; "
            "pass one name and one config per model"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"names {names} repeat; give every model its own name")
    return [
        from_pruned_model(model, name, config=config)
        for model, name, config in zip(models, names, configs, strict=True)
    ]
