"""The movement criteria (pruning/movement.py): a criterion with an option, in one file."""

import numpy as np
import pytest
import torch

from maskstudy.errors import ConfigError
from maskstudy.pruning import prune
from maskstudy.runs.config import DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig
from maskstudy.runs.run import run

W = torch.tensor([[1.0, -2.0, 3.0], [0.5, -0.1, 4.0]])
W0 = torch.tensor([[0.9, 1.0, -1.0], [0.0, -2.0, 3.5]])


def numpy_keep(scores: np.ndarray, remove: int) -> np.ndarray:
    """Independent reference: drop the ``remove`` lowest (stable: lower flat index first)."""
    keep = np.ones(scores.size, dtype=bool)
    keep[np.argsort(scores.reshape(-1), kind="stable")[:remove]] = False
    return keep.reshape(scores.shape)


def test_distance_and_increase_rank_as_zhou_et_al_define_them():
    distance = prune({"w": W}, None, "movement", 0.5, init={"w": W0})["w"]
    increase = prune({"w": W}, None, "movement", 0.5, init={"w": W0}, measure="increase")["w"]
    # |w − w0| = [[.1, 3, 4], [.5, 1.9, .5]]; |w| − |w0| = [[.1, 1, 2], [.5, −1.9, .5]]
    assert distance.tolist() == [[False, True, True], [False, True, False]]
    assert increase.tolist() == [[False, True, True], [False, False, True]]
    for measure, got in (("distance", distance), ("increase", increase)):
        w, w0 = W.numpy(), W0.numpy()
        scores = np.abs(w - w0) if measure == "distance" else np.abs(w) - np.abs(w0)
        assert np.array_equal(got.numpy(), numpy_keep(scores, 3))


def test_global_scope_pools_the_movement_of_every_tensor():
    gen = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(4, 5, generator=gen), "b": torch.randn(3, 3, generator=gen)}
    init = {n: torch.randn(t.shape, generator=gen) for n, t in weights.items()}
    got = prune(weights, None, "movement", 0.3, "global", init=init)
    flat = np.concatenate([(weights[n] - init[n]).abs().reshape(-1).numpy() for n in weights])
    keep = numpy_keep(flat, round(0.3 * flat.size))
    assert np.array_equal(np.concatenate([got[n].reshape(-1).numpy() for n in weights]), keep)


def test_missing_init_and_bad_options_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="pass init=, θ0 of every masked tensor"):
        prune({"w": W}, None, "movement", 0.5)
    with pytest.raises(ConfigError, match="prune.movement.measure = 'speed' .* distance, increase"):
        RunConfig().replace({"prune.criterion": "movement", "prune.movement.measure": "speed"})
    with pytest.raises(ConfigError, match="prune.movement.measure = 'speed'"):
        prune({"w": W}, None, "movement", 0.5, init={"w": W0}, measure="speed")
    with pytest.raises(ConfigError, match="cannot run with prune.schedule = 'gradual'"):
        RunConfig().replace(
            {"prune.criterion": "movement", "prune.schedule": "gradual", "levels": 0}
        )


def test_the_option_is_part_of_the_run_id_only_when_set():
    base = RunConfig(prune=PruneConfig(criterion="movement"))
    assert base.to_dict()["prune"]["movement"] == {"measure": "distance"}  # stored in config.json
    same = base.replace({"prune.movement.measure": "distance"})
    other = base.replace({"prune.movement.measure": "increase"})
    assert same.run_id() == base.run_id() != other.run_id()


def test_a_run_prunes_by_movement_from_its_stored_init(tmp_path):
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.1),
        train=TrainConfig(lr=0.1, batch_size=32, duration="10it", eval_every="10it"),
        prune=PruneConfig(criterion="movement", amount=0.4),
        levels=1,
    ).replace({"prune.movement.measure": "increase"})
    r = run(cfg, tmp_path, progress=False)
    init, trained, mask = r.weights(which="init"), r.weights(0), r.mask(1)
    for name, m in mask.items():
        scores = trained[name].abs().numpy() - init[name].abs().numpy()
        expected = numpy_keep(scores, round(0.4 * scores.size))
        assert np.array_equal(m.numpy(), expected), name
