"""Seeds trained side by side as stacked replicas give each seed's own run."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from maskstudy.data import load
from maskstudy.errors import ConfigError
from maskstudy.models import build
from maskstudy.pruning import full_mask, prune
from maskstudy.runs.config import DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig
from maskstudy.runs.run import replica_key, run, run_group
from maskstudy.train import Single, Stacked, train, train_replicas


def config(model: str = "lenet300_100", shape=(1, 8, 8), **changes) -> RunConfig:
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=shape, synthetic_size=256),
        model=ModelConfig(name=model, width=0.5),
        train=TrainConfig(
            optimizer="sgd",
            lr=0.05,
            momentum=0.9,
            weight_decay=1e-3,
            batch_size=32,
            duration="12it",
            eval_every="6it",
        ),
        prune=PruneConfig(amount=0.3),
        levels=2,
    )
    return cfg.replace(changes) if changes else cfg


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_single_path_is_the_plain_module_bit_for_bit():
    data = load("synthetic", shape=(1, 12, 12), size=128)
    cfg = config().train
    a, b = build("lenet5", (1, 12, 12), 10, seed=3), build("lenet5", (1, 12, 12), 10, seed=3)
    ra = train(a, data, cfg, seed=1)
    rb = train_replicas(Single(b), data, cfg, masks=[{}], seeds=[1])[0]
    assert max_diff(a.state_dict(), b.state_dict()) == 0
    assert ra.history == rb.history


@pytest.mark.parametrize(
    "model,shape,optimizer",
    [
        ("lenet300_100", (1, 8, 8), "adam"),
        ("lenet5", (1, 12, 12), "sgd"),
        ("resnet20", (3, 8, 8), "sgd"),
    ],
)
def test_stacked_replicas_match_each_seed_trained_alone(model, shape, optimizer):
    data = load("synthetic", shape=shape, size=128)
    cfg = dataclasses.replace(config().train, optimizer=optimizer, lr=0.01, duration="10it")
    models = [build(model, shape, 10, seed=s, width=0.5) for s in range(3)]
    starts = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    masks = [
        prune({n: m.state_dict()[n] for n in full_mask(m)}, full_mask(m), "magnitude", 0.5)
        for m in models
    ]
    net = Stacked(models[0], starts)
    stacked = train_replicas(net, data, cfg, masks=masks, seeds=[10, 11, 12], snapshot_step=4)
    for k, state in enumerate(net.states()):
        assert all(t.is_contiguous() for t in state.values())  # as safetensors stores them
        alone = build(model, shape, 10, seed=0, width=0.5)
        alone.load_state_dict(starts[k])
        result = train(alone, data, cfg, mask=masks[k], seed=10 + k, snapshot_step=4)
        assert max_diff(state, alone.state_dict()) < 1e-4
        assert max_diff(stacked[k].snapshot, result.snapshot) < 1e-5
        assert stacked[k].final["test_acc"] == pytest.approx(result.final["test_acc"], abs=1 / 32)
        assert stacked[k].final["train_loss"] == pytest.approx(result.final["train_loss"], rel=1e-4)
        for name, m in masks[k].items():
            assert (state[name][~m] == 0).all()  # pruned weights stay exactly zero
    if model == "resnet20":  # BatchNorm running statistics are each replica's own
        means = [s["bn.running_mean"] for s in net.states()]
        assert not torch.equal(means[0], means[1])


def test_group_of_one_is_exactly_a_plain_run(tmp_path):
    cfg = config()
    alone = run(cfg, tmp_path / "a", progress=False)
    grouped = run_group([cfg], tmp_path / "b", progress=False)[0]
    for level in alone.levels:
        assert max_diff(alone.weights(level), grouped.weights(level)) == 0
        assert all(
            torch.equal(alone.mask(level)[k], grouped.mask(level)[k]) for k in alone.mask(level)
        )


@pytest.mark.parametrize("regime", ["rewind", "reinit_prune"])
def test_group_members_equal_their_runs_alone(tmp_path, regime):
    cfgs = [config(regime=regime, seed=s) for s in (0, 1, 2)]
    grouped = run_group(cfgs, tmp_path / "group", progress=False)
    for cfg, g in zip(cfgs, grouped, strict=True):
        alone = run(cfg, tmp_path / "alone", progress=False)
        assert g.path.name == alone.path.name == cfg.run_id()
        for level in alone.levels:
            a, b = alone.mask(level), g.mask(level)
            agree = sum(int((a[k] == b[k]).sum()) for k in a) / sum(m.numel() for m in a.values())
            assert agree > 0.999  # magnitude ties at float tolerance may flip a weight
            assert (
                max_diff(alone.weights(level, which="start"), g.weights(level, which="start"))
                < 1e-3
            )
        assert g.metrics()["test_acc"].tolist() == pytest.approx(
            alone.metrics()["test_acc"].tolist(), abs=0.02
        )


def test_members_at_different_levels_catch_up(tmp_path):
    run(config(seed=1, levels=1), tmp_path, progress=False)
    grouped = run_group([config(seed=0), config(seed=1), config(seed=2)], tmp_path, progress=False)
    assert [g.levels for g in grouped] == [[0, 1, 2]] * 3


def test_groups_refuse_configs_that_differ_beyond_seed(tmp_path):
    with pytest.raises(ConfigError, match="differ only in seed"):
        run_group([config(seed=0), config(seed=1, regime="reinit_prune")], tmp_path)
    with pytest.raises(ConfigError, match="same seed twice"):
        run_group([config(seed=0), config(seed=0)], tmp_path)
    assert replica_key(config(seed=0)) == replica_key(config(seed=5))
    assert replica_key(config(levels=3)) != replica_key(config(levels=2))
