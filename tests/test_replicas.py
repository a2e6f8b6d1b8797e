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
from maskstudy.train import Replicas, cpu_threads, replica_net, train, train_replicas


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
    rb = train_replicas(Replicas([b]), data, cfg, masks=[{}], seeds=[1])[0]
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
@pytest.mark.parametrize("threads", [1, 2])
def test_replicas_are_each_seed_trained_alone_bit_for_bit(model, shape, optimizer, threads):
    data = load("synthetic", shape=shape, size=128)
    cfg = dataclasses.replace(config().train, optimizer=optimizer, lr=0.01, duration="10it")
    models = [build(model, shape, 10, seed=s, width=0.5) for s in range(3)]
    starts = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    masks = [
        prune({n: m.state_dict()[n] for n in full_mask(m)}, full_mask(m), "magnitude", 0.5)
        for m in models
    ]
    with cpu_threads(threads):
        net = replica_net(models[0], starts)
        together = train_replicas(net, data, cfg, masks=masks, seeds=[10, 11, 12], snapshot_step=4)
        for k, state in enumerate(net.states()):
            alone = build(model, shape, 10, seed=0, width=0.5)
            alone.load_state_dict(starts[k])
            result = train(alone, data, cfg, mask=masks[k], seed=10 + k, snapshot_step=4)
            assert max_diff(state, alone.state_dict()) == 0  # every weight and buffer
            assert max_diff(together[k].snapshot, result.snapshot) == 0
            assert together[k].history == result.history  # losses and accuracies too
            for name, m in masks[k].items():
                assert (state[name][~m] == 0).all()  # pruned weights stay exactly zero
    if model == "resnet20":  # BatchNorm running statistics are each replica's own
        means = [s["bn.running_mean"] for s in net.states()]
        assert not torch.equal(means[0], means[1])


def assert_same_runs(a, b) -> None:
    """Two stored runs hold the same bytes: every level's weights, masks and metrics."""
    assert a.path.name == b.path.name and a.levels == b.levels
    for level in a.levels:
        for which in ("start", "final"):
            assert max_diff(a.weights(level, which=which), b.weights(level, which=which)) == 0
        assert all(torch.equal(a.mask(level)[k], b.mask(level)[k]) for k in a.mask(level))
    metrics = ["test_acc", "test_loss", "train_loss", "early_stop_step"]
    assert a.metrics()[metrics].equals(b.metrics()[metrics])


@pytest.mark.parametrize("regime", ["rewind", "reinit_prune"])
def test_a_run_id_means_one_result_however_seeds_are_grouped(tmp_path, regime):
    cfgs = [config(regime=regime, seed=s) for s in (0, 1, 2)]
    three = run_group(cfgs, tmp_path / "three", progress=False)
    pair = run_group(cfgs[1:], tmp_path / "split", progress=False)
    alone = [run(c, tmp_path / "alone", progress=False) for c in cfgs]
    for grouped, split, lone in zip(
        three, [run(cfgs[0], tmp_path / "split", progress=False), *pair], alone, strict=True
    ):
        assert_same_runs(grouped, lone)
        assert_same_runs(split, lone)


def test_threads_are_part_of_a_runs_identity():
    assert config().run_id() != config(**{"train.threads": 2}).run_id()
    with pytest.raises(ConfigError, match="train.threads"):
        config(**{"train.threads": 0})


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
