"""Rethinking (Liu et al. 2019): FLOPs of masked models by hand, Scratch-E / Scratch-B budgets,
fresh scratch starting weights, replica groups with unequal budgets, verify on scratch runs."""

from fractions import Fraction

import pytest
import torch
from torch import nn

from maskstudy.errors import ConfigError
from maskstudy.masks import full_mask, kept_total
from maskstudy.models import build, count_flops, flops_table, layer_flops
from maskstudy.runs.branch import branch_config
from maskstudy.runs.config import DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig
from maskstudy.runs.run import branch, run, run_group
from maskstudy.runs.scratch import budget_ratio
from maskstudy.runs.sweep import read_sweep
from maskstudy.runs.verify import is_damaged, summary, verify
from maskstudy.seeds import derive_seed
from maskstudy.train import TrainPlan

LENET_MACS = 784 * 300 + 300 * 100 + 100 * 10  # 266,200
BASE = 16  # iterations per level


def small(**changes) -> RunConfig:
    """LeNet-300-100 at width 0.2 (64-60-20-10: 5,240 weights) on 8×8 synthetic data, 16 it."""
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.2),
        train=TrainConfig(
            lr=0.05,
            momentum=0.9,
            batch_size=32,
            duration=f"{BASE}it",
            schedule="step",
            milestones=("8it", "12it"),
            eval_every="5it",
        ),
        prune=PruneConfig(amount=0.3),
        regime="finetune",
        levels=2,
    )
    return cfg.replace(changes) if changes else cfg


def half_mask(model: nn.Module) -> dict[str, torch.Tensor]:
    """Keep exactly the first half of every prunable tensor."""
    out = {}
    for name, m in full_mask(model).items():
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[: m.numel() // 2] = True
        out[name] = flat.view(m.shape)
    return out


# --- FLOPs --------------------------------------------------------------------------------------
def test_lenet300_flops_by_hand_and_halved_by_half_masks():
    model = build("lenet300_100", (1, 28, 28), 10)
    assert count_flops(model, (1, 28, 28)) == LENET_MACS == 266_200
    assert count_flops(model, (1, 28, 28), bias=True) == LENET_MACS + 300 + 100 + 10
    assert count_flops(model, (1, 28, 28), half_mask(model)) == LENET_MACS // 2


def test_conv_flops_are_kept_weights_times_output_positions():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(48, 5)
    )
    # conv: 9×9 → (9 − 3) // 2 + 1 = 4, so 16 positions; 3·2·3·3 = 54 weights; linear 48·5
    assert count_flops(model, (2, 9, 9)) == 54 * 16 + 240
    mask = {"0.weight": torch.zeros(3, 2, 3, 3, dtype=torch.bool)}
    mask["0.weight"].view(-1)[:20] = True
    assert count_flops(model, (2, 9, 9), mask) == 20 * 16 + 240
    extras = count_flops(model, (2, 9, 9), mask, bias=True, norm=True)
    assert extras == 20 * 16 + 240 + 3 * 16 + 5 + 2 * 48  # conv bias, linear bias, BN scale+shift
    assert model.training and int(model[1].num_batches_tracked) == 0  # model left as it was


def test_lenet5_flops_and_table():
    model = build("lenet5", (1, 28, 28), 10)
    # conv1 6·25 weights at 28×28 (padding 2); conv2 16·6·25 at 10×10; then 400-120-84-10
    by_hand = [150 * 784, 2400 * 100, 400 * 120, 120 * 84, 84 * 10]
    rows = layer_flops(model, (1, 28, 28), half_mask(model))
    assert [r.dense for r in rows] == by_hand
    assert [r.macs for r in rows] == [m // 2 for m in by_hand]
    table = flops_table(model, (1, 28, 28), half_mask(model))
    total = table.set_index("layer").loc["total"]
    assert total["dense"] == sum(by_hand) == 416_520 and total["macs"] == sum(by_hand) // 2
    assert table["ratio"].iloc[:-1].tolist() == [2.0] * 5
    assert table["share"].iloc[:-1].sum() == pytest.approx(1.0)


def test_a_mask_of_another_model_is_refused():
    model = build("lenet300_100", (1, 8, 8), 10, width=0.2)
    with pytest.raises(ConfigError, match="no Linear/Conv layer"):
        count_flops(model, (1, 8, 8), {"fc1.bias": torch.ones(60, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="another model"):
        count_flops(model, (1, 8, 8), {"fc1.weight": torch.ones(3, 3, dtype=torch.bool)})


# --- budgets ------------------------------------------------------------------------------------
def test_scaled_schedule_and_ratio_cap():
    train = TrainConfig(duration="2ep", schedule="step", milestones=("1ep", "1.5ep"))
    plan = TrainPlan.of(train, 10)
    assert (plan.total, plan.milestones) == (20, (10, 15))
    scaled = plan.stretched(Fraction(5, 2))  # 20 it × 2.5; milestones at 50 % / 75 %
    assert (scaled.total, scaled.milestones) == (50, (25, 37))
    assert budget_ratio(100, 10, 0.0, 1) == 10 and budget_ratio(100, 10, 2.0, 1) == 2
    assert budget_ratio(100, 0, 2.0, 1) == 2
    with pytest.raises(ConfigError, match="scratch_cap"):
        budget_ratio(100, 0, 0.0, 3)
    with pytest.raises(ConfigError, match="scratch_cap"):
        small(scratch_cap=0.5)
    assert small().run_id() == small(scratch_cap=0.0).run_id()  # the default stays out of the id


@pytest.fixture(scope="module")
def scratch_runs(tmp_path_factory):
    """Rethinking's pipeline (prune, fine-tune at the final LR) and its controls on its masks."""
    root = tmp_path_factory.mktemp("scratch")
    pipeline = run(small(), root, progress=False)
    runs = {k: branch(pipeline, k, progress=False) for k in ("scratch_b", "scratch_e", "reinit")}
    return {"finetune": pipeline, **runs}


def test_scratch_branches_train_the_pipelines_masks_bit_for_bit(scratch_runs):
    pipeline = scratch_runs["finetune"]
    for kind in ("scratch_b", "scratch_e"):
        b = scratch_runs[kind]
        assert b.levels == [1, 2] and b.parent.run_id == pipeline.run_id
        for level in b.levels:
            theirs = pipeline.mask(level)
            assert all(torch.equal(m, theirs[k]) for k, m in b.mask(level).items())


def test_scratch_b_trains_for_the_flops_ratio_with_scaled_milestones(scratch_runs):
    b = scratch_runs["scratch_b"]
    history = b.history()
    dense = 64 * 60 + 60 * 20 + 20 * 10
    budgets = []
    for level in b.levels:
        m = b.level_metrics(level)
        kept = kept_total(b.mask(level))[0]  # an MLP's MACs are its kept weights
        total = BASE * dense // kept  # floor(16 · FLOPs_dense / FLOPs)
        budgets.append(total)
        assert (m["flops"], m["flops_dense"]) == (kept, dense)
        assert m["flops_ratio"] == pytest.approx(dense / kept)
        assert m["train_iterations"] == m["iterations"] == total
        rows = history[history["level"] == level]
        assert rows["step"].tolist() == [*range(5, total, 5), total]  # eval every 5 it + the end
        lr_at = dict(zip(rows["step"], rows["lr"], strict=True))
        first, second = 8 * total // BASE, 12 * total // BASE  # milestones moved alike
        for step, lr in lr_at.items():  # the lr of update step-1
            assert lr == pytest.approx(0.05 * 0.1 ** ((step - 1 >= first) + (step - 1 >= second)))
    assert budgets == [22, 32]  # 30 % of the weights go per level: ratios 1.43 and 2.04


def test_scratch_e_keeps_the_dense_duration_and_equals_reinit(scratch_runs):
    e, reinit = scratch_runs["scratch_e"], scratch_runs["reinit"]
    for level in e.levels:
        m = e.level_metrics(level)
        assert m["train_iterations"] == m["iterations"] == BASE
        assert m["flops"] == kept_total(e.mask(level))[0] and m["flops_dense"] == 5240
        a, b = e.weights(level), reinit.weights(level)  # one procedure under two papers' names
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert e.history().groupby("level").size().tolist() == [4, 4]  # steps 5, 10, 15, 16


@pytest.mark.parametrize("kind", ["scratch_b", "scratch_e"])
def test_scratch_starts_from_a_fresh_init_with_the_derived_seed(scratch_runs, kind):
    r, pipeline = scratch_runs[kind], scratch_runs["finetune"]
    fresh = build("lenet300_100", (1, 8, 8), 10, width=0.2, seed=derive_seed(0, "fresh"))
    init = r.weights(which="init")
    assert all(torch.equal(init[k], v) for k, v in fresh.state_dict().items())
    for level in (1, 2):
        start = r.weights(level, which="start")
        assert all(torch.equal(start[k], v) for k, v in init.items())
        for other in (pipeline.weights(which="init"), pipeline.weights(level - 1)):
            assert not torch.equal(start["fc1.weight"], other["fc1.weight"])


def test_the_pipeline_fine_tunes_at_the_final_learning_rate(scratch_runs):
    history = scratch_runs["finetune"].history()
    pruned = history[history["level"] >= 1]
    assert (pruned["lr"] == 0.05 * 0.1 * 0.1).all()  # the step schedule's last value, held
    dense = history[history["level"] == 0].set_index("step")["lr"]
    assert dense[5] == 0.05 and dense[16] == pytest.approx(0.0005)


def test_every_run_records_its_flops_and_verifies_intact(scratch_runs):
    for kind, r in scratch_runs.items():
        frame = verify(r.path)
        assert not is_damaged(frame), summary(frame)
        assert frame[frame["file"].str.endswith("start.safetensors")].empty  # θ0' is init
        table = r.metrics()
        assert (table["flops"] == [kept_total(r.mask(lv))[0] for lv in r.levels]).all()
        if kind != "scratch_b":
            assert table["train_iterations"].tolist() == [BASE] * len(r.levels)


def test_tampered_scratch_init_is_caught(scratch_runs):
    init = scratch_runs["scratch_e"].path / "init.safetensors"
    data = init.read_bytes()
    init.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    try:
        assert is_damaged(verify(scratch_runs["scratch_e"].path))
    finally:
        init.write_bytes(data)


def conv_cfg(seed: int) -> RunConfig:
    """conv2 under one global threshold: seeds prune convs and fc differently, so FLOPs differ."""
    return small(
        seed=seed,
        **{
            "model.name": "conv2",
            "model.width": 0.25,
            "prune.amount": 0.5,
            "prune.scope": "global",
        },
    )


def test_scratch_b_replicas_with_unequal_budgets_equal_their_runs_alone(tmp_path):
    parents = [run(conv_cfg(s), tmp_path / "group", progress=False) for s in (0, 1, 2)]
    cfgs = [branch_config(p.config, "scratch_b") for p in parents]
    grouped = run_group(cfgs, tmp_path / "group", progress=False)
    iterations = {g.level_metrics(1)["train_iterations"] for g in grouped}
    assert len(iterations) > 1  # the group really had to split
    for cfg, g, parent in zip(cfgs, grouped, parents, strict=True):
        alone = run_group([cfg], tmp_path / "alone", progress=False, parents=[parent])[0]
        for level in alone.levels:
            assert (
                g.level_metrics(level)["train_iterations"]
                == alone.level_metrics(level)["train_iterations"]
            )
            assert all(torch.equal(v, alone.mask(level)[k]) for k, v in g.mask(level).items())
            a, b = alone.weights(level), g.weights(level)
            assert all(torch.equal(a[k], b[k]) for k in a)  # side by side or apart: same bytes
        assert g.history()["step"].tolist() == alone.history()["step"].tolist()


def test_rethinking_sweep_and_presets_parse():
    spec = read_sweep("analysis/rethinking/lenet300_scratch.toml")
    assert len(spec.configs) == 5 * 3
    pipeline = [c for c in spec.configs if not c.is_branch]
    assert {c.regime for c in pipeline} == {"finetune"} and len(pipeline) == 5
    kinds = sorted(c.branch.kind for c in spec.configs if c.is_branch)
    assert kinds == ["scratch_b"] * 5 + ["scratch_e"] * 5
    parents = {c.run_id() for c in pipeline}
    assert {c.branch.parent for c in spec.configs if c.is_branch} == parents
    assert {c.prune.criterion for c in spec.configs} == {"magnitude"}
