"""Drop Pruning: one drop step, its expected flow to the fixed point, configs,
a stored non-nested run, and the revival analysis of it."""

import math
from types import SimpleNamespace

import pytest
import torch

from maskstudy import open_run
from maskstudy.analysis import flip_counts, flip_table, revival_table
from maskstudy.analysis.stability import cross_level, stability_table
from maskstudy.errors import ConfigError
from maskstudy.pruning import back_for_target, drop_step, prune
from maskstudy.pruning.drop import fixed_density
from maskstudy.runs.config import (
    DataConfig,
    DropConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    TrainConfig,
)
from maskstudy.runs.run import run


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def alive_mask(n: int, alive: int, seed: int = 1) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=gen(seed))[:alive]] = True
    return mask


# --- one step -------------------------------------------------------------------------------
def test_certain_probabilities_give_hand_computed_masks():
    w = {"w": torch.tensor([0.5, -0.1, 0.9, 0.2, -0.7, 0.3, 0.05, 0.8])}
    mask = {"w": torch.tensor([1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.bool)}
    # candidates: round(0.5 × 6) = 3 lowest |w| alive: -0.1, 0.2, 0.3 → all removed
    out = drop_step(w, mask, 0.5, away=1.0, back=0.0, generator=gen())
    assert out["w"].tolist() == [True, False, True, False, True, False, False, False]
    assert torch.equal(out["w"], prune(w, mask, "magnitude", 0.5)["w"])  # = magnitude pruning
    # back = 1: every weight pruned before the step revives; away = 0 removes nothing
    out = drop_step(w, mask, 0.5, away=0.0, back=1.0, generator=gen())
    assert out["w"].all()


def test_drop_back_revives_pruned_weights():
    w = {"w": torch.randn(400, generator=gen(3))}
    mask = {"w": alive_mask(400, 100)}
    out = drop_step(w, mask, 0.2, away=0.5, back=0.3, generator=gen())
    revived = out["w"] & ~mask["w"]
    assert 50 < int(revived.sum()) < 130  # Binomial(300, 0.3): mean 90, sd 7.9


def test_expected_alive_count_follows_the_flow_equation():
    n_total, n, rate, away, back = 200_000, 60_000, 0.4, 0.5, 0.1
    w = {"w": torch.randn(n_total, generator=gen(4))}
    mask = {"w": alive_mask(n_total, n)}
    out = drop_step(w, mask, rate, away=away, back=back, generator=gen(5))
    candidates = round(rate * n)
    expected = n - away * candidates + back * (n_total - n)  # 60000 − 12000 + 14000 = 62000
    sd = math.sqrt(candidates * away * (1 - away) + (n_total - n) * back * (1 - back))
    assert expected == 62_000
    assert abs(int(out["w"].sum()) - expected) < 4 * sd  # sd ≈ 128


def test_iterating_converges_to_the_fixed_point():
    rate, away, target, n_total = 0.3, 0.5, 0.1, 100_000
    back = back_for_target(target, rate, away)
    assert back == pytest.approx(0.1 * 0.15 / 0.9)  # target·away·rate / (1 − target)
    assert fixed_density(rate, away, back) == pytest.approx(target)
    w = {"w": torch.randn(n_total, generator=gen(6))}
    mask, g, contraction = None, gen(7), 1 - away * rate - back
    for step in range(1, 61):
        mask = drop_step(w, mask, rate, away=away, back=back, generator=g)
        if step in (5, 10, 20):  # d_s = d* + (1 − d*)·(1 − p_away·r − p_back)^s
            predicted = target + (1 - target) * contraction**step
            assert mask["w"].float().mean().item() == pytest.approx(predicted, abs=0.01)
    assert mask["w"].float().mean().item() == pytest.approx(target, abs=0.005)


def test_no_drop_back_gives_nested_masks():
    w = {"a": torch.randn(30, 20, generator=gen(8)), "b": torch.randn(50, generator=gen(9))}
    mask, g = None, gen(10)
    for _ in range(6):
        new = drop_step(w, mask, 0.3, away=0.7, back=0.0, generator=g)
        if mask is not None:
            assert all(not (new[k] & ~mask[k]).any() for k in new)
        mask = new
    assert 0 < sum(int(m.sum()) for m in mask.values()) < 650


def test_seeded_steps_are_deterministic():
    w = {"w": torch.randn(1000, generator=gen(11))}
    mask = {"w": alive_mask(1000, 500)}
    a = drop_step(w, mask, 0.3, away=0.5, back=0.2, generator=gen(12))
    b = drop_step(w, mask, 0.3, away=0.5, back=0.2, generator=gen(12))
    c = drop_step(w, mask, 0.3, away=0.5, back=0.2, generator=gen(13))
    assert torch.equal(a["w"], b["w"]) and not torch.equal(a["w"], c["w"])


def test_exclude_and_layer_amounts():
    w = {"a": torch.randn(500, generator=gen(14)), "b": torch.randn(500, generator=gen(15))}
    mask = {"a": alive_mask(500, 250), "b": alive_mask(500, 250, seed=2)}
    out = drop_step(w, mask, 0.5, away=1.0, back=1.0, exclude=["b"], generator=gen())
    assert torch.equal(out["b"], mask["b"])
    assert int(out["a"].sum()) == 500 - 125  # all 250 pruned revive, 125 candidates go
    out = drop_step(w, mask, 0.5, away=1.0, back=0.0, layer_amounts={"b": 0.2}, generator=gen())
    assert [int(m.sum()) for m in out.values()] == [125, 200]


def test_prune_hands_drop_to_drop_step_with_the_derived_back_probability():
    w = {"w": torch.randn(2000, generator=gen(16))}
    mask = {"w": alive_mask(2000, 800)}
    via_prune = prune(w, mask, "drop", 0.25, away=0.6, target=0.2, generator=gen(17))
    back = 0.2 * 0.6 * 0.25 / 0.8
    direct = drop_step(w, mask, 0.25, away=0.6, back=back, generator=gen(17))
    assert torch.equal(via_prune["w"], direct["w"])


# --- configuration ----------------------------------------------------------------------------
def test_drop_fields_are_validated_and_leave_other_run_ids_alone():
    with pytest.raises(ConfigError, match="prune.drop.away = 0"):
        PruneConfig(criterion="drop", drop=DropConfig(away=0))
    with pytest.raises(ConfigError, match="prune.drop.target = 1.2 must be a density"):
        DropConfig(target=1.2)
    with pytest.raises(ConfigError, match="out of reach: .* densest fixed point is 0.9091"):
        PruneConfig(criterion="drop", amount=0.2, drop=DropConfig(away=0.5, target=0.95))
    with pytest.raises(ConfigError, match="prune.drop.revive = 'first' .* zero, last"):
        RunConfig().replace({"prune.drop.revive": "first"})
    with pytest.raises(ConfigError, match="regime = 'rewind' does not keep"):
        RunConfig(prune=PruneConfig(drop=DropConfig(revive="last")))
    assert RunConfig().run_id() == "lenet300_100-mnist-magnitude-rewind-s0-44136fa355"  # as before


def test_drop_options_moved_into_their_section_keep_names_and_run_ids():
    """prune.drop_* became prune.drop.*: the old names still read, into the same run id (the
    ids of stored runs were hashed under the old names, and stay so)."""
    changes = {"prune.criterion": "drop", "prune.drop_away": 0.8, "prune.drop_target": 0.1}
    old = RunConfig().replace(changes)
    new = RunConfig().replace(
        {"prune.criterion": "drop", "prune.drop.away": 0.8, "prune.drop.target": 0.1}
    )
    assert old == new and old.prune.drop == DropConfig(away=0.8, target=0.1)
    assert new.run_id() == "lenet300_100-mnist-drop-rewind-s0-e0598bfabd"  # the id before sections
    stored = {"prune": {"criterion": "drop", "drop_away": 0.8, "drop_target": 0.1}}
    assert RunConfig.from_dict(stored) == new  # a config.json written before sections
    assert new.to_dict()["prune"]["drop"] == {"away": 0.8, "target": 0.1, "revive": "zero"}


# --- a stored run -----------------------------------------------------------------------------
def small(**changes) -> RunConfig:
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.2),
        train=TrainConfig(
            optimizer="sgd", lr=0.05, batch_size=32, duration="8it", eval_every="8it"
        ),
        prune=PruneConfig(criterion="drop", amount=0.5, drop=DropConfig(away=0.9, target=0.3)),
        regime="finetune",
        levels=3,
    )
    return cfg.replace(changes) if changes else cfg


@pytest.fixture(scope="module")
def dropped(tmp_path_factory):
    return run(small(), tmp_path_factory.mktemp("runs"), progress=False)


def test_stored_trajectory_is_not_nested_and_revived_weights_start_at_zero(dropped):
    r = open_run(dropped.path)
    masks = [r.mask(lv) for lv in r.levels]
    assert r.levels == [0, 1, 2, 3]
    revived = [
        sum(int((b[k] & ~a[k]).sum()) for k in a) for a, b in zip(masks, masks[1:], strict=False)
    ]
    assert revived[0] == 0 and revived[1] > 0 and revived[2] > 0  # level 0 keeps everything
    for level in r.levels:
        final, mask = r.weights(level), r.mask(level)
        assert all((final[k][~mask[k]] == 0).all() for k in mask)
    start, before, now = r.weights(2, which="start"), masks[1], masks[2]
    back = {k: now[k] & ~before[k] for k in now}
    assert all((start[k][back[k]] == 0).all() for k in now)
    trained = r.weights(2)
    assert any((trained[k][back[k]] != 0).any() for k in now)  # revived weights train again


def test_revival_table_counts_match_the_stored_masks(dropped):
    r = open_run(dropped.path)
    table = revival_table([r]).set_index(["level", "layer"])
    masks = {lv: r.mask(lv) for lv in r.levels}
    for level in (1, 2, 3):
        before, now = masks[level - 1], masks[level]
        for name in now:
            row = table.loc[(level, name)]
            assert row["revived"] == int((now[name] & ~before[name]).sum())
            assert row["removed"] == int((before[name] & ~now[name]).sum())
            assert row["kept"] == int(before[name].sum()) - row["removed"] + row["revived"]
        whole = table.loc[(level, "all")]
        assert whole["revived"] == sum(table.loc[(level, n)]["revived"] for n in now)
    inter = sum(int((masks[1][k] & masks[2][k]).sum()) for k in masks[1])
    union = sum(int((masks[1][k] | masks[2][k]).sum()) for k in masks[1])
    assert table.loc[(1, "all")]["jaccard_next"] == pytest.approx(inter / union)
    assert math.isnan(table.loc[(3, "all")]["jaccard_next"])
    assert table.loc[(0, "all")]["criterion"] == "drop"
    flips = flip_table([r])
    whole = flips[flips.layer == "all"]
    assert whole["weights"].sum() == table.loc[(3, "all")]["total"]
    mean = (whole["flips"] * whole["weights"]).sum() / whole["weights"].sum()
    assert mean == pytest.approx(table.loc[(3, "all")]["flips_mean"])


def test_stability_compares_only_weights_alive_at_both_levels(dropped):
    r = open_run(dropped.path)
    row = stability_table([r], levels=[2]).set_index("layer").loc["all"]
    both = {k: r.mask(1)[k] & r.mask(2)[k] for k in r.mask(2)}
    assert row["pearson"] == pytest.approx(cross_level(r.weights(1), r.weights(2), both)["pearson"])


def test_revive_last_restarts_revived_weights_from_their_last_trained_value(tmp_path):
    cfg = small(**{"prune.drop.revive": "last", "train.lr": 1e-12, "levels": 2})
    r = run(cfg, tmp_path, progress=False)
    m0, m1, m2 = (r.mask(lv) for lv in (0, 1, 2))
    f0, start, final = r.weights(0), r.weights(2, which="start"), r.weights(2)
    back = {k: m2[k] & ~m1[k] for k in m2}  # pruned at level 1, alive at 0: last value = f0
    assert sum(int(b.sum()) for b in back.values()) > 0
    for k, b in back.items():
        assert torch.equal(start[k][b], f0[k][b]) and (f0[k][b] != 0).all()
        assert torch.allclose(final[k][b], f0[k][b], atol=1e-9)  # training began there (lr ≈ 0)


# --- hand-made trajectory -------------------------------------------------------------------
def test_revival_numbers_on_a_hand_trajectory():
    bits = [[1, 1, 1, 1], [1, 0, 1, 0], [1, 1, 0, 0], [1, 1, 0, 1]]
    masks = [{"w": torch.tensor(b, dtype=torch.bool)} for b in bits]
    assert flip_counts(masks)["w"].tolist() == [0, 2, 1, 2]
    fake = SimpleNamespace(
        config=RunConfig(), run_id="hand", levels=[0, 1, 2, 3], mask=lambda lv: masks[lv]
    )
    t = revival_table([fake]).set_index(["level", "layer"])
    assert [t.loc[(lv, "w")]["revived"] for lv in (1, 2, 3)] == [0, 1, 1]
    assert [t.loc[(lv, "w")]["removed"] for lv in (1, 2, 3)] == [2, 1, 0]
    assert t.loc[(1, "w")]["jaccard_prev"] == 0.5 and t.loc[(1, "w")]["jaccard_next"] == 1 / 3
    last = t.loc[(3, "w")]
    assert (last["revived_ever"], last["flips_mean"], last["flips_max"]) == (2, 1.25, 2)
    hist = flip_table([fake]).query("layer == 'w'")
    assert dict(zip(hist["flips"], hist["weights"], strict=True)) == {0: 1, 1: 1, 2: 2}
