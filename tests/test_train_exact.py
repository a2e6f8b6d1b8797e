"""The training loop, bit for bit: against a plain loop written here, and its deferred
divergence check (the accelerator's bookkeeping, run on the CPU) against the per-step one."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import maskstudy.train.loop as loop
from maskstudy.data.base import Data, Split
from maskstudy.runs.config import TrainConfig
from maskstudy.seeds import generator
from maskstudy.train import Diverged, evaluate, replica_net, train_replicas

FEATURES, CLASSES, N_TRAIN, BATCH = 12, 5, 100, 32
PER_EPOCH = 4  # ceil(100 / 32)


def toy_data(seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(FEATURES, CLASSES, generator=g)

    def split(n: int) -> Split:
        x = torch.randn(n, FEATURES, generator=g)
        return Split(x, (x @ teacher).argmax(dim=1))

    return Data("toy", split(N_TRAIN), split(60), CLASSES, val=split(40))


def mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(FEATURES, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, CLASSES)
    )


def random_mask(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + seed)
    return {
        name: torch.rand(p.shape, generator=g) < 0.6
        for name, p in model.named_parameters()
        if name.endswith("weight")
    }


OPTIMIZERS = {
    "sgd": dict(lr=0.1),
    "sgd_momentum_wd": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-3),
    "adam": dict(optimizer="adam", lr=3e-3, weight_decay=1e-3),
}
SCHEDULE = dict(warmup="3it", schedule="step", milestones=("2ep",), gamma=0.5)


def factor(step: int) -> float:
    """SCHEDULE by hand: warm-up over 3 steps, × 0.5 from epoch 2 on."""
    return min(1.0, (step + 1) / 3) * (0.5 if step >= 2 * PER_EPOCH else 1.0)


def plain_run(
    model: nn.Module, mask: dict, data: Data, options: dict, seed: int, steps: int, every: int
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """One run the plain way: this seed's batches, masked weights and gradients, torch's own
    optimizer (fused, the kernels ``build_optimizer`` picks on the CPU), ``loss.item()`` summed
    in Python floats. Returns the final state and the mean training loss of each period."""
    model = copy.deepcopy(model)
    params = dict(model.named_parameters())
    factors = {name: keep.to(params[name].dtype) for name, keep in mask.items()}
    with torch.no_grad():
        for name, f in factors.items():
            params[name].mul_(f).add_(0.0)  # pruned weights start at +0.0
    lr = options["lr"]
    if options.get("optimizer") == "adam":
        opt = torch.optim.Adam(
            model.parameters(), lr=lr, weight_decay=options["weight_decay"], fused=True
        )
    else:
        opt = torch.optim.SGD(
            model.parameters(),
            lr=lr,
            momentum=options.get("momentum", 0.0),
            nesterov=options.get("nesterov", False),
            weight_decay=options.get("weight_decay", 0.0),
            fused=True,
        )
    means, total, count = [], 0.0, 0
    for step in range(steps):
        epoch, j = divmod(step, PER_EPOCH)
        order = torch.randperm(N_TRAIN, generator=generator(seed, "order", epoch))
        index = order[j * BATCH : (j + 1) * BATCH]
        for group in opt.param_groups:
            group["lr"] = lr * factor(step)
        opt.zero_grad()
        loss = F.cross_entropy(model(data.train.x[index]), data.train.y[index])
        loss.backward()
        for name, f in factors.items():
            params[name].grad.mul_(f)
        opt.step()
        total, count = total + loss.item(), count + 1
        if (step + 1) % every == 0 or step + 1 == steps:
            means.append(total / count)
            total, count = 0.0, 0
    return model.state_dict(), means


@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_training_matches_a_plain_loop_bit_for_bit(name, replicas):
    data, options = toy_data(), OPTIMIZERS[name]
    models = [mlp(seed=k) for k in range(replicas)]
    masks = [random_mask(m, k) for k, m in enumerate(models)]
    seeds = [7 + 3 * k for k in range(replicas)]
    cfg = TrainConfig(batch_size=BATCH, duration="3ep", eval_every="5it", **SCHEDULE, **options)
    net = replica_net(copy.deepcopy(models[0]), [m.state_dict() for m in models])
    results = train_replicas(net, data, cfg, masks=masks, seeds=seeds)

    for k, (model, mask, seed, result) in enumerate(
        zip(models, masks, seeds, results, strict=True)
    ):
        want, means = plain_run(model, mask, data, options, seed, steps=12, every=5)
        got = net.modules[k].state_dict()
        assert got.keys() == want.keys()
        for key in got:
            assert torch.equal(got[key], want[key]), (k, key)
        assert [row["step"] for row in result.history] == [5, 10, 12]
        assert [row["train_loss"] for row in result.history] == means  # exactly
        assert [row["lr"] for row in result.history] == [
            options["lr"] * factor(s - 1) for s in (5, 10, 12)
        ]
        reference = mlp(seed=0)
        reference.load_state_dict(want)
        test_loss, test_acc = evaluate(reference, data.test)
        assert (result.final["test_loss"], result.final["test_acc"]) == (test_loss, test_acc)


# --- the deferred divergence check ------------------------------------------------------------


class MemoryCheckpoints:
    """Keeps every save (``every = 0``: the loop saves after every step)."""

    every = 0.0

    def __init__(self) -> None:
        self.saves: dict[int, tuple[dict, dict]] = {}

    def load(self):
        return None

    def save(self, tensors, meta) -> None:
        self.saves[meta["step"]] = ({n: t.clone() for n, t in tensors.items()}, meta)


def run_pair(
    data: Data, monkeypatch, *, defer: bool, log_steps: int = 3, batch: int = BATCH, **kwargs
):
    """Two replicas (seeds 1 and 2) trained for 16 steps with the per-step check or the
    deferred one: (results or the Diverged raised, the rows seen by on_evaluation, the
    checkpoint saves, the weights)."""
    monkeypatch.setattr(loop, "_DEFER_CHECKS", defer)
    monkeypatch.setattr(loop, "_LOG_STEPS", log_steps)
    models = [mlp(seed=k) for k in range(2)]
    net = replica_net(models[0], [m.state_dict() for m in models])
    rows, saves = [], MemoryCheckpoints()
    cfg = TrainConfig(lr=0.1, momentum=0.9, batch_size=batch, duration="16it", eval_every="5it")
    try:
        outcome = train_replicas(
            net,
            data,
            cfg,
            masks=[random_mask(m, k) for k, m in enumerate(models)],
            seeds=[1, 2],
            checkpoints=saves,
            on_evaluation=lambda k, row: rows.append((k, row)),
            **kwargs,
        )
    except Diverged as error:
        outcome = error
    return outcome, rows, saves.saves, net.states()


def poisoned(example: int) -> Data:
    data = toy_data()
    data.train.x[example, 0] = float("nan")
    return data


def first_visit(example: int, seed: int, batch: int) -> int:
    """The step at which ``seed``'s data order first reaches ``example`` (in epoch 0)."""
    return loop.epoch_order(N_TRAIN, seed, 0).tolist().index(example) // batch


def test_deferred_checks_train_and_save_the_same_bytes(monkeypatch):
    data = toy_data()
    eager = run_pair(data, monkeypatch, defer=False)
    deferred = run_pair(data, monkeypatch, defer=True, log_steps=2)
    (results_a, rows_a, saves_a, weights_a), (results_b, rows_b, saves_b, weights_b) = (
        eager,
        deferred,
    )
    assert [r.history for r in results_a] == [r.history for r in results_b]
    assert rows_a == rows_b
    assert saves_a.keys() == saves_b.keys() == set(range(1, 16))  # after each step but the last
    for step, (tensors, meta) in saves_a.items():
        other_tensors, other_meta = saves_b[step]
        assert meta == other_meta
        assert tensors.keys() == other_tensors.keys()
        assert all(torch.equal(t, other_tensors[n]) for n, t in tensors.items())
        assert tensors["loss_sum"].device.type == "cpu"
        assert tensors["loss_sum"].dtype == torch.float64
    for a, b in zip(weights_a, weights_b, strict=True):
        assert all(torch.equal(a[n], b[n]) for n in a)


def test_deferred_checks_read_no_loss_while_training_is_finite(monkeypatch):
    calls = []
    real = loop._check_finite
    monkeypatch.setattr(loop, "_check_finite", lambda *a: calls.append(a) or real(*a))
    run_pair(toy_data(), monkeypatch, defer=True)
    assert calls == []
    run_pair(toy_data(), monkeypatch, defer=False)
    assert len(calls) == 16  # the per-step check: every step


@pytest.mark.parametrize("log_steps", [1, 2, 3, 4096])
@pytest.mark.parametrize("example, culprit", [(15, 1), (25, 0)])  # at step 9 (batch 8)
def test_a_deferred_divergence_names_the_first_bad_step_and_records_nothing_after_it(
    monkeypatch, log_steps, example, culprit
):
    visits = [first_visit(example, seed, batch=8) for seed in (1, 2)]
    assert visits[culprit] == 9 and visits[1 - culprit] > 9
    eager = run_pair(poisoned(example), monkeypatch, defer=False, batch=8)
    deferred = run_pair(poisoned(example), monkeypatch, defer=True, log_steps=log_steps, batch=8)
    error_a, rows_a, saves_a, _ = eager
    error_b, rows_b, saves_b, _ = deferred
    assert isinstance(error_a, Diverged) and isinstance(error_b, Diverged)
    assert (error_b.step, error_b.replica, str(error_b)) == (
        error_a.step,
        error_a.replica,
        str(error_a),
    )
    assert (error_b.step, error_b.replica) == (9, culprit)
    assert "the loss is nan" in str(error_b)
    # the evaluations and saves of the steps before the bad one, none after
    assert [(k, row["step"]) for k, row in rows_b] == [(0, 5), (1, 5)]
    assert rows_b == rows_a
    assert sorted(saves_b) == sorted(saves_a) == list(range(1, 10))
    for step, (tensors, meta) in saves_a.items():
        assert meta == saves_b[step][1]
        assert all(torch.equal(t, saves_b[step][0][n]) for n, t in tensors.items())


def test_a_deferred_divergence_is_reported_before_a_later_error(monkeypatch):
    def failing_hook(done: int, weights) -> None:
        if done == 10:  # after step 9's update (its loss NaN), before the evaluation at 10
            raise RuntimeError("the hook failed on NaN weights")

    options = dict(batch=8, update_masks=failing_hook)
    deferred, *_ = run_pair(poisoned(15), monkeypatch, defer=True, log_steps=4096, **options)
    assert isinstance(deferred, Diverged) and (deferred.step, deferred.replica) == (9, 1)
    assert isinstance(deferred.__context__, RuntimeError)
    eager, *_ = run_pair(poisoned(15), monkeypatch, defer=False, **options)
    assert isinstance(eager, Diverged) and (eager.step, eager.replica) == (9, 1)
    assert eager.__context__ is None


def test_channels_last_steps_take_each_replica_batch_in_that_layout(monkeypatch):
    """Convnets on CUDA train in channels_last: each replica's (B, C, H, W) batch is converted,
    not the (K, B, C, H, W) stack (no such layout). Here on the CPU, layout forced."""
    seen = []

    def force_channels_last(net) -> bool:
        for m in net.modules:
            m.to(memory_format=torch.channels_last)
            m[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].stride()))
        return True

    monkeypatch.setattr(loop, "channels_last_", force_channels_last)
    g = torch.Generator().manual_seed(0)
    images = Split(torch.randn(24, 3, 6, 6, generator=g), torch.arange(24) % 3)
    data = Data("images", images, images, 3)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)))
    net = replica_net(models[0], [m.state_dict() for m in models])
    masks = [{"0.weight": torch.rand(4, 3, 3, 3, generator=g) < 0.5} for _ in models]
    cfg = TrainConfig(lr=0.1, batch_size=8, duration="3it", eval_every="3it")
    train_replicas(net, data, cfg, masks=masks, seeds=[0, 1])
    channels_last = torch.empty(8, 3, 6, 6).contiguous(memory_format=torch.channels_last).stride()
    assert seen[:6] == [channels_last] * 6  # 3 steps × 2 replicas, then the evaluation
    for module, mask in zip(net.modules, masks, strict=True):
        assert not module[0].weight[~mask["0.weight"]].any()
