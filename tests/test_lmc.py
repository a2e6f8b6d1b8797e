"""Linear mode connectivity: exact path end points, barrier arithmetic, and the probe on a run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskstudy.analysis import lmc
from maskstudy.analysis.lmc import (
    STABLE_BARRIER,
    error_barrier,
    interpolate,
    interpolation_errors,
    lmc_probe,
)
from maskstudy.cli import main
from maskstudy.data import from_config
from maskstudy.data.base import Split
from maskstudy.errors import ConfigError
from maskstudy.runs.config import DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig
from maskstudy.runs.run import build_model, run
from maskstudy.train import evaluate, train, train_replicas


def bn_net(seed: int) -> nn.Module:
    """A small MLP with BatchNorm whose running statistics are far from their defaults."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3)
    )
    bn = net[2]
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.num_batches_tracked.fill_(seed + 5)
    return net


@pytest.fixture(scope="module")
def split() -> Split:
    gen = torch.Generator().manual_seed(7)
    return Split(torch.randn(50, 1, 4, 4, generator=gen), torch.randint(0, 3, (50,), generator=gen))


def state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_end_points_equal_evaluate_exactly_and_buffers_are_interpolated(split):
    model, w1, w2 = bn_net(0), state(bn_net(1)), state(bn_net(2))
    before = state(model)
    curve = interpolation_errors(model, w1, w2, split, points=5)
    assert list(curve.columns) == ["alpha", "loss", "error"]
    assert curve.alpha.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    for alpha, weights in ((1.0, w1), (0.0, w2)):
        model.load_state_dict(weights)
        loss, acc = evaluate(model, split)
        row = curve[curve.alpha == alpha].iloc[0]
        assert (row.loss, row.error) == (loss, 1.0 - acc)
        model.eval()
        with torch.no_grad():
            logits = model(split.x)
        assert row.loss == pytest.approx(F.cross_entropy(logits, split.y).item(), rel=1e-6)
        assert row.error == pytest.approx((logits.argmax(1) != split.y).float().mean().item())
    assert all(torch.equal(state(bn_net(0))[k], before[k]) for k in before)  # model untouched

    ends = interpolate(w1, w2, 0.0)
    assert torch.equal(ends["2.num_batches_tracked"], w1["2.num_batches_tracked"])
    assert torch.equal(ends["2.running_var"], w2["2.running_var"])
    halfway = {k: (w1[k] + w2[k]) / 2 if w1[k].is_floating_point() else w1[k] for k in w1}
    model.load_state_dict(halfway)
    middle = curve[curve.alpha == 0.5].iloc[0]
    assert middle.loss == pytest.approx(evaluate(model, split)[0], rel=1e-6)
    model.load_state_dict({**halfway, "2.running_mean": w1["2.running_mean"]})
    assert abs(middle.loss - evaluate(model, split)[0]) > 1e-3  # the BN statistics moved too


def test_barrier_of_hand_made_curves():
    assert error_barrier([0.10, 0.30, 0.25, 0.05]) == pytest.approx(0.30 - 0.075)
    assert error_barrier(np.array([0.1, 0.2, 0.3])) == pytest.approx(0.1)  # a straight line
    assert error_barrier([0.2, 0.1, 0.2]) == pytest.approx(0.0)  # a valley has no barrier
    frame = pd.DataFrame({"alpha": [1.0, 0.0, 0.5], "error": [0.05, 0.10, 0.30]})
    assert error_barrier(frame) == pytest.approx(0.30 - 0.075)  # rows sorted by alpha first


@pytest.mark.parametrize(
    "errors,message",
    [
        ([0.1], "at least its two end points"),
        (pd.DataFrame({"alpha": [0.0, 1.0], "loss": [1.0, 2.0]}), "needs 'alpha' and 'error'"),
        (pd.DataFrame({"alpha": [0.0, 1.0, 0.0, 1.0], "error": [0.1] * 4}), "more than one"),
    ],
)
def test_barrier_rejects_bad_curves(errors, message):
    with pytest.raises(ConfigError, match=message):
        error_barrier(errors)


def test_barrier_is_zero_between_identical_weights(split):
    model, w = bn_net(0), state(bn_net(3))
    curve = interpolation_errors(model, w, w, split, points=7)
    assert error_barrier(curve) == pytest.approx(0.0, abs=1e-12)
    assert curve.loss.to_numpy() == pytest.approx(curve.loss.iloc[0], rel=1e-6)


def test_interpolation_rejects_bad_arguments(split):
    model, w = bn_net(0), state(bn_net(1))
    with pytest.raises(ConfigError, match="points = 1"):
        interpolation_errors(model, w, w, split, points=1)
    with pytest.raises(ConfigError, match=r"w2 does not match .*missing: \['4.bias'\]"):
        interpolation_errors(model, w, {k: v for k, v in w.items() if k != "4.bias"}, split)
    with pytest.raises(ConfigError, match=r"w1\['1.weight'\] has shape \(12, 17\)"):
        interpolation_errors(model, {**w, "1.weight": torch.zeros(12, 17)}, w, split)


# --- the probe on a stored run --------------------------------------------------------------
def tiny_config(**fields) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.2),
        train=TrainConfig(
            optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, duration="16it", eval_every="8it"
        ),
        prune=PruneConfig(amount=0.2, layer_amounts={"output": 0.1}),
        **{"rewind_to": "4it", "levels": 2, **fields},
    )


@pytest.fixture(scope="module")
def rewound(tmp_path_factory):
    return run(tiny_config(), tmp_path_factory.mktemp("runs"), progress=False)


@pytest.fixture(scope="module")
def dense_only(tmp_path_factory):
    """The same dense training as ``rewound``'s level 0, but rewinding to 0it: no θk stored."""
    return run(
        tiny_config(rewind_to="0it", levels=0), tmp_path_factory.mktemp("runs"), progress=False
    )


@pytest.fixture
def copies(monkeypatch) -> list[dict]:
    """What the probe hands train_replicas: the copies' starting states, start step, masks."""
    calls = []

    def record(net, data, cfg, **kwargs):
        calls.append({"states": net.states(), "train": cfg, **kwargs})
        return train_replicas(net, data, cfg, **kwargs)

    monkeypatch.setattr(lmc, "train_replicas", record)
    return calls


def equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_probe_trains_two_masked_copies_from_the_level_start(rewound):
    result = lmc_probe(rewound, 2, seeds=(1, 2))
    assert result.start_step == 4 == rewound.level_metrics(2)["start_step"]
    w1, w2 = result.weights
    mask = rewound.mask(2)
    for w in (w1, w2):
        assert all((w[k][~mask[k]] == 0).all() for k in mask)  # pruned weights exactly zero
    assert any(not torch.equal(w1[k], w2[k]) for k in mask)  # different data orders
    # copy 1 is the level's start, masked, trained from step 4 on data order 1
    data = from_config(rewound.config.data)
    alone = build_model(rewound.config, data, seed=0)
    alone.load_state_dict(rewound.weights(2, which="start"))
    train(alone, data, rewound.config.train, mask=mask, seed=1, start_step=4)
    trained = alone.state_dict()
    assert max((trained[k] - w1[k]).abs().max().item() for k in w1) < 1e-4

    curve = result.curve
    assert list(curve.columns) == ["split", "alpha", "loss", "error"]
    assert curve.groupby("split").size().to_dict() == {"test": 30, "train": 30}
    assert curve[curve.split == "test"].alpha.tolist() == pytest.approx(np.linspace(0, 1, 30))
    test_curve = curve[curve.split == "test"]
    assert result.barrier_test == error_barrier(test_curve)
    assert result.barrier_train == error_barrier(curve[curve.split == "train"])
    assert np.isfinite([result.barrier_test, result.barrier_train]).all()
    assert result.barrier_test >= 0 and result.barrier_train >= 0
    assert result.stable == (result.barrier_test < STABLE_BARRIER)
    alone.load_state_dict(w1)
    assert result.final_errors["test"][0] == 1 - evaluate(alone, data.test)[1]
    assert result.final_errors["test"][1] == test_curve.error.iloc[0]
    summary = result.summary()
    assert summary["level"] == 2 and summary["seeds"] == [1, 2]
    assert summary["train_error_2"] == result.final_errors["train"][1]


def test_a_finetune_level_is_probed_at_the_final_learning_rate(tmp_path, copies):
    schedule = {"train.schedule": "step", "train.milestones": ["8it"], "rewind_to": "0it"}
    tuned = run(
        tiny_config(regime="finetune", levels=1).replace(schedule), tmp_path, progress=False
    )
    assert (tuned.history().query("level == 1")["lr"] == 0.05 * 0.1).all()  # how it trained
    lmc_probe(tuned, 1, points=3)
    (call,) = copies
    assert call["start_step"] == 0
    assert (call["train"].lr, call["train"].schedule) == (0.05 * 0.1, "constant")  # the same


def test_probe_rejects_bad_levels_and_seeds(rewound):
    with pytest.raises(ConfigError, match=r"level = 5 is not a completed level.*\[0, 1, 2\]"):
        lmc_probe(rewound, 5)
    with pytest.raises(ConfigError, match="two different integers"):
        lmc_probe(rewound, 1, seeds=(3, 3))
    with pytest.raises(ConfigError, match="two different integers"):
        lmc_probe(rewound, 1, seeds=(1, 2, 3))


# --- level 0: the dense network from θk ------------------------------------------------------
def path_errors(model: nn.Module, w1: dict, w2: dict, split: Split) -> np.ndarray:
    """Errors along the path at 30 α, from a plain forward pass of the whole split."""
    errors = []
    for alpha in np.linspace(0, 1, 30):
        model.load_state_dict({k: alpha * w1[k] + (1 - alpha) * w2[k] for k in w1})
        model.eval()
        with torch.no_grad():
            errors.append((model(split.x).argmax(1) != split.y).double().mean().item())
    return np.array(errors)


def test_level_0_copies_start_from_theta_k_at_step_k(rewound, copies):
    theta_k, theta0 = rewound.weights(which="rewind"), rewound.weights(which="init")
    assert not equal(theta_k, theta0)
    result = lmc_probe(rewound, 0, seeds=(1, 2))
    (call,) = copies
    assert call["start_step"] == result.start_step == 4
    assert all(equal(state, theta_k) for state in call["states"])
    assert all(m.all() for mask in call["masks"] for m in mask.values())  # dense: all ones
    assert call["seeds"] == [1, 2]
    w1, w2 = result.weights
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) > 1e-3  # different SGD noise
    # copy 1 alone: θk trained from step 4 to the end on data order 1
    data = from_config(rewound.config.data)
    model = build_model(rewound.config, data, seed=0)
    model.load_state_dict(theta_k)
    train(model, data, rewound.config.train, seed=1, start_step=4)
    assert max((model.state_dict()[k] - w1[k]).abs().max().item() for k in w1) < 1e-4
    # the barriers, recomputed from the two end points
    for name, split in (("test", data.test), ("train", data.train)):
        errors = path_errors(model, w1, w2, split)
        barrier = errors.max() - (errors[0] + errors[-1]) / 2
        assert getattr(result, f"barrier_{name}") == pytest.approx(barrier, abs=1e-12)
        curve = result.curve[result.curve.split == name]
        assert curve.error.to_numpy() == pytest.approx(errors, abs=1e-12)


def test_level_0_at_k_0_starts_from_theta0(rewound, copies):
    result = lmc_probe(rewound, 0, rewind_to="0it", points=3)
    assert copies[0]["start_step"] == result.start_step == 0
    assert all(equal(state, rewound.weights(which="init")) for state in copies[0]["states"])


def test_an_unstored_theta_k_is_replayed_exactly(rewound, dense_only, copies):
    """dense_only trains level 0 like rewound but stores no θk: the probe retrains θ0 to
    step 4 on the run's data order and must land on the θk rewound stored."""
    assert "rewind.safetensors" not in dense_only.info["files"]
    result = lmc_probe(dense_only, 0, rewind_to="4it", points=3)
    assert copies[0]["start_step"] == result.start_step == 4
    assert all(equal(state, rewound.weights(which="rewind")) for state in copies[0]["states"])


def test_rewind_to_is_refused_where_it_cannot_apply(rewound, tmp_path):
    with pytest.raises(ConfigError, match="applies to level 0 .* only"):
        lmc_probe(rewound, 1, rewind_to="2it")
    with pytest.raises(ConfigError, match=r"rewind_to = '16it' \(16 iterations\) is not before"):
        lmc_probe(rewound, 0, rewind_to="16it")
    with pytest.raises(ConfigError, match="rewind_to = '4' is not a duration"):
        lmc_probe(rewound, 0, rewind_to="4")
    cosine = tiny_config(rewind_to="0it", levels=0).replace({"train.schedule": "cosine"})
    trained = run(cosine, tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"cosine learning rate.*rewind_to = '2it' to store"):
        lmc_probe(trained, 0, rewind_to="2it")


def test_lmc_command_at_a_chosen_rewind_point(dense_only, capsys):
    argv = ["lmc", str(dense_only.path), "--level", "0", "--rewind-to", "2it", "--points", "3"]
    assert main([*argv, "--quiet"]) == 0
    assert "level 0 from step 2: error barrier" in capsys.readouterr().out
    curve = pd.read_csv(dense_only.path / "analysis" / "lmc_level00_k2_seeds1-2.csv")
    assert len(curve) == 6


def test_lmc_finds_the_data_a_run_trained_from(shared_data, tmp_path, monkeypatch, capsys):
    cfg = tiny_config(rewind_to="0it", levels=0).replace(
        {"data.name": "mnist", "train.duration": "4it", "train.eval_every": "4it"}
    )
    trained = run(cfg, tmp_path / "runs", data_root=shared_data, progress=False)
    assert trained.data_root == shared_data.resolve()  # recorded in config.json, absolute
    monkeypatch.chdir(tmp_path)  # where no data/ folder is, and no MASKSTUDY_DATA
    monkeypatch.delenv("MASKSTUDY_DATA", raising=False)
    argv = ["lmc", str(trained.path), "--level", "0", "--points", "2", "--quiet"]
    assert main(argv) == 0
    assert "level 0 from step 0: error barrier" in capsys.readouterr().out
    assert trained.model(0).fc1.weight.shape[1] == 28 * 28
