"""FGSM and PGD in pixel units on normalised inputs, robust accuracy, the attack config."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskstudy.data import load
from maskstudy.data.base import Split
from maskstudy.data.normalise import standardised_splits
from maskstudy.errors import ConfigError
from maskstudy.eval import (
    PixelBox,
    fgsm,
    metric_key,
    pgd,
    robust_accuracy,
    robust_accuracy_replicas,
    uniform_start,
)
from maskstudy.models import build
from maskstudy.runs.config import AttackConfig, TrainConfig
from maskstudy.train import evaluate, replica_net, train


def linear_model() -> torch.nn.Linear:
    model = torch.nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.copy_(
            torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.3, 1.0, -1.0, 2.0], [-1.0, 0.2, 1.5, -0.5]])
        )
        model.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return model


def hand_gradient(model: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂CE/∂x = (softmax(Wx + b) − onehot(y)) W, example by example."""
    with torch.no_grad():
        p = torch.softmax(x @ model.weight.T + model.bias, dim=1)
        return (p - F.one_hot(y, 3).float()) @ model.weight


def test_fgsm_is_eps_times_sign_of_the_hand_gradient():
    model, box = linear_model(), PixelBox(torch.full((4,), -5.0), torch.full((4,), 5.0))
    x = torch.tensor([[0.2, -0.1, 0.4, 1.0], [-0.3, 0.5, 0.0, -0.7]])
    y = torch.tensor([0, 2])
    sign = hand_gradient(model, x, y).sign()
    assert (sign != 0).all()
    assert torch.allclose(fgsm(model, x, y, 0.1), x + 0.1 * sign, rtol=0, atol=1e-7)  # no box
    delta = fgsm(model, x, y, 0.03, box) - x  # box: 1 pixel unit = 10 normalised units
    assert torch.allclose(delta, 0.3 * sign)
    assert box.to_pixels(delta).abs().max().item() == pytest.approx(0.03)
    assert torch.equal(pgd(model, x, y, 0.1, steps=1, step_size=0.1), fgsm(model, x, y, 0.1))


def test_pixel_box_maps_raw_range_through_the_standardisation():
    gen = np.random.default_rng(0)
    raw = gen.integers(0, 256, size=(20, 3, 2, 2)).astype(np.float32)
    raw[0], raw[1] = 0, 255  # every channel holds the darkest and brightest value
    train_split, _ = standardised_splits(raw, np.zeros(20), raw[:2], np.zeros(2))
    box = PixelBox.of(train_split)
    mean = raw.mean(axis=(0, 2, 3)).reshape(3, 1, 1)
    std = raw.std(axis=(0, 2, 3)).reshape(3, 1, 1)
    assert box.scale.numpy() == pytest.approx(255 / std, rel=1e-5)  # eps = 1 ↔ full range
    assert box.lo.numpy() == pytest.approx(-mean / std, rel=1e-5)


def test_attacks_stay_in_the_eps_ball_and_the_box():
    model = build("lenet300_100", (1, 8, 8), 10, width=0.1, seed=0).eval()
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 10
    box = PixelBox(torch.full((1, 1, 1), -1.0), torch.full((1, 1, 1), 1.0))  # scale 2
    start = uniform_start(x, 0.1, torch.Generator().manual_seed(1))
    assert start.abs().max() <= 0.1 and start.abs().max() > 0.09
    for adv in (fgsm(model, x, y, 0.1, box), pgd(model, x, y, 0.1, 7, box=box, start=start)):
        assert (box.to_pixels(adv - x.clamp(-1, 1)).abs() <= 0.1 + 1e-6).all()
        assert adv.min() >= -1 and adv.max() <= 1
    assert torch.equal(pgd(model, x, y, 0.1, steps=0), x)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    data = load("digits")
    model = build("lenet300_100", data.input_shape, 10, width=0.2, seed=0)
    cfg = TrainConfig(optimizer="adam", lr=3e-3, batch_size=60, duration="5ep", eval_every="5ep")
    train(model, data, cfg)
    return model.eval(), data


def test_fgsm_accuracy_falls_with_eps_and_pgd_is_stronger(trained):
    model, data = trained
    box, eps = PixelBox.of(data.train), [0.0, 0.01, 0.02, 0.04, 0.08]
    clean = evaluate(model, data.test)[1]
    assert clean > 0.85
    by_fgsm = robust_accuracy(model, data.test, eps, "fgsm", box=box)
    by_pgd = robust_accuracy(model, data.test, eps, "pgd", box=box)
    accs = [by_fgsm[e] for e in eps]
    assert accs[0] == clean
    assert all(a >= b for a, b in zip(accs, accs[1:], strict=False))  # non-increasing
    assert accs[-1] < clean - 0.2
    assert all(by_pgd[e] <= by_fgsm[e] for e in eps)
    assert by_pgd[0.08] < by_fgsm[0.08]
    again = robust_accuracy(model, data.test, [0.04], "pgd", box=box, seed=3)
    assert again == robust_accuracy(model, data.test, [0.04], "pgd", box=box, seed=3)


def test_stacked_replicas_score_like_each_model_alone(trained):
    model, data = trained
    fresh = build("lenet300_100", data.input_shape, 10, width=0.2, seed=1).eval()
    net = replica_net(model, [model.state_dict(), fresh.state_dict()])
    split = Split(data.test.x[:200], data.test.y[:200])
    box = PixelBox.of(data.train)
    stacked = robust_accuracy_replicas(net, split, [0.02], "pgd", box=box, steps=3)
    alone = [robust_accuracy(m, split, [0.02], "pgd", box=box, steps=3) for m in (model, fresh)]
    for s, a in zip(stacked, alone, strict=True):
        assert abs(s[0.02] - a[0.02]) <= 2 / len(split)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"eps": (0.0,)}, "attack.eps"),
        ({"eps": (2.0,)}, "attack.eps"),
        ({"eps": (0.031371, 0.031372)}, "4 significant digits"),
        ({"kinds": ("cw",)}, "fgsm, pgd"),
        ({"kinds": ("pgd", "pgd")}, "twice"),
        ({"pgd_steps": 0}, "attack.pgd_steps"),
        ({"pgd_step": 0.0}, "attack.pgd_step"),
        ({"subset": -1}, "attack.subset"),
    ],
)
def test_attack_config_errors_name_the_field(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        AttackConfig(**kwargs)


def test_metric_keys_are_readable():
    assert metric_key("pgd", 8 / 255) == "pgd_acc_eps0.03137"
    assert metric_key("fgsm", 0.1) == "fgsm_acc_eps0.1"
