"""Robust accuracy of one model or K stacked replicas, and the per-level attack metrics of a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from maskstudy.data.base import Data, Split
from maskstudy.errors import ConfigError, DataError
from maskstudy.eval.attacks import PixelBox, fgsm, pgd, uniform_start
from maskstudy.seeds import generator
from maskstudy.train.loop import evaluate_replicas
from maskstudy.train.replicas import Replicas

if TYPE_CHECKING:
    from maskstudy.eval.config import AttackConfig

ATTACKS = ("fgsm", "pgd")


def robust_accuracy_replicas(
    net: Replicas,
    split: Split,
    eps_list: Sequence[float],
    attack: str = "fgsm",
    *,
    box: PixelBox | None = None,
    steps: int = 10,
    step_fraction: float = 0.25,
    seeds: Sequence[int] | None = None,
    batch_size: int = 500,
) -> list[dict[float, float]]:
    """Per replica, {eps: accuracy on ``split`` under ``attack``} (eval mode, restored after).

    PGD takes ``steps`` steps of ``step_fraction``·eps; with ``seeds`` (one per replica) it
    starts from a uniform point of the ball drawn from the replica's own stream, so a replica's
    numbers do not depend on the replicas beside it.
    """
    if attack not in ATTACKS:
        raise ConfigError(
            f"attack = {attack!r} is not allowed; choose one of: {', '.join(ATTACKS)}"
        )
    if len(split) == 0:
        raise DataError("cannot attack an empty split; give it at least one example")
    if seeds is not None and len(seeds) != net.size:
        raise ConfigError(f"{net.size} replicas need {net.size} seeds, got {len(seeds)}")
    gens = [generator(s, "pgd_start") for s in seeds] if seeds is not None else None
    correct = {eps: torch.zeros(net.size, dtype=torch.long) for eps in eps_list}
    was_training = net.training
    net.train(False)
    try:
        for i in range(0, len(split), batch_size):
            x = split.x[i : i + batch_size].expand(net.size, -1, *split.x.shape[1:]).clone()
            y = split.y[i : i + batch_size].expand(net.size, -1)
            for eps in eps_list:
                if attack == "fgsm":
                    adv = fgsm(net, x, y, eps, box)
                else:
                    start = None
                    if gens is not None:
                        start = torch.stack([uniform_start(x[0], eps, g) for g in gens])
                    adv = pgd(net, x, y, eps, steps, step_fraction * eps, box=box, start=start)
                with torch.no_grad():
                    correct[eps] += (net(adv).argmax(-1) == y).sum(1).cpu()
    finally:
        net.train(was_training)
    return [{eps: int(c[k]) / len(split) for eps, c in correct.items()} for k in range(net.size)]


def robust_accuracy(
    model: nn.Module,
    split: Split,
    eps_list: Sequence[float],
    attack: str = "fgsm",
    *,
    box: PixelBox | None = None,
    steps: int = 10,
    step_fraction: float = 0.25,
    seed: int | None = None,
    batch_size: int = 500,
) -> dict[float, float]:
    """{eps: accuracy of ``model`` on ``split`` under ``attack``}; ``seed`` = PGD random start."""
    seeds = None if seed is None else [seed]
    return robust_accuracy_replicas(
        Replicas([model]),
        split,
        eps_list,
        attack,
        box=box,
        steps=steps,
        step_fraction=step_fraction,
        seeds=seeds,
        batch_size=batch_size,
    )[0]


def metric_key(attack: str, eps: float) -> str:
    """The metrics.json key of an attack accuracy, e.g. ``pgd_acc_eps0.03137``."""
    return f"{attack}_acc_eps{eps:.4g}"


def attack_metrics(
    net: Replicas, data: Data, cfg: AttackConfig, seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """Per replica: clean and attacked accuracies on the (first ``cfg.subset``) test examples."""
    if not cfg.eps:
        return [{} for _ in range(net.size)]
    split = data.test
    if cfg.subset:
        split = split.subset(torch.arange(min(cfg.subset, len(split)), device=split.x.device))
    box = PixelBox.of(data.train)
    rows: list[dict[str, Any]] = [
        {"attack_examples": len(split), "attack_clean_acc": acc}
        for _, acc in evaluate_replicas(net, split)
    ]
    for kind in cfg.kinds:
        results = robust_accuracy_replicas(
            net,
            split,
            cfg.eps,
            kind,
            box=box,
            steps=cfg.pgd_steps,
            step_fraction=cfg.pgd_step,
            seeds=seeds if cfg.random_start else None,
        )
        for row, accs in zip(rows, results, strict=True):
            row.update({metric_key(kind, eps): acc for eps, acc in accs.items()})
    return rows


def check_attack(cfg: AttackConfig) -> None:
    """Validate an ``AttackConfig``: each error names the field and what it accepts."""
    for eps in cfg.eps:
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
            raise ConfigError(
                f"attack.eps = {eps!r}: every radius must lie in (0, 1] pixel units, e.g. "
                "0.0314 for 8/255"
            )
    keys = [metric_key("x", eps) for eps in cfg.eps]
    if len(set(keys)) < len(keys):
        raise ConfigError(
            f"attack.eps = {list(cfg.eps)} holds radii equal to 4 significant digits; "
            "give each radius once"
        )
    for kind in cfg.kinds:
        if kind not in ATTACKS:
            raise ConfigError(f"attack.kinds has {kind!r}; choose from: {', '.join(ATTACKS)}")
    if len(set(cfg.kinds)) < len(cfg.kinds):
        raise ConfigError(f"attack.kinds = {list(cfg.kinds)} names an attack twice")
    steps = cfg.pgd_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"attack.pgd_steps = {steps!r} must be an integer >= 1")
    step = cfg.pgd_step
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step <= 1:
        raise ConfigError(
            f"attack.pgd_step = {step!r} must be a fraction of eps in (0, 1], e.g. 0.25"
        )
    subset = cfg.subset
    if isinstance(subset, bool) or not isinstance(subset, int) or subset < 0:
        raise ConfigError(
            f"attack.subset = {subset!r} must be an integer >= 0 (0 = the whole test split)"
        )
