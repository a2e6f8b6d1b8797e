"""Linear mode connectivity (Frankle et al. 2020; docs/methods.md#linear-mode-connectivity-analysislmc): train two copies of a level
from the same start with different data orders, then measure the error along the straight line
between them. The error barrier sup_α E(αW¹ + (1−α)W²) − ½(E(W¹) + E(W²)) is ≈ 0 for a
network that is stable to SGD noise; Frankle et al. call it stable below 2 %.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from maskstudy.data import from_config
from maskstudy.data.base import Data, Split
from maskstudy.errors import ConfigError
from maskstudy.runs.checks import check_device
from maskstudy.runs.config import RunConfig
from maskstudy.runs.run import build_model
from maskstudy.runs.scratch import level_budget
from maskstudy.runs.store import Run
from maskstudy.seeds import derive_seed
from maskstudy.steps import Steps, to_iterations
from maskstudy.train import (
    cpu_threads,
    evaluate,
    iterations_per_epoch,
    replica_net,
    train,
    train_replicas,
)
from maskstudy.train.plan import TrainPlan

__all__ = [
    "LMCResult",
    "STABLE_BARRIER",
    "error_barrier",
    "interpolate",
    "interpolation_errors",
    "lmc_csv_name",
    "lmc_probe",
]

STABLE_BARRIER = 0.02  # Frankle et al. (LMC): stable when the barrier is below 2 % error
SPLITS = ("test", "train")

State = Mapping[str, torch.Tensor]


def interpolate(w1: State, w2: State, alpha: float) -> dict[str, torch.Tensor]:
    """α·w1 + (1−α)·w2 for every floating tensor (BatchNorm running statistics included);
    integer tensors (``num_batches_tracked``) are taken from ``w1``. Exact at α = 0 and 1."""
    return {
        name: alpha * t + (1 - alpha) * w2[name] if t.is_floating_point() else t.clone()
        for name, t in w1.items()
    }


def _check_states(model: nn.Module, w1: State, w2: State) -> None:
    expected = model.state_dict()
    for label, state in (("w1", w1), ("w2", w2)):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or extra:
            raise ConfigError(
                f"{label} does not match the model's state dict (missing: {missing}, "
                f"extra: {extra}); pass full state dicts of this architecture"
            )
        for name, t in state.items():
            if tuple(t.shape) != tuple(expected[name].shape):
                raise ConfigError(
                    f"{label}[{name!r}] has shape {tuple(t.shape)} but the model's has "
                    f"{tuple(expected[name].shape)}: the weights belong to another model"
                )


def interpolation_errors(
    model: nn.Module,
    w1: State,
    w2: State,
    split: Split,
    points: int = 30,
    batch_size: int = 1000,
) -> pd.DataFrame:
    """Loss and error (1 − accuracy) of :func:`interpolate` (w1, w2, α) on ``split`` at
    ``points`` evenly spaced α in [0, 1] (both ends included): α = 1 is ``w1``, α = 0 is ``w2``.

    Columns ``alpha``, ``loss``, ``error``. ``model`` only gives the architecture: a copy of it,
    moved to the split's device, is evaluated (eval mode, :func:`maskstudy.train.loop.evaluate`).
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ConfigError(f"points = {points!r} must be an integer >= 2 (both ends of the path)")
    _check_states(model, w1, w2)
    probe = copy.deepcopy(model).to(split.x.device)
    rows = []
    for alpha in np.linspace(0.0, 1.0, points).tolist():
        probe.load_state_dict(interpolate(w1, w2, alpha))
        loss, accuracy = evaluate(probe, split, batch_size)
        rows.append({"alpha": alpha, "loss": loss, "error": 1.0 - accuracy})
    return pd.DataFrame(rows)


def error_barrier(errors: pd.DataFrame | Sequence[float] | np.ndarray) -> float:
    """sup_α E_α − ½(E(W¹) + E(W²)): the highest error on the path above the mean of its ends.

    ``errors`` is one curve: a frame with ``alpha`` and ``error`` columns (any row order), or
    the errors themselves ordered by α. Never negative, since the ends are on the path.
    """
    if isinstance(errors, pd.DataFrame):
        if not {"alpha", "error"} <= set(errors.columns):
            raise ConfigError(
                f"the error frame has columns {list(errors.columns)}; it needs 'alpha' and "
                "'error' (the output of interpolation_errors for one split)"
            )
        if errors["alpha"].duplicated().any():
            raise ConfigError(
                "the error frame repeats alpha values: it holds more than one curve; "
                "select one split first, e.g. curve[curve.split == 'test']"
            )
        values = errors.sort_values("alpha")["error"].to_numpy(np.float64)
    else:
        values = np.asarray(errors, dtype=np.float64).reshape(-1)
    if len(values) < 2:
        raise ConfigError(
            f"an error curve needs at least its two end points, got {len(values)} values"
        )
    return float(values.max() - (values[0] + values[-1]) / 2)


@dataclass
class LMCResult:
    """The outcome of :func:`lmc_probe` for one level of one run.

    ``curve``: tidy frame (``split``, ``alpha``, ``loss``, ``error``) for the test and train
    splits, α = 1 being copy 1; ``barrier_test`` / ``barrier_train``: :func:`error_barrier`
    of each split; ``stable``: ``barrier_test < STABLE_BARRIER``; ``final_errors``: per split,
    the (copy 1, copy 2) errors; ``weights``: the two trained copies' state dicts.
    """

    level: int
    start_step: int
    seeds: tuple[int, int]
    curve: pd.DataFrame
    barrier_test: float
    barrier_train: float
    stable: bool
    final_errors: dict[str, tuple[float, float]]
    weights: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]

    def summary(self) -> dict[str, Any]:
        """The scalar results as one flat dict (a table row, or what a CLI prints)."""
        out: dict[str, Any] = {
            "level": self.level,
            "start_step": self.start_step,
            "seeds": list(self.seeds),
            "barrier_test": self.barrier_test,
            "barrier_train": self.barrier_train,
            "stable": self.stable,
        }
        for split, (e1, e2) in self.final_errors.items():
            out[f"{split}_error_1"], out[f"{split}_error_2"] = e1, e2
        return out


def _check_probe(run: Run, level: int, seeds: Sequence[int]) -> tuple[int, int]:
    if level not in run.levels:
        raise ConfigError(
            f"level = {level!r} is not a completed level of {run.path}; "
            f"completed levels: {run.levels}"
        )
    seeds = tuple(seeds)
    valid = all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    if len(seeds) != 2 or not valid or seeds[0] == seeds[1]:
        raise ConfigError(
            f"seeds = {seeds!r} must be two different integers >= 0 "
            "(the data-order seeds of the two copies), e.g. (1, 2)"
        )
    return seeds[0], seeds[1]


def _check_rewind(run: Run, level: int, rewind_to: str | None) -> None:
    if rewind_to is None:
        return
    Steps.parse(rewind_to, "rewind_to")
    if level > 0:
        raise ConfigError(
            f"rewind_to = {rewind_to!r} applies to level 0 (the dense network) only: level "
            f"{level}'s mask was found with the run's rewind_to = {run.config.rewind_to!r}. "
            "To probe sub-networks rewound elsewhere, run the config with that rewind_to"
        )


def _not_replayable(cfg: RunConfig) -> str | None:
    """Why training θ0 for k steps alone would not retrace the run's level 0 (None: it would)."""
    if cfg.train.schedule == "cosine":
        return "its cosine learning rate depends on the training length"
    if cfg.prune.schedule == "gradual":
        return "its level-0 mask changed during training (prune.schedule = 'gradual')"
    return None


def _replay_dense(run: Run, data: Data, k: int) -> dict[str, torch.Tensor]:
    """θk of a run that did not store it: θ0 trained k steps as level 0 trained it (its data
    order, learning rates and mask), which is exact when nothing depends on the training length.
    """
    cfg = run.config
    reason = _not_replayable(cfg)
    if reason is not None:
        raise ConfigError(
            f"{run.path} does not store θk for k = {k} iterations, and {reason}, so training θ0 "
            f"for k steps would not retrace it. Run the config with rewind_to = '{k}it' to store θk"
        )
    model = build_model(cfg, data, seed=cfg.seed).to(data.device)
    model.load_state_dict(run.weights(which="init"))
    short = replace(cfg.train, duration=f"{k}it", eval_every=f"{k}it")
    train(model, data, short, mask=run.mask(0), seed=derive_seed(cfg.seed, "data"))
    return model.state_dict()


def _level_start(
    run: Run, level: int, data: Data, rewind_to: str | None
) -> tuple[dict[str, torch.Tensor], int]:
    """(weights, absolute step) the two copies of ``level`` start from. Level L > 0: where the
    run started it. Level 0, the dense network: θk at step k, k = ``rewind_to`` or the run's
    own rewind point; θ0 for k = 0, the stored θk, or θk replayed by :func:`_replay_dense`."""
    if level > 0:
        return run.weights(level, which="start"), int(run.level_metrics(level)["start_step"])
    cfg = run.config
    per_epoch = iterations_per_epoch(len(data.train), cfg.train.batch_size)
    wanted = cfg.rewind_to if rewind_to is None else rewind_to
    k, total = to_iterations(wanted, per_epoch), to_iterations(cfg.train.duration, per_epoch)
    if k >= total:
        raise ConfigError(
            f"rewind_to = {wanted!r} ({k} iterations) is not before the end of training "
            f"(train.duration = {cfg.train.duration!r} = {total} iterations)"
        )
    if k == 0:
        return run.weights(which="init"), 0
    if k == to_iterations(cfg.rewind_to, per_epoch):
        return run.weights(which="rewind"), k
    return _replay_dense(run, data, k), k


def lmc_csv_name(level: int, seeds: Sequence[int], start_step: int | None = None) -> str:
    """File name of a level's curve in RUN/analysis (``maskstudy lmc``'s default), with the
    start step when the copies start from a chosen θk."""
    at_k = "" if start_step is None else f"_k{start_step}"
    return f"lmc_level{level:02d}{at_k}_seeds{seeds[0]}-{seeds[1]}.csv"


def lmc_probe(
    run: Run,
    level: int,
    *,
    data_root: str | Path | None = None,
    data: Data | None = None,
    seeds: Sequence[int] = (1, 2),
    points: int = 30,
    device: str = "cpu",
    progress: bool = False,
    rewind_to: str | None = None,
) -> LMCResult:
    """Instability analysis of level ``level`` of a stored run (Frankle et al. 2020).

    Two copies start from the level's start weights under its mask, at its start step; at level
    0, the dense network, from θk at step k, k = ``rewind_to`` (e.g. '500it') or else the run's
    own rewind point (θ0 for k = 0; a θk the run did not store is retrained from θ0 on the run's
    data order). They train as the level trained (its schedule: the run's ``train``, held at
    the final learning rate for finetune levels, stretched for scratch_b) side by side, copy i
    seeing the data order (and augmentation) of ``seeds[i]``. Then the errors along the
    straight line between them on the test and train splits, and the barriers. ``data`` (a
    preloaded dataset, moved to ``device``) skips loading ``run.config.data`` from
    ``data_root`` (default: the folder the run trained from, as its config.json records). Raises ConfigError for a level the run has not completed, or ``rewind_to``
    at a level > 0.
    """
    check_device(device)
    seed_pair = _check_probe(run, level, seeds)
    _check_rewind(run, level, rewind_to)  # before loading the data
    cfg = run.config
    if data is None:  # by default, the folder the run trained from
        data = from_config(cfg.data, data_root or run.data_root, device)
    data = data.to(device)
    with cpu_threads(cfg.train.threads):  # the run's own arithmetic
        mask = run.mask(level)
        start, start_step = _level_start(run, level, data, rewind_to)
        template = build_model(cfg, data, seed=cfg.seed).to(device)
        net = replica_net(template, [start, start])
        base = TrainPlan.of(cfg.train, iterations_per_epoch(len(data.train), cfg.train.batch_size))
        budget = level_budget(cfg, base, template, data, level, mask)  # finetune: final LR
        train_replicas(
            net,
            data,
            budget.train,
            plan=budget.plan,  # scratch_b: stretched
            masks=[mask, mask],
            seeds=list(seed_pair),
            start_step=start_step,
            progress=f"lmc level {level} ×2 copies" if progress else None,
        )
    w1, w2 = net.states()
    curves = {
        name: interpolation_errors(template, w1, w2, split, points)
        for name, split in (("test", data.test), ("train", data.train))
    }
    barriers = {name: error_barrier(curve) for name, curve in curves.items()}
    curve = pd.concat([c.assign(split=name) for name, c in curves.items()], ignore_index=True)[
        ["split", "alpha", "loss", "error"]
    ]
    return LMCResult(
        level=level,
        start_step=start_step,
        seeds=seed_pair,
        curve=curve,
        barrier_test=barriers["test"],
        barrier_train=barriers["train"],
        stable=barriers["test"] < STABLE_BARRIER,
        final_errors={
            name: (float(c["error"].iloc[-1]), float(c["error"].iloc[0]))
            for name, c in curves.items()
        },
        weights=(w1, w2),
    )
