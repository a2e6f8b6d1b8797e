"""Weight stability S1–S3 on hand-built tensors with known answers, and the table on real runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from maskstudy.analysis.stability import (
    cross_level,
    mask_persistence,
    movement,
    stability_table,
    stability_to_pruning,
)
from maskstudy.errors import ConfigError
from maskstudy.runs.config import DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig
from maskstudy.runs.run import branch, run

T, F = True, False


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def b(*values: bool) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


# --- S1 -------------------------------------------------------------------------------------
def test_s1_zero_when_sub_equals_dense_on_the_mask():
    gen = torch.Generator().manual_seed(0)
    dense, init = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    mask = torch.rand(5, 7, generator=gen) < 0.5
    sub = torch.where(mask, dense, torch.randn(5, 7, generator=gen))  # differs only where pruned
    assert stability_to_pruning(sub, dense, init, mask) == 0.0
    assert stability_to_pruning(sub, dense, init, ~mask) > 0


def test_s1_known_ratios_single_and_over_layers():
    mask = b(T, T, F)
    init, dense = t(0, 0, 0), t(3, 4, 100)  # the dense weights travelled ‖(3, 4)‖ = 5
    assert stability_to_pruning(t(0, 0, -7), dense, init, mask) == pytest.approx(1.0)
    # sub = dense + c (dense − init) gives s1 = |c|, for numpy input too
    sub = dense + 0.3 * (dense - init)
    assert stability_to_pruning(sub.numpy(), dense.numpy(), init.numpy(), mask.numpy()) == (
        pytest.approx(0.3)
    )
    # a dict is measured over all its entries together: sqrt(Σ num²) / sqrt(Σ den²)
    sub2 = {"a": t(3, 4, 0), "b": t(1, 1)}
    dense2 = {"a": t(0, 0, 9), "b": t(2, 3)}
    init2 = {"a": t(0, 0, 0), "b": t(0, 0)}
    mask2 = {"a": b(T, T, F), "b": b(F, T)}
    assert stability_to_pruning(sub2, dense2, init2, mask2) == pytest.approx(
        math.sqrt(25 + 4) / math.sqrt(0 + 9)
    )
    assert math.isnan(stability_to_pruning(sub, dense, dense, mask))  # dense did not move


# --- S2 -------------------------------------------------------------------------------------
def test_cross_level_hand_made_pair():
    a, bb = t(1, -2, 3, -4, 5), t(2, 2, -3, -1, 0)
    out = cross_level(a, bb, b(T, T, T, T, F))  # compares (1, -2, 3, -4) with (2, 2, -3, -1)
    assert out["n"] == 4
    assert out["sign_agreement"] == 0.5  # positions 0 and 3 agree
    assert out["l2"] == pytest.approx(math.sqrt(1 + 16 + 36 + 9) / math.sqrt(30))
    assert out["cosine"] == pytest.approx(-7 / math.sqrt(30 * 18))
    assert cross_level(a, t(1, 0, 3, 4, 9), b(T, T, T, T, F))["sign_agreement"] == 0.5
    identical = cross_level(a, a, b(T, T, T, T, T))
    assert identical["pearson"] == pytest.approx(1)
    assert identical["l2"] == 0 and identical["cosine"] == pytest.approx(1)


def test_cross_level_correlations_match_numpy_and_scipy_on_masked_entries():
    gen = torch.Generator().manual_seed(1)
    shapes = {"fc1.weight": (30, 20), "fc2.weight": (10, 30)}
    a = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    later = {k: 0.7 * a[k] + 0.5 * torch.randn(s, generator=gen) for k, s in shapes.items()}
    mask = {k: torch.rand(s, generator=gen) < 0.4 for k, s in shapes.items()}
    x = torch.cat([a[k][mask[k]] for k in shapes]).double().numpy()
    y = torch.cat([later[k][mask[k]] for k in shapes]).double().numpy()
    out = cross_level(a, later, mask)
    assert out["n"] == len(x) == sum(int(m.sum()) for m in mask.values())
    assert out["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert out["spearman"] == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    ranks = np.corrcoef(scipy.stats.rankdata(x), scipy.stats.rankdata(y))[0, 1]
    assert out["spearman"] == pytest.approx(ranks, abs=1e-12)
    assert out["sign_agreement"] == pytest.approx(np.mean((x > 0) == (y > 0)))
    # pruned entries do not count
    noisy = {k: torch.where(mask[k], v, torch.full_like(v, 1e3)) for k, v in later.items()}
    assert cross_level(a, noisy, mask) == out


def test_cross_level_spearman_sees_monotone_maps_and_nan_when_undefined():
    a = t(-2, -1, 0.5, 1, 3)
    out = cross_level(a, a**3, torch.ones(5, dtype=torch.bool))
    assert out["spearman"] == pytest.approx(1.0) and out["pearson"] < 0.99
    flat = cross_level(a, t(2, 2, 2, 2, 2), torch.ones(5, dtype=torch.bool))
    assert math.isnan(flat["pearson"]) and math.isnan(flat["spearman"])
    empty = cross_level(a, a, torch.zeros(5, dtype=torch.bool))
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("pearson", "l2", "cosine"))


# --- S3 and persistence ---------------------------------------------------------------------
def test_movement_split_by_hand():
    init, final = t(1, -1, 2, 0.5), t(2, -0.5, 0, 1.5)
    mask = b(T, T, F, F)
    out = movement(final, init, mask, alive=b(T, T, T, F))  # position 3 never trained
    assert out["kept"] == 2 and out["pruned"] == 1
    assert out["kept_l2"] == pytest.approx(math.sqrt(1 + 0.25))
    assert out["kept_mean"] == pytest.approx(0.75)
    assert out["kept_grew"] == 0.5  # |2| > |1| but |-0.5| < |-1|
    assert out["pruned_l2"] == pytest.approx(2) and out["pruned_mean"] == pytest.approx(2)
    everyone = movement(final.numpy(), init.numpy(), mask.numpy())  # alive = all
    assert everyone["pruned"] == 2
    assert everyone["pruned_l2"] == pytest.approx(math.sqrt(4 + 1))
    assert everyone["pruned_mean"] == pytest.approx(1.5)
    layers = movement(
        {"a": final, "b": t(3, 2)}, {"a": init, "b": t(1, -2)}, {"a": mask, "b": b(T, T)}
    )
    assert layers["kept_l2"] == pytest.approx(math.sqrt(1 + 0.25 + 4 + 16))
    assert layers["kept_grew"] == 0.5  # a sign flip at equal magnitude did not grow
    assert math.isnan(movement(final, init, b(F, F, F, F))["kept_mean"])


def test_mask_persistence():
    assert mask_persistence(b(T, T, F, F), b(T, F, T, F)) == 0.5
    assert mask_persistence(b(T, T, T, F), b(T, F, T, F)) == 1.0  # nested
    both = mask_persistence({"a": b(T, F), "b": b(T, T)}, {"a": b(F, T), "b": b(T, F)})
    assert both == 0.5
    assert math.isnan(mask_persistence(b(T, F), b(F, F)))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: stability_to_pruning(t(1, 2), t(1, 2), t(0, 0), t(1, 0)), "must be boolean"),
        (lambda: stability_to_pruning(t(1, 2, 3), t(1, 2), t(0, 0), b(T, F)), r"shape \(3,\)"),
        (lambda: cross_level({"a": t(1)}, {"a": t(1)}, {"b": b(T)}), r"entries \['b'\]"),
        (lambda: cross_level(t(1), {"a": t(1)}, {"a": b(T)}), "single tensor but the mask"),
        (lambda: cross_level({"a": t(1)}, {"a": t(1)}, b(T)), "dict but the mask"),
        (lambda: movement(t(1), t(1), b(T), alive={"a": b(T)}), "same tensors"),
        (lambda: mask_persistence(b(T, F), b(T)), "same tensors"),
    ],
)
def test_bad_inputs_raise(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


# --- the table on real runs -----------------------------------------------------------------
def tiny(regime: str) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.2),
        train=TrainConfig(
            optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, duration="16it", eval_every="8it"
        ),
        prune=PruneConfig(amount=0.2, layer_amounts={"output": 0.1}),
        regime=regime,
        levels=3,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    runs = {r: run(tiny(r), out, progress=False) for r in ("rewind", "reinit_prune")}
    runs["random_mask"] = branch(runs["rewind"], "random_mask", progress=False)
    return runs


def masked(weights: dict, mask: dict) -> torch.Tensor:
    return torch.cat([weights[k][mask[k]] for k in mask]).double()


def test_table_rows_nans_and_nested_persistence(runs):
    r = runs["rewind"]
    table = stability_table([r])
    layers = ["fc1.weight", "fc2.weight", "fc3.weight", "all"]
    assert len(table) == 4 * 4
    assert list(table.columns[:3]) == ["run_id", "level", "layer"]
    assert table.groupby("level").layer.apply(list).tolist() == [layers] * 4
    first = table[table.level == 0]
    s2 = ["s1", "pearson", "spearman", "sign_agreement", "l2", "cosine", "persistence"]
    assert first[s2].isna().all().all()
    later = table[table.level > 0]
    assert (later.persistence == 1.0).all()  # IMP masks are nested
    assert np.isfinite(later[s2].to_numpy()).all()
    moves = ["move_kept", "move_pruned", "move_kept_mean", "move_pruned_mean", "kept_grew"]
    assert np.isfinite(table[table.level < 3][moves].to_numpy()).all()
    assert table[table.level == 3][moves].isna().all().all()  # no mask after the last level
    assert (table.run_id == r.run_id).all()
    assert set(table.criterion) == {"magnitude"} and set(table.regime) == {"rewind"}
    assert set(table.seed) == {0} and set(table["train.lr"]) == {0.05}


def test_table_values_match_direct_computation(runs):
    r = runs["rewind"]
    table = stability_table([r], levels=[1, 2]).set_index(["level", "layer"])
    assert sorted(set(table.index.get_level_values(0))) == [1, 2]
    dense, theta0 = r.weights(0), r.weights(which="init")
    m1, m2 = r.mask(1), r.mask(2)
    f1, f2 = r.weights(1), r.weights(2)
    s1 = (masked(f2, m2) - masked(dense, m2)).norm() / (
        masked(dense, m2) - masked(theta0, m2)
    ).norm()
    assert table.loc[(2, "all"), "s1"] == pytest.approx(float(s1), rel=1e-12)
    x, y = f1["fc2.weight"][m2["fc2.weight"]], f2["fc2.weight"][m2["fc2.weight"]]
    assert table.loc[(2, "fc2.weight"), "pearson"] == pytest.approx(
        np.corrcoef(x.double().numpy(), y.double().numpy())[0, 1], abs=1e-12
    )
    # level 1 trained from θ0 on M1; M2 ⊂ M1 splits its weights into kept and pruned
    kept, gone = m2["fc1.weight"], m1["fc1.weight"] & ~m2["fc1.weight"]
    moved = (f1["fc1.weight"] - theta0["fc1.weight"]).double()
    assert table.loc[(1, "fc1.weight"), "move_kept"] == pytest.approx(float(moved[kept].norm()))
    assert table.loc[(1, "fc1.weight"), "move_pruned_mean"] == pytest.approx(
        float(moved[gone].abs().mean())
    )


def test_table_reinit_prune_uses_each_levels_start_and_random_masks_persist_less(runs):
    r = runs["reinit_prune"]
    start, init = r.weights(1, which="start"), r.weights(which="init")
    assert not torch.equal(start["fc1.weight"], init["fc1.weight"])
    row = stability_table([r], levels=[1]).set_index("layer").loc["fc1.weight"]
    kept = r.mask(2)["fc1.weight"]
    expected = (r.weights(1)["fc1.weight"] - start["fc1.weight"]).double()[kept].norm()
    assert row.move_kept == pytest.approx(float(expected))
    assert np.isfinite(row.s1) and np.isfinite(row.pearson)

    shuffled = runs["random_mask"]
    table = stability_table([shuffled, r], levels=[2]).set_index(["run_id", "layer"])
    assert len(table) == 2 * 4
    before, after = shuffled.mask(1), shuffled.mask(2)
    share = sum(int((before[k] & after[k]).sum()) for k in after) / sum(
        int(m.sum()) for m in after.values()
    )
    assert table.loc[(shuffled.run_id, "all"), "persistence"] == pytest.approx(share)
    assert share < 0.95  # random masks are not nested
    assert set(table.regime) == {"random_mask", "reinit_prune"}


def test_s1_of_a_late_rewound_run_is_normalised_by_the_travel_from_theta_k(tmp_path):
    r = run(tiny("rewind").replace({"rewind_to": "4it", "levels": 1}), tmp_path, progress=False)
    theta_k, theta0 = r.weights(which="rewind"), r.weights(which="init")
    start = r.weights(1, which="start")
    assert all(torch.equal(start[k], theta_k[k]) for k in theta_k)  # level 1 starts at θk
    assert not torch.equal(theta_k["fc1.weight"], theta0["fc1.weight"])
    dense, sub, m = r.weights(0), r.weights(1), r.mask(1)
    gap = (masked(sub, m) - masked(dense, m)).norm()
    table = stability_table([r], levels=[1]).set_index("layer")
    expected = gap / (masked(dense, m) - masked(theta_k, m)).norm()
    assert table.loc["all", "s1"] == pytest.approx(float(expected), rel=1e-12)
    from_theta0 = gap / (masked(dense, m) - masked(theta0, m)).norm()
    assert float(expected) != pytest.approx(float(from_theta0), rel=1e-3)
    one = {"fc2.weight": m["fc2.weight"]}
    layer = (masked(sub, one) - masked(dense, one)).norm() / (
        masked(dense, one) - masked(theta_k, one)
    ).norm()
    assert table.loc["fc2.weight", "s1"] == pytest.approx(float(layer), rel=1e-12)


def test_branches_compare_with_their_parents_dense_level_or_have_no_s1(runs, tmp_path):
    parent, shuffled = runs["rewind"], runs["random_mask"]
    row = stability_table([shuffled], levels=[2]).set_index("layer").loc["all"]
    dense, theta0, mask = parent.weights(0), parent.weights(which="init"), shuffled.mask(2)
    expected = (masked(shuffled.weights(2), mask) - masked(dense, mask)).norm() / (
        masked(dense, mask) - masked(theta0, mask)
    ).norm()
    assert row.s1 == pytest.approx(float(expected), rel=1e-12)  # the parent's θ0 and dense level
    fresh = branch(parent, "reinit", level=1, out=tmp_path, progress=False)
    table = stability_table([fresh])
    assert table["s1"].isna().all()  # θ0' has no dense solution to compare with
