"""The iterative pruning loop: train → save the level → prune → apply the regime → repeat.

Every level is saved (mask, final weights, metrics) before the next starts, and a finished level
is never retrained: calling ``run`` again resumes at the first incomplete level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from maskstudy.data import from_config
from maskstudy.data.base import Data
from maskstudy.errors import ConfigError
from maskstudy.models import build
from maskstudy.pruning import prune
from maskstudy.pruning.masks import (
    Mask,
    apply_mask_,
    full_mask,
    kept_total,
    layer_densities,
    prunable_names,
)
from maskstudy.runs.config import RunConfig
from maskstudy.runs.seeds import derive_seed, generator
from maskstudy.runs.steps import to_iterations
from maskstudy.runs.store import Run, create_run, save_level, save_weights
from maskstudy.train import iterations_per_epoch, train


def run(
    cfg: RunConfig,
    out: str | Path = "runs",
    *,
    data_root: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    data: Data | None = None,
) -> Run:
    """Execute (or resume) every level of ``cfg`` into ``out/<run_id>`` and return the run."""
    run_dir = Path(out) / cfg.run_id()
    done = Run(run_dir).levels if (run_dir / "config.json").is_file() else []
    todo = [lv for lv in range(cfg.levels + 1) if lv not in set(done)]
    if not todo:
        return create_run(run_dir, cfg)
    data = data if data is not None else from_config(cfg.data, data_root, device)
    model = build_model(cfg, data, seed=cfg.seed).to(device)
    layers = resolve_layers(cfg, model)
    ipe = iterations_per_epoch(len(data.train), cfg.train.batch_size)
    total = to_iterations(cfg.train.duration, ipe)
    k = to_iterations(cfg.rewind_to, ipe)
    if k >= total:
        raise ConfigError(
            f"rewind_to = {cfg.rewind_to!r} ({k} iterations) is not before the end of training "
            f"(train.duration = {cfg.train.duration!r} = {total} iterations)"
        )
    store = create_run(run_dir, cfg)  # only now: a config that cannot run leaves nothing behind
    if not (run_dir / "init.safetensors").is_file():
        save_weights(store, "init", model.state_dict())
    for level in todo:
        mask = level_mask(store, cfg, model, level, layers)
        start, start_step = starting_point(store, cfg, data, level, k)
        model.load_state_dict(start)
        apply_mask_(model, mask)
        result = train(
            model,
            data,
            cfg.train,
            mask=mask,
            seed=derive_seed(cfg.seed, "data"),
            start_step=start_step,
            snapshot_step=k if level == 0 and k > 0 else None,
            progress=f"level {level}/{cfg.levels}" if progress else None,
        )
        if level == 0 and k > 0:
            save_weights(store, "rewind", result.snapshot)
        metrics = level_metrics(level, mask, result.final, start_step)
        fresh = start if level > 0 and cfg.regime == "reinit" else None
        save_level(store, level, mask, model.state_dict(), metrics, result.history, start=fresh)
    return store


def build_model(cfg: RunConfig, data: Data, seed: int) -> nn.Module:
    m = cfg.model
    return build(m.name, data.input_shape, data.num_classes, init=m.init, width=m.width, seed=seed)


def level_mask(store: Run, cfg: RunConfig, model: nn.Module, level: int, layers: Layers) -> Mask:
    """Level 0: all prunable weights kept. Level L: prune the trained weights of level L−1."""
    if level == 0:
        return full_mask(model, exclude=layers.exclude)
    previous, trained = store.mask(level - 1), store.weights(level - 1)
    p = cfg.prune
    mask = prune(
        {name: trained[name] for name in previous},
        previous,
        p.criterion,
        p.amount,
        p.scope,
        layer_amounts=layers.amounts,
        rounding=p.rounding,
        n=p.n,
        dim=p.dim,
        generator=generator(cfg.seed, "prune", level),
    )
    if cfg.regime == "random_mask":
        mask = shuffled_mask(mask, generator(cfg.seed, "random_mask", level))
    return mask


def shuffled_mask(mask: Mask, gen: torch.Generator) -> Mask:
    """A uniformly random mask with the same number of kept weights in every tensor."""
    out = {}
    for name, m in mask.items():
        order = torch.randperm(m.numel(), generator=gen)
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[order[: int(m.sum())]] = True
        out[name] = flat.view(m.shape).to(m.device)
    return out


def starting_point(store: Run, cfg: RunConfig, data: Data, level: int, k: int) -> tuple[dict, int]:
    """The weights level ``level`` trains from, and the absolute step it starts at."""
    if level == 0:
        return store.weights(which="init"), 0
    if cfg.regime == "finetune":
        return store.weights(level - 1), 0
    if cfg.regime == "reinit":
        fresh = build_model(cfg, data, seed=derive_seed(cfg.seed, "reinit", level))
        return fresh.state_dict(), 0
    return store.weights(which="rewind" if k > 0 else "init"), k  # rewind, random_mask


def level_metrics(level: int, mask: Mask, final: dict, start_step: int) -> dict:
    kept, total = kept_total(mask)
    densities = layer_densities(mask)
    return {
        "level": level,
        "kept": kept,
        "total": total,
        "percent_remaining": 100.0 * kept / total if total else 100.0,
        "layer_density": densities,
        "collapsed": [name for name, d in densities.items() if d == 0.0],
        "start_step": start_step,
        **final,
    }


OUTPUT_ALIAS = "output"


@dataclass(frozen=True)
class Layers:
    """Per-tensor pruning overrides with the ``"output"`` alias resolved to the model's classifier."""

    amounts: dict[str, float]
    exclude: tuple[str, ...]


def resolve_layers(cfg: RunConfig, model: nn.Module) -> Layers:
    """Resolve and check the tensor names of ``prune.layer_amounts`` and ``prune.exclude``."""
    names = prunable_names(model)

    def resolve(key: str, field: str) -> str:
        name = model.output_layer if key == OUTPUT_ALIAS else key
        if name not in names:
            raise ConfigError(
                f"{field} names {key!r}, which is not a prunable tensor of {cfg.model.name}; "
                f"use {OUTPUT_ALIAS!r} for the classifier or one of: {', '.join(names)}"
            )
        return name

    amounts = {resolve(k, "prune.layer_amounts"): v for k, v in cfg.prune.layer_amounts.items()}
    exclude = tuple(resolve(k, "prune.exclude") for k in cfg.prune.exclude)
    return Layers(amounts, exclude)
