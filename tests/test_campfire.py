"""Campfire: the AGP density ramp, kernel/window granularities, and gradual pruning in one run."""

import math

import pytest
import torch

from maskstudy.errors import ConfigError
from maskstudy.models import build
from maskstudy.plots.figures import FIGURES, Tables
from maskstudy.pruning import kernel_select, prune, window_select
from maskstudy.pruning.gradual import GradualPruner, gradual_mask
from maskstudy.pruning.schedules import GradualSchedule, geometric_density, ramp_density
from maskstudy.runs.config import (
    AttackConfig,
    DataConfig,
    GradualConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    TrainConfig,
)
from maskstudy.runs.run import run, run_group
from maskstudy.runs.verify import verify
from maskstudy.train.loop import _MaskKeeper
from maskstudy.train.replicas import Replicas


def kernel_counts(mask: torch.Tensor) -> torch.Tensor:
    """Alive weights per (out, in) kernel."""
    return mask.reshape(mask.shape[0] * mask.shape[1], -1).sum(1)


# --- schedules ------------------------------------------------------------------------------
def test_agp_cubic_density_at_every_update_step_by_hand():
    s = GradualSchedule(start=10, end=40, every=10, target=0.3)
    assert s.update_steps() == [20, 30, 40]
    # d_t = d_f + (d_i − d_f)(1 − (t − t0)/(nΔt))³ with d_i = 1, d_f = 0.3, nΔt = 30
    expected = [0.3 + 0.7 * (2 / 3) ** 3, 0.3 + 0.7 * (1 / 3) ** 3, 0.3]
    assert [s.density_at_update(t) for t in s.update_steps()] == pytest.approx(expected)
    assert expected[0] == pytest.approx(0.50740740740)  # 0.3 + 0.7·8/27
    # the same point as Zhu & Gupta's sparsity form s_t = s_f + (s_i − s_f)(1 − ·)³, s_i = 0
    assert 1 - (0.7 + (0.0 - 0.7) * (2 / 3) ** 3) == pytest.approx(expected[0])
    assert s.density(19) == 1.0 and s.density(25) == pytest.approx(expected[0])
    assert s.density(10_000) == 0.3
    linear = GradualSchedule(start=10, end=40, every=10, target=0.3, shape="linear")
    assert linear.density_at_update(20) == pytest.approx(0.3 + 0.7 / 3 * 2)
    assert GradualSchedule(start=0, end=10, every=4, target=0.5).update_steps() == [4, 8, 10]
    assert ramp_density(0.5, 0.2) == pytest.approx(0.2 + 0.8 / 8)
    assert geometric_density(0.2, 3) == pytest.approx(0.512)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"start": 5, "end": 5, "every": 1, "target": 0.3}, "after start"),
        ({"start": 0, "end": 5, "every": 0, "target": 0.3}, "every = 0"),
        ({"start": 0, "end": 5, "every": 1, "target": 0.0}, "target density"),
        ({"start": 0, "end": 5, "every": 1, "target": 0.3, "shape": "quartic"}, "cubic, linear"),
    ],
)
def test_bad_schedules_are_refused(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        GradualSchedule(**kwargs)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"prune.schedule": "agp"}, "iterative, gradual"),
        ({"prune.gradual.target": 0.5}, "only used with prune.schedule = 'gradual'"),
        ({"prune.schedule": "gradual"}, "set levels = 0"),
        ({"prune.schedule": "gradual", "levels": 0, "prune.gradual.target": 1.0}, "gradual.target"),
        (
            {"prune.schedule": "gradual", "levels": 0, "prune.criterion": "drop"},
            "cannot run with prune.schedule",
        ),
        (
            {"prune.schedule": "gradual", "levels": 0, "prune.criterion": "kernel",
             "prune.scope": "global"},
            "prune.scope = 'layer'",
        ),
        (
            {"prune.schedule": "gradual", "levels": 0, "prune.layer_amounts": {"output": 0.1}},
            "prune.exclude",
        ),
        ({"prune.schedule": "gradual", "levels": 0, "prune.gradual.every": "often"}, "every"),
    ],
)  # fmt: skip
def test_gradual_config_errors_name_the_field(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        RunConfig().replace(overrides)


def test_gradual_options_moved_into_their_section_keep_their_run_id():
    """prune.gradual_* became prune.gradual.*; ids stay those hashed under the old names."""
    gradual = {"prune.schedule": "gradual", "levels": 0}
    old = RunConfig().replace(
        {**gradual, "prune.gradual_end": "2ep", "prune.gradual_shape": "linear"}
    )
    new = RunConfig().replace(
        {**gradual, "prune.gradual.end": "2ep", "prune.gradual.shape": "linear"}
    )
    assert old == new and new.prune.gradual == GradualConfig(end="2ep", shape="linear")
    assert new.run_id() == "lenet300_100-mnist-magnitude-rewind-s0-0a28ab22a9"  # before sections


def test_new_fields_keep_every_run_id():
    assert RunConfig().run_id() == "lenet300_100-mnist-magnitude-rewind-s0-44136fa355"
    gradual = RunConfig(prune=PruneConfig(schedule="gradual"), levels=0)
    assert gradual.run_id() != RunConfig().run_id()
    assert RunConfig.from_dict(gradual.to_dict()) == gradual


# --- granularities --------------------------------------------------------------------------
def test_kernel_criterion_removes_whole_lowest_l1_kernels_only():
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    mask = prune({"w": w}, None, "kernel", 0.5)["w"]
    counts = kernel_counts(mask)
    assert set(counts.tolist()) == {0, 9}  # whole kernels only
    assert int((counts == 0).sum()) == round(0.5 * 24)
    l1 = w.abs().sum((2, 3)).reshape(-1)
    assert l1[counts == 9].min() > l1[counts == 0].max()
    again = prune({"w": w}, {"w": mask}, "kernel", 0.5)["w"]
    assert int((kernel_counts(again) == 9).sum()) == 12 - 6 and not (again & ~mask).any()


def test_kernel_and_window_on_linear_weights_are_layerwise_magnitude():
    w = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    magnitude = prune({"w": w}, None, "magnitude", 0.4)["w"]
    assert torch.equal(prune({"w": w}, None, "kernel", 0.4)["w"], magnitude)
    assert torch.equal(prune({"w": w}, None, "window", 0.4)["w"], magnitude)


def test_window_keeps_the_top_q_weights_of_every_kernel():
    w = torch.randn(5, 3, 3, 3, generator=torch.Generator().manual_seed(2))
    mask = prune({"w": w}, None, "window", 0.2)["w"]  # amount semantics: 9 − round(1.8) = 7
    assert kernel_counts(mask).tolist() == [7] * 15
    current = {"w": torch.ones_like(w, dtype=torch.bool)}
    for d in (0.6, 0.35, 0.1):  # gradual: q = ⌈d·9⌉ = 6, 4, 1
        new = gradual_mask({"w": w}, current, d, "window")
        q = math.ceil(d * 9)
        assert kernel_counts(new["w"]).tolist() == [q] * 15
        assert not (new["w"] & ~current["w"]).any()  # nested
        current = new
    rows, kept = w.abs().reshape(15, 9), current["w"].reshape(15, 9)
    assert torch.equal(kept, rows == rows.max(1, keepdim=True).values)  # q = 1: the largest


def test_combined_is_kernel_then_window_at_the_square_root_rate():
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(3))
    mask = prune({"w": w}, None, "combined", 0.75)["w"]  # each stage keeps √0.25 = 1/2
    counts = kernel_counts(mask)
    assert int((counts > 0).sum()) == 12  # 24 − round(12.0)
    assert set(counts[counts > 0].tolist()) == {5}  # 9 − round(4.5) = 9 − 4 (half to even)
    full = torch.ones_like(w, dtype=torch.bool)
    both = window_select(w, kernel_select(w, full, 0.5, "round"), 0.5, "round")
    assert torch.equal(mask, both)


@pytest.mark.parametrize("criterion", ["magnitude", "random", "kernel", "window", "combined"])
def test_realized_density_at_each_update_follows_the_schedule(criterion):
    gen = torch.Generator().manual_seed(4)
    weights = {
        "conv": torch.randn(8, 4, 3, 3, generator=gen),
        "fc": torch.randn(10, 30, generator=gen),
    }
    masks = [{n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}]
    schedule = GradualSchedule(start=0, end=50, every=10, target=0.2)
    pruner = GradualPruner(schedule, masks, [0], criterion)
    assert pruner(5, [weights]) is None
    previous = masks[0]
    for step in schedule.update_steps():
        (new,) = pruner(step, [weights])
        d = schedule.density_at_update(step)
        for name, m in new.items():
            realized = float(m.float().mean())
            if criterion == "combined":  # two rounded stages: within one kernel and one window
                assert abs(realized - d) <= 1 / 32 + 1 / 9
            elif criterion == "window" and name == "conv":  # q = ⌈d·9⌉ in each of 32 kernels
                assert int(m.sum()) == math.ceil(d * 9) * 32
            elif criterion == "kernel" and name == "conv":  # ⌈d·32⌉ whole kernels
                assert int(m.sum()) == math.ceil(d * 32) * 9
            else:
                assert int(m.sum()) == math.ceil(d * m.numel())  # never fewer than the ramp
            assert not (m & ~previous[name]).any()
        previous = new
    assert [s for s, _ in pruner.updates[0]] == [10, 20, 30, 40, 50]


def test_global_gradual_mask_pools_the_tensors():
    gen = torch.Generator().manual_seed(5)
    weights = {"a": torch.randn(40, generator=gen) * 3, "b": torch.randn(60, generator=gen)}
    mask = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    new = gradual_mask(weights, mask, 0.37, "magnitude", "global")
    assert sum(int(m.sum()) for m in new.values()) == 37
    kept = torch.cat([weights[n][new[n]] for n in weights]).abs()
    cut = torch.cat([weights[n][~new[n]] for n in weights]).abs()
    assert kept.min() > cut.max()


def test_new_masks_zero_the_weights_and_momentum_they_prune():
    model = torch.nn.Linear(4, 3)
    net = Replicas([model])
    keeper = _MaskKeeper(net, [{"weight": torch.ones(3, 4, dtype=torch.bool)}])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).square().sum().backward()
    opt.step()
    new = torch.rand(3, 4, generator=torch.Generator().manual_seed(0)) > 0.5
    keeper.replace_([{"weight": new}], opt)
    momentum = opt.state[model.weight]["momentum_buffer"]
    assert (model.weight[~new] == 0).all() and (momentum[~new] == 0).all()
    assert (momentum[new] != 0).all()
    assert [w.data_ptr() for w in keeper.weights()[0].values()] == [model.weight.data_ptr()]


# --- a gradual run end to end ---------------------------------------------------------------
def gradual_cfg(**changes) -> RunConfig:
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="conv2", width=0.25),
        train=TrainConfig(lr=0.05, momentum=0.9, batch_size=32, duration="20it", eval_every="4it"),
        prune=PruneConfig(
            criterion="kernel",
            schedule="gradual",
            gradual=GradualConfig(start="2it", end="14it", every="4it", target=0.3),
        ),
        attack=AttackConfig(eps=(0.02, 0.05), subset=48, pgd_steps=3),
        levels=0,
    )
    return cfg.replace(changes) if changes else cfg


@pytest.fixture(scope="module")
def gradual_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("campfire")
    return run_group([gradual_cfg(), gradual_cfg(seed=1)], out, progress=False)


def test_gradual_run_stores_every_update_and_the_frozen_mask(gradual_runs):
    schedule = GradualSchedule(start=2, end=14, every=4, target=0.3)
    for r in gradual_runs:
        assert r.levels == [0]
        updates = r.mask_updates(0)
        assert [s for s, _ in updates] == [6, 10, 14]
        previous = None
        for step, mask in updates:
            d = schedule.density_at_update(step)
            for name, m in mask.items():
                if m.dim() == 4:  # conv: whole kernels, ⌈d·kernels⌉ of them
                    counts = kernel_counts(m)
                    assert set(counts.tolist()) <= {0, m.shape[2] * m.shape[3]}
                    assert int((counts > 0).sum()) == math.ceil(d * counts.numel())
                else:
                    assert int(m.sum()) == math.ceil(d * m.numel())
                if previous is not None:
                    assert not (m & ~previous[name]).any()
            previous = mask
        stored, final = r.mask(0), r.weights(0)
        assert all(torch.equal(stored[n], updates[-1][1][n]) for n in stored)
        assert all((final[n][~stored[n]] == 0).all() for n in stored)  # frozen to the end
        metrics = r.metrics().iloc[0]
        assert metrics["freeze_step"] == 14 and metrics["mask_updates"] == 3
        kept = sum(int(m.sum()) for m in stored.values())
        assert metrics["percent_remaining"] == pytest.approx(100 * kept / metrics["total"])
        history = r.history()
        realized = {
            s: sum(int(m.sum()) for m in mk.values()) / metrics["total"] for s, mk in updates
        }
        assert history["density"].tolist() == pytest.approx(
            [1.0, realized[6], realized[10], realized[14], realized[14]]
        )
        assert verify(r.path)["status"].eq("ok").all()
    first, second = (r.mask(0)["conv2.weight"] for r in gradual_runs)
    assert not torch.equal(first, second)  # each replica pruned on its own weights


def test_attack_accuracies_join_the_level_metrics(gradual_runs):
    row = gradual_runs[0].metrics().iloc[0]
    assert row["attack_examples"] == 48
    for kind in ("fgsm", "pgd"):
        accs = [row[f"{kind}_acc_eps{e}"] for e in ("0.02", "0.05")]
        assert all(0 <= a <= row["attack_clean_acc"] for a in accs)


def test_gradual_end_after_training_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="after the end of training"):
        run(gradual_cfg(**{"prune.gradual.end": "30it"}), tmp_path, progress=False)


def test_figures_of_gradual_runs_treat_level_0_as_pruned(gradual_runs, tmp_path):
    from maskstudy.plots import draw_figures

    report = draw_figures(gradual_runs, tmp_path, formats=("png",))
    assert "p6_dead_conv_units" in report.drawn  # level 0 of a gradual run is already pruned
    assert "p1_accuracy" in report.drawn
    assert "p7_stability" in report.skipped  # one level: nothing to compare across levels
    fig = FIGURES["p1_accuracy"](Tables(list(gradual_runs), None))
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "dense" not in labels  # level 0 is not a dense network here


def test_a_gradual_level_records_the_flops_of_its_frozen_mask(gradual_runs):
    from maskstudy.models.flops import layer_flops

    for r in gradual_runs:
        row = r.metrics().iloc[0]
        model = build("conv2", (1, 8, 8), 10, width=0.25)
        macs = sum(x.macs for x in layer_flops(model, (1, 8, 8), r.mask(0)))
        assert row["flops"] == macs < row["flops_dense"]
        assert row["flops_ratio"] == pytest.approx(row["flops_dense"] / macs)
