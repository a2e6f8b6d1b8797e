"""The training loop: index-slice batches in a resumable order, exact masks, periodic evaluation.

Everything random in training is a pure function of ``(seed, absolute step)``: epoch ``e`` is
shuffled by a generator seeded from ``(seed, e)`` and the augmentation of step ``s`` by one
seeded from ``(seed, s)``. Training from ``start_step = k`` therefore sees exactly the batches
an uninterrupted run sees at steps k..T-1. The optimizer state (momentum, Adam moments) is fresh
at ``start_step``: that is what rewinding the weights to step k means.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from maskstudy.data.base import Data, Split, random_crop_flip
from maskstudy.errors import ConfigError, DataError, MaskstudyError
from maskstudy.pruning.masks import Mask, apply_mask_, check_mask
from maskstudy.runs.config import TrainConfig
from maskstudy.runs.seeds import generator
from maskstudy.runs.steps import to_iterations
from maskstudy.train.optim import build_optimizer, lr_factor, set_lr_


class Diverged(MaskstudyError):
    """The training loss became NaN or infinite at absolute step ``step``."""

    def __init__(self, step: int, loss: float) -> None:
        self.step = step
        super().__init__(
            f"training diverged at step {step}: the loss is {loss}; "
            "lower train.lr or add a warm-up (train.warmup)"
        )


@dataclass
class TrainResult:
    """Evaluation rows, the last row plus summary figures, and the optional weight snapshot.

    A row holds ``step`` (iterations done), ``epoch``, ``lr`` (of the latest update),
    ``train_loss`` (mean over the steps since the previous row), ``val_loss``/``val_acc`` when
    the data has a validation split, and ``test_loss``/``test_acc``. ``final`` adds
    ``iterations`` (steps run by this call), ``early_stop_step``, ``early_stop_test_acc`` and
    ``seconds``.
    """

    history: list[dict[str, float]]
    final: dict[str, float]
    snapshot: dict[str, torch.Tensor] | None = None


def iterations_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches per epoch: ``ceil(n_train / batch_size)`` (the last batch may be smaller)."""
    if n_train < 1:
        raise DataError("the training split is empty; load a dataset with training examples")
    if batch_size < 1:
        raise ConfigError(f"train.batch_size = {batch_size!r} must be an integer >= 1")
    return -(-n_train // batch_size)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the ``n`` training examples used in ``epoch`` (on the CPU)."""
    return torch.randperm(n, generator=generator(seed, "order", epoch))


def training_batches(
    data: Data, batch_size: int, seed: int, start: int, stop: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(step, x, y)`` for absolute steps ``start..stop-1``: index slices of the device tensors."""
    per_epoch = iterations_per_epoch(len(data.train), batch_size)
    order, epoch = None, -1
    for step in range(start, stop):
        e, j = divmod(step, per_epoch)
        if e != epoch:
            order, epoch = epoch_order(len(data.train), seed, e).to(data.device), e
        index = order[j * batch_size : (j + 1) * batch_size]
        x, y = data.train.x[index], data.train.y[index]
        if data.augment:
            x = random_crop_flip(x, generator(seed, "augment", step))
        yield step, x, y


class _MaskKeeper:
    """Keeps pruned weights exactly zero: masks their gradients and re-zeroes them after a step."""

    def __init__(self, model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        check_mask(mask, params)
        device_mask = {name: m.to(params[name].device) for name, m in mask.items()}
        apply_mask_(model, device_mask)  # pruned weights are zero before the first step
        self.params = [params[name] for name in device_mask]
        self.factors = [m.to(params[name].dtype) for name, m in device_mask.items()]

    def mask_grads_(self) -> None:
        pairs = [
            (p.grad, f)
            for p, f in zip(self.params, self.factors, strict=True)
            if p.grad is not None
        ]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [f for _, f in pairs])

    @torch.no_grad()
    def mask_weights_(self) -> None:
        if self.params:
            torch._foreach_mul_(self.params, self.factors)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in [0, 1]) on ``split``, in eval mode; the mode is restored."""
    if len(split) == 0:
        raise DataError("cannot evaluate on an empty split; give it at least one example")
    was_training = model.training
    model.eval()
    try:
        loss_sum = torch.zeros((), device=split.x.device)
        correct = torch.zeros((), dtype=torch.long, device=split.x.device)
        for i in range(0, len(split), batch_size):
            logits = model(split.x[i : i + batch_size])
            y = split.y[i : i + batch_size]
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
    finally:
        model.train(was_training)
    return float(loss_sum) / len(split), int(correct) / len(split)


def train(
    model: nn.Module,
    data: Data,
    cfg: TrainConfig,
    *,
    mask: Mask | None = None,
    seed: int = 0,
    start_step: int = 0,
    snapshot_step: int | None = None,
    progress: str | None = None,
) -> TrainResult:
    """Train ``model`` (already on ``data.device``) from absolute ``start_step`` to the end of
    ``cfg.duration``, keeping the weights pruned by ``mask`` at exactly zero.

    Evaluates every ``cfg.eval_every`` iterations and at the end. ``snapshot_step`` copies the
    state dict before that step's update (``start_step``: the starting weights; the total: the
    final ones). ``progress`` names a tqdm bar; None trains silently. Raises ``Diverged`` as soon
    as the loss is NaN or infinite.
    """
    began = time.perf_counter()
    per_epoch = iterations_per_epoch(len(data.train), cfg.batch_size)
    total = to_iterations(cfg.duration, per_epoch)
    eval_every = to_iterations(cfg.eval_every, per_epoch)
    lr_at = lr_factor(cfg, per_epoch)  # refuses a duration of 0 iterations
    _check_call(model, data, cfg, total, eval_every, start_step, snapshot_step)
    keeper = _MaskKeeper(model, mask or {})
    optimizer = build_optimizer(model.parameters(), cfg)
    model.train()

    history: list[dict[str, float]] = []
    snapshot = None
    loss_sum, loss_count = 0.0, 0
    batches = training_batches(data, cfg.batch_size, seed, start_step, total)
    with tqdm(total=total, initial=start_step, desc=progress, disable=progress is None) as bar:
        for step, x, y in batches:
            if step == snapshot_step:
                snapshot = _copy_state(model)
            lr = cfg.lr * lr_at(step)
            set_lr_(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            value = loss.item()
            if not math.isfinite(value):
                raise Diverged(step, value)
            loss.backward()
            keeper.mask_grads_()
            optimizer.step()
            keeper.mask_weights_()
            loss_sum, loss_count = loss_sum + value, loss_count + 1
            done = step + 1
            if done % eval_every == 0 or done == total:
                row = {"step": done, "epoch": done / per_epoch, "lr": lr}
                row["train_loss"] = loss_sum / loss_count
                row.update(_evaluate_data(model, data))
                history.append(row)
                loss_sum, loss_count = 0.0, 0
                bar.set_postfix(test_acc=f"{row['test_acc']:.4f}")
            bar.update()
    if snapshot_step == total:
        snapshot = _copy_state(model)
    return TrainResult(history, _summary(history, total - start_step, began), snapshot)


def _evaluate_data(model: nn.Module, data: Data) -> dict[str, float]:
    metrics = {}
    splits = {"val": data.val, "test": data.test}
    for name, split in splits.items():
        if split is not None:
            metrics[f"{name}_loss"], metrics[f"{name}_acc"] = evaluate(model, split)
    return metrics


def _summary(history: list[dict[str, float]], iterations: int, began: float) -> dict[str, float]:
    """The last row plus the early-stopping point (lowest val loss, test loss without val)."""
    key = "val_loss" if "val_loss" in history[-1] else "test_loss"
    best = min(history, key=lambda row: row[key])
    return {
        **history[-1],
        "iterations": iterations,
        "early_stop_step": best["step"],
        "early_stop_test_acc": best["test_acc"],
        "seconds": time.perf_counter() - began,
    }


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def _check_call(
    model: nn.Module,
    data: Data,
    cfg: TrainConfig,
    total: int,
    eval_every: int,
    start_step: int,
    snapshot_step: int | None,
) -> None:
    if eval_every < 1:
        raise ConfigError(
            f"train.eval_every = {cfg.eval_every!r} is 0 iterations; give at least one, e.g. '1ep'"
        )
    if not 0 <= start_step < total:
        raise ConfigError(
            f"start_step = {start_step} must lie in [0, {total}) for train.duration = "
            f"{cfg.duration!r}; rewind to an earlier step or train longer"
        )
    if snapshot_step is not None and not start_step <= snapshot_step <= total:
        raise ConfigError(
            f"snapshot_step = {snapshot_step} must lie in [start_step = {start_step}, {total}]"
        )
    device = next(model.parameters()).device
    if device != data.device:
        raise ConfigError(
            f"the model is on {device} but the data on {data.device}; "
            "move it first with model.to(data.device)"
        )
