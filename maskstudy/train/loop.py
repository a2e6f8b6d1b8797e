"""The training loop: index-slice batches in a resumable order, exact masks, periodic evaluation.

Everything random in training is a pure function of ``(seed, absolute step)``: epoch ``e`` is
shuffled by a generator seeded from ``(seed, e)`` and the augmentation of step ``s`` by one
seeded from ``(seed, s)``. Training from ``start_step = k`` therefore sees exactly the batches
an uninterrupted run sees at steps k..T-1. The optimizer state (momentum, Adam moments) is fresh
at ``start_step``: that is what rewinding the weights to step k means.

The step reads nothing back from the device: the training loss adds up in float64 on the data's
device, and a loss that stops being finite is caught at once on the CPU (a check costs nothing
there) and, on an accelerator, from a log of the steps' losses read only where the loop reads the
device anyway (evaluations, checkpoint saves): ``Diverged`` names the same step, replica and loss
either way, before anything of the later steps is recorded or saved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from maskstudy.data.base import Data, Split, random_crop_flip, to_device
from maskstudy.errors import ConfigError, DataError, MaskstudyError
from maskstudy.masks import Mask
from maskstudy.seeds import generator
from maskstudy.train.accel import Forward, channels_last_, precision, training_forward
from maskstudy.train.checkpoint import Checkpoints, Progress, pack, restore
from maskstudy.train.config import TrainConfig
from maskstudy.train.optim import build_optimizer, lr_factor, set_lr_
from maskstudy.train.plan import TrainPlan
from maskstudy.train.replicas import Replicas

# (iterations done, each replica's masked weights) -> new masks, or None to keep the current ones
MaskUpdate = Callable[[int, list[dict[str, torch.Tensor]]], Sequence[Mask] | None]

# Whether non-finite losses are found from the device log instead of at every step: None = on
# accelerators only. Tests set True to run the accelerator's bookkeeping on the CPU.
_DEFER_CHECKS: bool | None = None
_LOG_STEPS = 4096  # at most this many steps' losses wait on the device before they are checked


class Diverged(MaskstudyError):
    """The training loss became NaN or infinite at absolute step ``step``."""

    def __init__(self, step: int, loss: float, replica: int = 0) -> None:
        self.step, self.replica = step, replica
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


def batch_indices(
    n: int, batch_size: int, seed: int, start: int, stop: int, device: torch.device
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(step, indices of that step's batch)`` for absolute steps ``start..stop-1``."""
    per_epoch = iterations_per_epoch(n, batch_size)
    order, epoch = None, -1
    for step in range(start, stop):
        e, j = divmod(step, per_epoch)
        if e != epoch:
            order, epoch = to_device(epoch_order(n, seed, e), device), e
        yield step, order[j * batch_size : (j + 1) * batch_size]


def replica_batches(
    data: Data, batch_size: int, seeds: Sequence[int], start: int, stop: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(step, x, y)`` with a leading replica dimension: replica k sees the batches of ``seeds[k]``.

    Every replica's batch comes from one gather of the device tensors, not K.
    """
    streams = [
        batch_indices(len(data.train), batch_size, seed, start, stop, data.device) for seed in seeds
    ]
    inputs, labels = data.train.x, data.train.y
    for pairs in zip(*streams, strict=True):
        step = pairs[0][0]
        if len(pairs) == 1:  # one run: the same gathers without stacking one index
            index = pairs[0][1]
            x = inputs.index_select(0, index)
            if data.augment:
                x = random_crop_flip(x, generator(seeds[0], "augment", step))
            yield step, x.unsqueeze(0), labels.index_select(0, index).unsqueeze(0)
            continue
        index = torch.stack([i for _, i in pairs])
        x = inputs.index_select(0, index.flatten()).view(*index.shape, *data.input_shape)
        if data.augment:
            crops = [generator(seed, "augment", step) for seed in seeds]
            x = torch.stack([random_crop_flip(xk, g) for xk, g in zip(x, crops, strict=True)])
        yield step, x, labels.index_select(0, index.flatten()).view(index.shape)


def training_batches(
    data: Data, batch_size: int, seed: int, start: int, stop: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(step, x, y)`` for absolute steps ``start..stop-1``: index slices of the device tensors."""
    for step, x, y in replica_batches(data, batch_size, [seed], start, stop):
        yield step, x[0], y[0]


class _MaskKeeper:
    """Keeps pruned weights exactly zero by masking their gradients.

    A pruned weight starts at zero with zero optimizer state (``net.masked``, ``replace_``); with
    a zero gradient, SGD (momentum, weight decay) and Adam move it by exactly 0, so the weights
    need no re-masking after a step.
    """

    def __init__(self, net: Replicas, masks: Sequence[Mask]) -> None:
        self.net, self.names = net, list(masks[0]) if masks else []
        self.params, self.factors = net.masked(masks)

    def weights(self) -> list[dict[str, torch.Tensor]]:
        """Every replica's masked weights (live tensors, no copies), for ``update_masks``."""
        n = len(self.names)
        return [
            dict(zip(self.names, self.params[k * n : (k + 1) * n], strict=True))
            for k in range(self.net.size)
        ]

    @torch.no_grad()
    def replace_(self, masks: Sequence[Mask], optimizer: torch.optim.Optimizer) -> None:
        """Train on with new masks: zero the newly pruned weights and their optimizer state."""
        self.params, self.factors = self.net.masked(masks)
        for p, f in zip(self.params, self.factors, strict=True):
            for value in optimizer.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.mul_(f)  # momentum, Adam moments: a pruned weight restarts from rest

    def mask_grads_(self) -> None:
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):  # a tensor the step did not reach
            pairs = [(g, f) for g, f in zip(grads, self.factors, strict=True) if g is not None]
            grads, factors = [g for g, _ in pairs], [f for _, f in pairs]
        else:
            factors = self.factors
        if grads:
            torch._foreach_mul_(grads, factors)


def replica_losses(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy per replica, shape (K,): logits (K, B, classes), labels (K, B); each
    replica's computed as a lone run computes it, whatever K."""
    return torch.stack(
        [F.cross_entropy(z, t, reduction=reduction) for z, t in zip(logits, y, strict=True)]
    )


def _step_losses(
    forwards: Sequence[Forward],
    x: torch.Tensor,
    y: torch.Tensor,
    layout: torch.memory_format | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to backpropagate, every replica's loss (K,) detached) of one step: replica k's
    cross-entropy on its own batch, as a lone run computes it (no stacked logits)."""
    losses = []
    for k, forward in enumerate(forwards):
        xk = x[k] if layout is None else x[k].contiguous(memory_format=layout)
        losses.append(F.cross_entropy(forward(xk), y[k]))
    if len(losses) == 1:
        return losses[0], losses[0].detach().view(1)
    stacked = torch.stack(losses)
    return stacked.sum(), stacked.detach()


class _LossLog:
    """Finds the first non-finite loss on an accelerator without reading the device every step.

    Each step's losses go into a device buffer; the loop hands ``settle`` the loss sums it reads
    anyway (evaluations, checkpoint saves). Sums of finite float64 losses stay finite, so finite
    sums clear every logged step at once; otherwise the log gives the first non-finite step and
    replica, raised as ``_check_finite`` raises it at that step on the CPU.
    """

    def __init__(self, replicas: int, steps: int, device: torch.device) -> None:
        self.losses = torch.empty(steps, replicas, dtype=torch.float64, device=device)
        self.first, self.count = 0, 0

    def record(self, step: int, values: torch.Tensor, loss_sum: torch.Tensor) -> None:
        """Log ``values`` of ``step``; ``loss_sum`` (including them) is read when the log is full."""
        if self.count == 0:
            self.first = step
        self.losses[self.count].copy_(values)
        self.count += 1
        if self.count == len(self.losses):
            self.settle(loss_sum.tolist())

    def settle(self, sums: list[float]) -> None:
        """Raise ``Diverged`` if a logged loss is not finite (``sums``: the running loss sums read
        from the device), else clear the log."""
        if self.count and not all(math.isfinite(s) for s in sums):
            logged = self.losses[: self.count].cpu()
            for row, values in enumerate(logged):
                _check_finite(self.first + row, values)
        self.count = 0


@torch.no_grad()
def evaluate_replicas(
    net: Replicas, split: Split, batch_size: int = 1000
) -> list[tuple[float, float]]:
    """(mean cross-entropy, accuracy) of every replica on ``split``, in eval mode (restored after)."""
    if len(split) == 0:
        raise DataError("cannot evaluate on an empty split; give it at least one example")
    was_training = net.training
    net.train(False)
    try:
        loss_sum = torch.zeros(net.size, device=split.x.device)
        correct = torch.zeros(net.size, dtype=torch.long, device=split.x.device)
        for i in range(0, len(split), batch_size):
            x, y = split.x[i : i + batch_size], split.y[i : i + batch_size]
            logits = net(x.expand(net.size, *x.shape))
            labels = y.expand(net.size, *y.shape)
            loss_sum += replica_losses(logits, labels, reduction="sum")
            correct += (logits.argmax(dim=2) == labels).sum(1)
    finally:
        net.train(was_training)
    return [
        (loss / len(split), c / len(split))
        for loss, c in zip(loss_sum.tolist(), correct.tolist(), strict=True)
    ]


def evaluate(model: nn.Module, split: Split, batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in [0, 1]) of ``model`` on ``split``, in eval mode."""
    return evaluate_replicas(Replicas([model]), split, batch_size)[0]


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run the block's CPU arithmetic on ``count`` threads (``train.threads``), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    final ones). ``progress`` names a tqdm bar; None trains silently. Raises ``Diverged`` when
    the loss is NaN or infinite: on the CPU at that step; on an accelerator at the next
    evaluation or checkpoint save, naming the same step, before that evaluation is recorded.
    """
    net = Replicas([model])
    return train_replicas(
        net,
        data,
        cfg,
        masks=[mask or {}],
        seeds=[seed],
        start_step=start_step,
        snapshot_step=snapshot_step,
        progress=progress,
    )[0]


def train_replicas(
    net: Replicas,
    data: Data,
    cfg: TrainConfig,
    *,
    masks: Sequence[Mask],
    seeds: Sequence[int],
    start_step: int = 0,
    snapshot_step: int | None = None,
    progress: str | None = None,
    update_masks: MaskUpdate | None = None,
    checkpoints: Checkpoints | None = None,
    plan: TrainPlan | None = None,
    on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
) -> list[TrainResult]:
    """``train`` for K replicas side by side: replica k keeps ``masks[k]`` and sees the data
    order of ``seeds[k]``; its loss is its own batch mean, so its gradients are its own.

    ``update_masks(iterations_done, weights_per_replica)`` runs after every optimizer step;
    when it returns new masks, training goes on with them (gradual pruning, pruning/gradual.py).
    ``checkpoints`` saves the training state every ``checkpoints.every`` seconds and resumes
    from the last one this call saved (train/checkpoint.py); not with ``update_masks``.
    ``plan`` gives the iterations (default: ``cfg``'s durations at this dataset's epoch length;
    a level's budget may stretch them, runs/scratch.py). ``on_evaluation(k, row)`` receives
    each evaluation row of replica k as it is recorded (experiment loggers, runs/loggers.py).
    """
    began = time.perf_counter()
    if not len(masks) == len(seeds) == net.size:
        raise ConfigError(
            f"{net.size} replicas need {net.size} masks and seeds, got {len(masks)} and {len(seeds)}"
        )
    per_epoch = iterations_per_epoch(len(data.train), cfg.batch_size)
    plan = plan or TrainPlan.of(cfg, per_epoch)  # refuses a duration of 0 iterations
    total, eval_every = plan.total, plan.eval_every
    lr_at = lr_factor(cfg, plan)
    _check_call(net, data, cfg, total, start_step, snapshot_step)
    keeper = _MaskKeeper(net, masks)
    layout = torch.channels_last if channels_last_(net) else None  # None: inputs as they come
    params = net.parameters()
    optimizer = build_optimizer(params, cfg)
    forwards, step_mode = training_forward(net, cfg.compile)
    in_precision, arithmetic = precision(cfg.precision, net.device)
    net.train(True)

    call = {"seeds": list(seeds), "start_step": start_step, "total": total}
    if update_masks is not None:
        checkpoints = None  # a gradual level's mask schedule is not part of the saved state
    state = restore(checkpoints, net, optimizer, call) or Progress(
        start_step, [[] for _ in seeds], torch.zeros(net.size, dtype=torch.float64), 0, None
    )
    histories, snapshots = state.histories, state.snapshots
    # float64 sums on the device, added to in place step by step: the same additions as ever
    loss_sum = state.loss_sum.to(data.device, torch.float64, copy=True)
    loss_count = state.loss_count
    defer = _DEFER_CHECKS if _DEFER_CHECKS is not None else data.device.type != "cpu"
    # room for the steps between two evaluations: it fills (and is read) only when they are many
    log = _LossLog(net.size, min(eval_every + 1, _LOG_STEPS), data.device) if defer else None
    saved_at = time.monotonic()
    batches = replica_batches(data, cfg.batch_size, seeds, state.step, total)
    lr_set = None
    with (
        tqdm(total=total, initial=state.step, desc=progress, disable=progress is None) as bar,
        _divergence_first(log, loss_sum),
    ):
        for step, x, y in batches:
            if step == snapshot_step:
                snapshots = net.states()
            lr = cfg.lr * lr_at(step)
            if lr != lr_set:
                set_lr_(optimizer, lr)
                lr_set = lr
            for p in params:
                p.grad = None
            with in_precision:
                loss, values = _step_losses(forwards, x, y, layout)
            if log is None:
                _check_finite(step, values)  # before the update, as the step's first read
            loss_sum.add_(values)  # each loss widened exactly to float64, then added
            if log is not None:
                log.record(step, values, loss_sum)
            loss.backward()
            keeper.mask_grads_()
            optimizer.step()
            if update_masks is not None:
                new_masks = update_masks(step + 1, keeper.weights())
                if new_masks is not None:
                    keeper.replace_(new_masks, optimizer)
            loss_count += 1
            done = step + 1
            if done % eval_every == 0 or done == total:
                sums = loss_sum.tolist()
                if log is not None:
                    log.settle(sums)
                evaluations = _evaluate_data(net, data)
                for k, history in enumerate(histories):
                    row = {"step": done, "epoch": done / per_epoch, "lr": lr}
                    row["train_loss"] = sums[k] / loss_count
                    row.update(evaluations[k])
                    history.append(row)
                    if on_evaluation is not None:
                        on_evaluation(k, row)
                loss_sum.zero_()
                loss_count = 0
                bar.set_postfix(
                    test_acc=" ".join(f"{h[-1]['test_acc']:.4f}" for h in histories[:4])
                )
            if checkpoints is not None and done < total:
                if time.monotonic() - saved_at >= checkpoints.every:
                    saved_sum = loss_sum.to("cpu", copy=True)
                    if log is not None:
                        log.settle(saved_sum.tolist())
                    now = Progress(done, histories, saved_sum, loss_count, snapshots)
                    checkpoints.save(*pack(net, optimizer, now, call))
                    saved_at = time.monotonic()
            bar.update()
    if snapshot_step == total:
        snapshots = net.states()
    seconds = time.perf_counter() - began
    accelerated = cfg.compile != "off" or cfg.precision != "fp32"
    how = {"step_mode": f"{step_mode}, {arithmetic}"} if accelerated else {}
    return [
        TrainResult(
            history,
            _summary(history, total - start_step, seconds) | how,
            snapshots[k] if snapshots else None,
        )
        for k, history in enumerate(histories)
    ]


@contextmanager
def _divergence_first(log: _LossLog | None, loss_sum: torch.Tensor) -> Iterator[None]:
    """An error in deferred-check training (``log``) after a loss went non-finite unnoticed
    raises ``Diverged`` for that step instead, the error chained to it."""
    try:
        yield
    except Diverged:
        raise
    except Exception:
        if log is not None:
            log.settle(loss_sum.tolist())
        raise


def _check_finite(step: int, values: torch.Tensor) -> None:
    """Raise ``Diverged`` naming the first replica whose loss at ``step`` (``values``, one per
    replica) is not finite."""
    if not bool(torch.isfinite(values).all()):
        bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
        raise Diverged(step, float(values[bad[0]]), replica=bad[0])


def _evaluate_data(net: Replicas, data: Data) -> list[dict[str, float]]:
    """Per replica: ``{val,test}_{loss,acc}`` for the splits the data has."""
    rows: list[dict[str, float]] = [{} for _ in range(net.size)]
    for name, split in {"val": data.val, "test": data.test}.items():
        if split is not None:
            for row, (loss, acc) in zip(rows, evaluate_replicas(net, split), strict=True):
                row[f"{name}_loss"], row[f"{name}_acc"] = loss, acc
    return rows


def _summary(history: list[dict[str, float]], iterations: int, seconds: float) -> dict[str, float]:
    """The last row plus the early-stopping point (lowest val loss, test loss without val)."""
    key = "val_loss" if "val_loss" in history[-1] else "test_loss"
    best = min(history, key=lambda row: row[key])
    return {
        **history[-1],
        "iterations": iterations,
        "early_stop_step": best["step"],
        "early_stop_test_acc": best["test_acc"],
        "seconds": seconds,
    }


def _check_call(
    net: Replicas,
    data: Data,
    cfg: TrainConfig,
    total: int,
    start_step: int,
    snapshot_step: int | None,
) -> None:
    if not 0 <= start_step < total:
        raise ConfigError(
            f"start_step = {start_step} must lie in [0, {total}) for train.duration = "
            f"{cfg.duration!r}; rewind to an earlier step or train longer"
        )
    if snapshot_step is not None and not start_step <= snapshot_step <= total:
        raise ConfigError(
            f"snapshot_step = {snapshot_step} must lie in [start_step = {start_step}, {total}]"
        )
    device = net.device
    if device != data.device:
        raise ConfigError(
            f"the model is on {device} but the data on {data.device}; "
            "move it first with model.to(data.device)"
        )
