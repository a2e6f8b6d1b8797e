"""Training loop: exact masks, determinism, resuming, schedules, data order, evaluation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import maskstudy.train.loop as loop
from maskstudy.data.base import Data, Split, random_crop_flip
from maskstudy.errors import ConfigError
from maskstudy.runs.config import TrainConfig
from maskstudy.seeds import generator
from maskstudy.train import (
    Diverged,
    TrainPlan,
    build_optimizer,
    evaluate,
    iterations_per_epoch,
    lr_factor,
    train,
    training_batches,
)

FEATURES, CLASSES = 8, 4


def teacher_split(n: int, generator: torch.Generator, teacher: torch.Tensor) -> Split:
    x = torch.randn(n, FEATURES, generator=generator)
    return Split(x, (x @ teacher).argmax(dim=1))


def vector_data(n_train: int = 100, *, val: bool = True, seed: int = 0) -> Data:
    """A learnable task: labels are the argmax of a fixed random linear teacher."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(FEATURES, CLASSES, generator=g)
    train_split, test = teacher_split(n_train, g, teacher), teacher_split(300, g, teacher)
    val_split = teacher_split(200, g, teacher) if val else None
    return Data("toy", train_split, test, CLASSES, val=val_split)


def image_data(n_train: int = 40, augment: bool = True) -> Data:
    g = torch.Generator().manual_seed(1)
    train_split = Split(torch.randn(n_train, 1, 8, 8, generator=g), torch.arange(n_train) % 3)
    test = Split(torch.randn(20, 1, 8, 8, generator=g), torch.arange(20) % 3)
    return Data("images", train_split, test, 3, augment=augment)


def mlp(seed: int = 0, batchnorm: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    norm = [nn.BatchNorm1d(16)] if batchnorm else []
    return nn.Sequential(nn.Linear(FEATURES, 16), *norm, nn.ReLU(), nn.Linear(16, CLASSES))


def convnet(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 3),
    )


def half_mask(model: nn.Module, seed: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        name: torch.rand(p.shape, generator=g) < 0.5
        for name, p in model.named_parameters()
        if name.endswith("weight") and p.dim() > 1
    }


def cfg(**kw) -> TrainConfig:
    base = dict(lr=0.05, batch_size=32, duration="3ep", eval_every="1ep")
    return TrainConfig(**{**base, **kw})


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- masks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, state_keys",
    [
        (cfg(momentum=0.9, nesterov=True, weight_decay=5e-3), ["momentum_buffer"]),
        (cfg(optimizer="adam", lr=1e-2, weight_decay=5e-3), ["exp_avg", "exp_avg_sq"]),
    ],
)
def test_pruned_weights_and_their_optimizer_state_stay_exactly_zero(
    monkeypatch, config, state_keys
):
    model, data = mlp(), vector_data()
    mask = half_mask(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    built = []

    def recording_build(params, c):
        built.append(build_optimizer(params, c))
        return built[-1]

    monkeypatch.setattr(loop, "build_optimizer", recording_build)
    train(model, data, config, mask=mask)

    params = dict(model.named_parameters())
    (optimizer,) = built
    for name, keep in mask.items():
        assert (before[name][~keep] != 0).all()  # the pruned entries started non-zero
        assert (params[name][~keep] == 0).all()
        assert (params[name][keep] != before[name][keep]).all()  # kept weights trained
        for key in state_keys:
            state = optimizer.state[params[name]][key]
            assert (state[~keep] == 0).all()
            assert (state[keep] != 0).any()


def test_masked_training_matches_a_reference_loop_with_prune_hooks_and_lambdalr():
    """Same batches through prune hooks + torch SGD + LambdaLR: same weights and losses."""
    config = cfg(
        momentum=0.9,
        weight_decay=1e-3,
        schedule="step",
        milestones=("2ep",),
        gamma=0.5,
        warmup="3it",
        duration="3ep",
        eval_every="5it",
    )
    data = vector_data()
    model = mlp(seed=4)
    mask = half_mask(model)
    result = train(model, data, config, mask=mask, seed=2)

    ref = mlp(seed=4)
    for name, module in ref.named_modules():
        if f"{name}.weight" in mask:
            prune.custom_from_mask(module, "weight", mask[f"{name}.weight"])
    optimizer = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    per_epoch = 4  # ceil(100 / 32)

    def hand_factor(step: int) -> float:  # warm-up over 3 steps, ×0.5 from epoch 2 on
        return min(1.0, (step + 1) / 3) * (0.5 if step >= 2 * per_epoch else 1.0)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, hand_factor)
    losses = []
    for _, x, y in training_batches(data, 32, seed=2, start=0, stop=3 * per_epoch):
        optimizer.zero_grad()
        loss = F.cross_entropy(ref(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())

    for name, module in ref.named_modules():
        if f"{name}.weight" in mask:
            prune.remove(module, "weight")  # weight = weight_orig * mask
    got, want = model.state_dict(), ref.state_dict()
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)
    assert [row["step"] for row in result.history] == [5, 10, 12]
    mean = [sum(losses[:5]) / 5, sum(losses[5:10]) / 5, sum(losses[10:]) / 2]
    assert [row["train_loss"] for row in result.history] == pytest.approx(mean, rel=1e-5)
    assert [row["lr"] for row in result.history] == pytest.approx(
        [0.05 * hand_factor(s - 1) for s in (5, 10, 12)]
    )


@pytest.mark.parametrize(
    "mask, message",
    [
        ({"0.weight": torch.ones(3, 3, dtype=torch.bool)}, "shape"),
        ({"9.weight": torch.ones(3, 3, dtype=torch.bool)}, "names no parameter"),
    ],
)
def test_a_mask_of_another_model_is_refused(mask, message):
    with pytest.raises(ConfigError, match=message):
        train(mlp(), vector_data(), cfg(), mask=mask)


# --- determinism and resuming ---------------------------------------------------------------


def test_same_seed_is_bit_identical_and_another_seed_differs():
    data, config = image_data(), cfg(momentum=0.9, duration="2ep")
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        model = convnet()
        train(model, data, config, mask=half_mask(model), seed=seed)
        runs[name] = model.state_dict()
    assert states_equal(runs["a"], runs["b"])
    assert not torch.equal(runs["a"]["4.weight"], runs["c"]["4.weight"])


def test_resuming_from_a_snapshot_reproduces_the_uninterrupted_run():
    # Plain SGD keeps no optimizer state, so fresh state at start_step changes nothing.
    data = image_data()  # augmentation and BatchNorm buffers must resume too
    config = cfg(schedule="cosine", warmup="2it", duration="3ep", eval_every="3it")
    k = 5  # 2 batches per epoch (40 examples, batch 32): mid-epoch, epoch 2, batch 1
    whole = convnet()
    mask = half_mask(whole)
    full = train(whole, data, config, mask=mask, seed=7)

    first = convnet()
    part = train(first, data, config, mask=mask, seed=7, snapshot_step=k)
    rewound = convnet(seed=99)
    rewound.load_state_dict(part.snapshot)
    resumed = train(rewound, data, config, mask=mask, seed=7, start_step=k)

    assert states_equal(rewound.state_dict(), whole.state_dict())

    def evaluations(history, after):  # train_loss averages only the steps this call ran
        return [
            {c: v for c, v in row.items() if c != "train_loss"}
            for row in history
            if row["step"] > after
        ]

    assert evaluations(resumed.history, k) == evaluations(full.history, k)
    assert [row["step"] for row in resumed.history] == [6]
    assert resumed.final["iterations"] == 6 - k


def test_resuming_starts_with_fresh_optimizer_state():
    """With momentum the resumed run differs: rewinding resets the optimizer, as documented."""
    data, config = vector_data(), cfg(momentum=0.9, duration="2ep")
    whole = mlp()
    part = train(whole, data, config, snapshot_step=3)
    rewound = mlp(seed=5)
    rewound.load_state_dict(part.snapshot)
    train(rewound, data, config, start_step=3)
    assert not torch.equal(rewound[0].weight, whole[0].weight)


def test_snapshot_at_start_is_the_masked_start_and_at_the_end_the_final_weights():
    data, config = vector_data(), cfg(duration="1ep")
    model = mlp()
    mask = half_mask(model)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    at_start = train(model, data, config, mask=mask, snapshot_step=0).snapshot
    for name, t in start.items():
        expected = t * mask[name] if name in mask else t
        assert torch.equal(at_start[name], expected)
    model = mlp()
    at_end = train(model, data, config, mask=mask, snapshot_step=4).snapshot
    assert states_equal(at_end, model.state_dict())
    assert at_end["0.weight"].data_ptr() != model[0].weight.data_ptr()  # a copy


# --- schedules ------------------------------------------------------------------------------


def test_step_schedule_with_warmup_by_hand():
    c = cfg(schedule="step", milestones=("2ep", "25it"), gamma=0.1, warmup="4it")
    f = lr_factor(c, TrainPlan.of(c, iterations_per_epoch=10))
    got = [f(s) for s in (0, 1, 3, 19, 20, 24, 25, 29)]
    assert got == pytest.approx([0.25, 0.5, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_cosine_schedule_endpoints_and_midpoints():
    c = cfg(schedule="cosine", duration="100it")
    f = lr_factor(c, TrainPlan.of(c, iterations_per_epoch=10))
    assert f(0) == 1.0
    assert f(50) == pytest.approx(0.5)
    assert f(25) == pytest.approx((1 + math.sqrt(0.5)) / 2)
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    assert f(99) == pytest.approx((1 + math.cos(math.pi * 0.99)) / 2)
    c = cfg(schedule="cosine", duration="100it", warmup="1ep")
    warm = lr_factor(c, TrainPlan.of(c, 10))
    assert warm(4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.04)) / 2)


def test_constant_schedule_is_one():
    f = lr_factor(cfg(), TrainPlan.of(cfg(), iterations_per_epoch=7))
    assert {f(s) for s in range(30)} == {1.0}


# --- data order and augmentation --------------------------------------------------------------


def indexed_data(n: int, augment: bool = False) -> Data:
    """Example i holds the value i in every pixel, so batches reveal which examples they hold."""
    x = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 1, 8, 8).contiguous()
    return Data(
        "indexed", Split(x, torch.arange(n)), Split(x[:5], torch.arange(5)), n, augment=augment
    )


def test_each_epoch_visits_every_example_once_in_a_new_order():
    data = indexed_data(100)
    assert iterations_per_epoch(100, 32) == 4
    epochs = [[], []]
    for step, x, y in training_batches(data, 32, seed=0, start=0, stop=8):
        assert len(y) == (4 if step % 4 == 3 else 32)  # no drop_last
        assert torch.equal(x[:, 0, 0, 0].long(), y)  # inputs and labels stay paired
        epochs[step // 4] += y.tolist()
    for order in epochs:
        assert sorted(order) == list(range(100))
    assert epochs[0] != epochs[1]


def test_batches_from_a_later_start_are_the_same_batches():
    data = indexed_data(50, augment=True)
    full = list(training_batches(data, 16, seed=3, start=0, stop=10))
    tail = list(training_batches(data, 16, seed=3, start=6, stop=10))
    for (s1, x1, y1), (s2, x2, y2) in zip(full[6:], tail, strict=True):
        assert s1 == s2 and torch.equal(x1, x2) and torch.equal(y1, y2)


def test_replica_batches_are_each_seeds_own_batches():
    data = indexed_data(50, augment=True)
    per_epoch = iterations_per_epoch(50, 16)
    seeds = (3, 5)
    for step, x, y in loop.replica_batches(data, 16, seeds, start=2, stop=9):
        for k, seed in enumerate(seeds):
            epoch, j = divmod(step, per_epoch)
            index = loop.epoch_order(50, seed, epoch)[j * 16 : (j + 1) * 16]
            crop = generator(seed, "augment", step)
            assert torch.equal(x[k], random_crop_flip(data.train.x[index], crop))
            assert torch.equal(y[k], data.train.y[index])


def test_augmentation_only_when_the_data_asks_for_it():
    plain = list(training_batches(image_data(augment=False), 32, seed=0, start=0, stop=2))
    augmented = list(training_batches(image_data(augment=True), 32, seed=0, start=0, stop=2))
    raw = image_data().train
    for (_, x, y), (_, xa, ya) in zip(plain, augmented, strict=True):
        assert torch.equal(y, ya)
        assert torch.equal(x, raw.x[_rows_of(x, raw.x)])  # un-augmented: exact copies
        assert not torch.equal(x, xa)
        for original, image in zip(x, xa, strict=True):
            assert _is_crop_or_flip(original, image)


def _rows_of(batch: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    return torch.stack([(pool == image).flatten(1).all(1).nonzero()[0, 0] for image in batch])


def _is_crop_or_flip(original: torch.Tensor, image: torch.Tensor, pad: int = 4) -> bool:
    padded = F.pad(original, (pad, pad, pad, pad))
    h, w = original.shape[-2:]
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            if torch.equal(crop, image) or torch.equal(crop.flip(-1), image):
                return True
    return False


# --- learning, evaluation, history ------------------------------------------------------------


@pytest.mark.parametrize("batchnorm", [False, True])
def test_a_learnable_task_is_learned(batchnorm):
    data = vector_data(n_train=600)
    model = mlp(batchnorm=batchnorm)
    result = train(
        model, data, cfg(optimizer="adam", lr=1e-2, duration="8ep"), mask=half_mask(model)
    )
    assert result.final["test_acc"] > 0.85  # chance is 0.25
    assert result.history[0]["train_loss"] > result.history[-1]["train_loss"]
    assert model.training


def test_evaluate_matches_a_full_batch_computation_and_restores_the_mode():
    data = vector_data()
    model = mlp(batchnorm=True)
    train(model, data, cfg(duration="1ep"))
    model.eval()
    with torch.no_grad():
        logits = model(data.test.x)
    want_loss = F.cross_entropy(logits, data.test.y).item()
    want_acc = (logits.argmax(1) == data.test.y).float().mean().item()
    model.train()
    loss, acc = evaluate(model, data.test, batch_size=7)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert acc == pytest.approx(want_acc)
    assert model.training


def test_history_rows_and_early_stopping_are_consistent():
    data = vector_data()
    result = train(mlp(), data, cfg(lr=0.3, duration="2ep", eval_every="3it"))
    rows = result.history
    assert [r["step"] for r in rows] == [3, 6, 8]
    assert [r["epoch"] for r in rows] == [0.75, 1.5, 2.0]
    assert set(rows[0]) == {
        "step",
        "epoch",
        "lr",
        "train_loss",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
    }
    best = min(rows, key=lambda r: r["val_loss"])
    assert result.final["early_stop_step"] == best["step"]
    assert result.final["early_stop_test_acc"] == best["test_acc"]
    assert {k: result.final[k] for k in rows[-1]} == rows[-1]
    assert result.final["iterations"] == 8 and result.final["seconds"] > 0
    assert result.snapshot is None

    no_val = train(mlp(), vector_data(val=False), cfg(lr=0.3, duration="2ep", eval_every="3it"))
    assert "val_loss" not in no_val.history[0]
    best = min(no_val.history, key=lambda r: r["test_loss"])
    assert no_val.final["early_stop_step"] == best["step"]


def test_a_nan_loss_raises_diverged_with_its_step():
    data = vector_data()
    poisoned = 37
    data.train.x[poisoned, 0] = float("nan")
    position = loop.epoch_order(len(data.train), 0, 0).tolist().index(poisoned)
    with pytest.raises(Diverged, match=f"step {position // 32}") as err:
        train(mlp(), data, cfg())
    assert err.value.step == position // 32


# --- progress and bad calls -------------------------------------------------------------------


def test_progress_bar_only_when_named(capsys):
    train(mlp(), vector_data(), cfg(duration="1ep"))
    assert capsys.readouterr().err == ""
    train(mlp(), vector_data(), cfg(duration="1ep"), progress="level 3")
    err = capsys.readouterr().err
    assert "level 3" in err and "test_acc" in err and "4/4" in err


@pytest.mark.parametrize(
    "kwargs, config, message",
    [
        ({"start_step": 12}, cfg(), "start_step = 12"),
        ({"snapshot_step": 13}, cfg(), "snapshot_step = 13"),
        ({}, cfg(eval_every="0.1ep"), "eval_every = '0.1ep' is 0 iterations at 4"),
        ({}, cfg(duration="0.1ep"), "duration = '0.1ep' is 0 iterations at 4"),
    ],
)
def test_bad_calls_raise_config_errors(kwargs, config, message):
    with pytest.raises(ConfigError, match=message):
        train(mlp(), vector_data(), config, **kwargs)
