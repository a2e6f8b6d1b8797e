"""RunConfig: validation errors name the field, identity is a stable hash, overrides by dotted name."""

import pytest

from maskstudy.errors import ConfigError
from maskstudy.runs.config import PruneConfig, RunConfig, TrainConfig, field_paths, parse_value
from maskstudy.runs.presets import PRESETS, get_preset
from maskstudy.steps import to_iterations


def test_run_id_ignores_levels_but_not_hyperparameters():
    base = RunConfig()
    assert base.run_id() == RunConfig(levels=17).run_id()
    assert base.run_id() != RunConfig(seed=1).run_id()
    assert base.run_id() != base.replace({"train.lr": 0.05}).run_id()
    assert base.run_id().startswith("lenet300_100-mnist-magnitude-rewind-s0-")


def test_run_id_is_pinned():
    """Changing this hash orphans every stored run: only change it on purpose."""
    assert RunConfig().run_id() == "lenet300_100-mnist-magnitude-rewind-s0-44136fa355"


def test_round_trip_and_overrides():
    cfg = get_preset("resnet20_cifar10_rewind")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    new = cfg.replace({"train.lr": 0.03, "prune.layer_amounts": {"output": 0.5}, "levels": 3})
    assert new.train.lr == 0.03 and new.prune.layer_amounts == {"output": 0.5} and new.levels == 3
    assert new.train.milestones == ("80ep", "120ep")


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"prune.amount": 0.0}, "prune.amount"),
        ({"prune.amount": 1.5}, "prune.amount"),
        ({"levels": -1}, "levels"),
        ({"regime": "rewnd"}, "rewind, finetune, lr_rewind, reinit_prune"),
        ({"regime": "reinit"}, "branch kind 'reinit'"),
        ({"train.optimizer": "rmsprop"}, "sgd, adam"),
        ({"train.duration": "ten epochs"}, "train.duration"),
        ({"train.batch_size": 0}, "train.batch_size"),
        ({"train.lr": "fast"}, "train.lr"),
        ({"train.nesterov": True}, "train.momentum"),
        ({"prune.scope": "everything"}, "layer, global"),
        ({"prune.dim": 3}, "prune.dim"),
        ({"model.init": "zeros"}, "kaiming_normal"),
        ({"train.lrr": 0.1}, "unknown config field 'train.lrr'"),
        ({"nope.lr": 0.1}, "unknown config field 'nope'"),
    ],
)
def test_bad_values_name_the_field(overrides, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        RunConfig().replace(overrides)


def test_unknown_registry_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="valid models: .*lenet300_100"):
        RunConfig().replace({"model.name": "lenet9000"})
    with pytest.raises(ConfigError, match="valid datasets: .*mnist"):
        RunConfig().replace({"data.name": "imagenet22k"})
    with pytest.raises(ConfigError, match="valid criterions: .*magnitude"):
        PruneConfig(criterion="biggest")


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="lenet300_mnist_lth"):
        get_preset("lenet")


def test_every_preset_is_valid_and_unique():
    ids = {name: p.config.run_id() for name, p in PRESETS.items()}
    assert len(set(ids.values())) == len(ids)


def test_lth_preset_matches_the_paper():
    cfg = get_preset("lenet300_mnist_lth")
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.batch_size) == ("adam", 1.2e-3, 60)
    assert to_iterations(cfg.train.duration, 917) == 50_000
    assert cfg.prune.amount == 0.2 and cfg.prune.layer_amounts == {"output": 0.1}


def test_steps_and_values():
    assert to_iterations("2ep50it", 100) == 250
    assert to_iterations("0.5ep", 10) == 5
    assert parse_value("0.1") == 0.1 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value("adam") == "adam"
    assert "train.lr" in field_paths() and "prune.layer_amounts" in field_paths()
    assert TrainConfig(milestones=("80ep",)).milestones == ("80ep",)
