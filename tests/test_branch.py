"""Branches: ordinary runs that train a parent run's masks level by level (runs/branch.py).

One tiny rewind parent (LeNet-300-100 at width 0.2 on 8×8 synthetic data, 16 it per level, step
schedule 0.05 → ×0.1 at 8 it and 12 it, 3 levels) is trained once per module, with one branch of
every kind beside it; the other tests train only what they need (a few hundred iterations).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from maskstudy import branch, open_run
from maskstudy.cli import main
from maskstudy.errors import ConfigError, StoreError
from maskstudy.masks import kept_total
from maskstudy.models import build
from maskstudy.plots.figures import Tables, _method_pairs
from maskstudy.runs.branch import branch_config, branch_mask
from maskstudy.runs.config import (
    DataConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    TrainConfig,
)
from maskstudy.runs.executors import run_sweep
from maskstudy.runs.lock import RunLock
from maskstudy.runs.regimes import BRANCH_KINDS, MOVED_REGIMES, REGIMES
from maskstudy.runs.run import run
from maskstudy.runs.store import level_dir
from maskstudy.runs.sweep import open_sweep, parse_sweep
from maskstudy.runs.table import with_parent_dense
from maskstudy.seeds import derive_seed

T = 16  # iterations per level
LR, GAMMA = 0.05, 0.1
DENSE = 64 * 60 + 60 * 20 + 20 * 10  # 5,240 weights = MACs of one input (an MLP)
LEVELS = 3


def small(**changes) -> RunConfig:
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.2),
        train=TrainConfig(
            lr=LR,
            momentum=0.9,
            batch_size=32,
            duration=f"{T}it",
            schedule="step",
            milestones=("8it", "12it"),
            gamma=GAMMA,
            eval_every="4it",
        ),
        prune=PruneConfig(amount=0.3),
        levels=LEVELS,
    )
    return cfg.replace(changes) if changes else cfg


def step_lr(step: int, total: int = T) -> float:
    """The lr a history row at ``step`` reports (that of update step-1), milestones scaled."""
    first, second = 8 * total // T, 12 * total // T
    return LR * GAMMA ** ((step - 1 >= first) + (step - 1 >= second))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fresh_init(seed: int) -> dict[str, torch.Tensor]:
    """θ0' of a reinit / scratch branch: the model drawn with derive_seed(seed, "fresh")."""
    model = build("lenet300_100", (1, 8, 8), 10, width=0.2, seed=derive_seed(seed, "fresh"))
    return model.state_dict()


def counts(mask: dict[str, torch.Tensor]) -> dict[str, int]:
    return {k: int(m.sum()) for k, m in mask.items()}


def done_files(r) -> dict[str, tuple[int, bytes]]:
    paths = [level_dir(r.path, lv) / "DONE" for lv in r.levels] + [r.path / "config.json"]
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in paths}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("branches")


@pytest.fixture(scope="module")
def parent(root):
    return run(small(), root / "runs", progress=False)


@pytest.fixture(scope="module")
def kids(parent):
    """One branch of every kind, all levels 1..3, beside the parent."""
    return {kind: branch(parent, kind, progress=False) for kind in BRANCH_KINDS}


# --- what a branch is ---------------------------------------------------------------------------
def test_parent_is_an_ordinary_three_level_run(parent):
    assert parent.levels == [0, 1, 2, 3]
    assert parent.parent is None and open_run(parent.path).parent is None
    assert parent.info["schema"] == 2


def test_branch_defaults_to_every_completed_parent_level_beside_the_parent(parent, kids):
    for kind, b in kids.items():
        assert b.path.parent == parent.path.parent, kind
        assert b.levels == [1, 2, 3], kind
        assert b.config.branch.kind == kind and b.config.branch.parent == parent.run_id
        assert b.config.regime == parent.config.regime  # the regime that found the masks
        assert open_run(b.path).parent.run_id == parent.run_id
        assert open_run(b.path).parent.path.resolve() == parent.path.resolve()
    assert len({b.run_id for b in kids.values()}) == len(BRANCH_KINDS)
    for kind, b in kids.items():  # a branch's id is the hash of its config
        assert b.run_id == b.path.name == branch_config(parent.config, kind).run_id()


def test_branch_config_json_has_schema_2_and_parent_mask_sha256_per_level(parent, kids):
    for kind, b in kids.items():
        info = json.loads((b.path / "config.json").read_text())
        assert info["schema"] == 2
        record = info["parent"]
        assert record["run_id"] == parent.run_id
        assert (b.path / record["path"]).resolve() == parent.path.resolve()
        shas = {
            str(lv): json.loads((level_dir(parent.path, lv) / "DONE").read_text())["files"][
                "mask.safetensors"
            ]
            for lv in (1, 2, 3)
        }
        assert record["masks"] == shas, kind


def test_level_option_trains_only_that_parent_level(parent, tmp_path):
    b = branch(parent, "reinit", level=2, out=tmp_path, progress=False)
    assert b.levels == [2]
    assert b.config.level_range() == range(2, 3)
    assert torch.equal(b.mask(2)["fc1.weight"], parent.mask(2)["fc1.weight"]) and same(
        b.mask(2), parent.mask(2)
    )
    assert list(b.info["parent"]["masks"]) == ["2"]
    assert open_run(b.path).parent.run_id == parent.run_id  # relative path across out dirs
    c = branch(parent, "reinit", levels=1, out=tmp_path / "other", progress=False)
    assert c.levels == [1]


def test_level_only_branch_grows_to_all_levels_bit_identically(parent, kids, tmp_path):
    for kind in ("reinit", "random_mask", "shuffle", "finetune"):
        only = branch(parent, kind, level=2, out=tmp_path, progress=False)
        assert only.levels == [2]
        assert same(only.mask(2), kids[kind].mask(2)), kind  # masks fixed by seed and level
        assert same(only.weights(2), kids[kind].weights(2)), kind
        grown = branch(parent, kind, out=tmp_path, progress=False)  # same id: the run grows
        assert grown.path == only.path and grown.levels == [1, 2, 3]
        assert grown.config.branch.first == 1
        for lv in (1, 2, 3):
            assert same(grown.weights(lv), kids[kind].weights(lv)), (kind, lv)


def test_parent_without_a_pruned_level_cannot_be_branched(root):
    dense = run(small(levels=0), root / "dense", progress=False)
    with pytest.raises(StoreError, match="no completed pruned level"):
        branch(dense, "reinit", progress=False)


# --- reinit / scratch_e / scratch_b ----------------------------------------------------------
def test_reinit_trains_parent_masks_from_its_own_fresh_init_stored_as_init(parent, kids):
    b = kids["reinit"]
    theta0 = fresh_init(0)
    assert same(b.weights(which="init"), theta0)
    assert not same(theta0, parent.weights(which="init"))
    assert not (b.path / "rewind.safetensors").exists()
    for lv in b.levels:
        assert same(b.mask(lv), parent.mask(lv))
        assert same(b.weights(lv, which="start"), theta0)
        m = b.level_metrics(lv)
        assert m["start_step"] == 0 and m["iterations"] == m["train_iterations"] == T
        final, mask = b.weights(lv), b.mask(lv)
        assert all((final[k][~mask[k]] == 0).all() for k in mask)
    lr = b.history().query("level >= 1")
    assert [step_lr(s) for s in lr["step"]] == lr["lr"].tolist()  # the full schedule from 0


def test_reinit_with_another_seed_draws_another_fresh_init(parent, tmp_path):
    b = branch(parent, "reinit", level=1, seed=7, out=tmp_path, progress=False)
    assert b.config.seed == 7 and "-s7-" in b.run_id
    assert same(b.weights(which="init"), fresh_init(7))
    assert not same(fresh_init(7), fresh_init(0))
    assert same(b.mask(1), parent.mask(1))


def test_scratch_e_is_bit_identical_to_reinit_with_the_same_seed(kids):
    r, e = kids["reinit"], kids["scratch_e"]
    assert r.run_id != e.run_id
    assert same(r.weights(which="init"), e.weights(which="init"))
    for lv in (1, 2, 3):
        assert same(r.mask(lv), e.mask(lv))
        assert same(r.weights(lv), e.weights(lv))
        mr, me = r.level_metrics(lv), e.level_metrics(lv)
        for key in ("iterations", "train_iterations", "test_acc", "test_loss", "train_loss"):
            assert mr[key] == me[key], key
    cols = ["level", "step", "lr", "train_loss", "test_loss", "test_acc"]
    assert r.history()[cols].equals(e.history()[cols])


def test_scratch_b_trains_floor_T_times_flops_ratio_with_scaled_milestones(parent, kids):
    b = kids["scratch_b"]
    assert same(b.weights(which="init"), fresh_init(0))
    history = b.history()
    totals = []
    for lv in b.levels:
        assert same(b.mask(lv), parent.mask(lv))
        kept = kept_total(b.mask(lv))[0]
        total = T * DENSE // kept  # floor(T · FLOPs_dense / FLOPs_masked)
        totals.append(total)
        m = b.level_metrics(lv)
        assert (m["flops"], m["flops_dense"]) == (kept, DENSE)
        assert m["train_iterations"] == m["iterations"] == total
        rows = history[history["level"] == lv]
        assert rows["step"].tolist() == [*range(4, total, 4), total]
        assert rows["lr"].tolist() == [step_lr(s, total) for s in rows["step"]]
    # 0.7, 0.49, 0.343 of 5,240 kept (per-tensor rounding): 16·5240/3668, /2568, /1798
    assert totals == [22, 32, 46]


def test_scratch_b_ratio_capped_by_scratch_cap_override(parent, tmp_path):
    b = branch(parent, "scratch_b", overrides={"scratch_cap": 2}, out=tmp_path, progress=False)
    # ratios 5240/3668 = 1.43, 5240/2568 = 2.04 → 2, 5240/1798 = 2.91 → 2
    assert [b.level_metrics(lv)["train_iterations"] for lv in b.levels] == [22, 32, 32]
    rows = b.history().query("level == 3")
    assert rows["lr"].tolist() == [step_lr(s, 32) for s in rows["step"]]


# --- random_mask / shuffle --------------------------------------------------------------------
def test_random_mask_keeps_parent_counts_redrawn_per_level_from_parent_theta0(parent, kids):
    b = kids["random_mask"]
    theta0 = parent.weights(which="init")
    assert same(b.weights(which="init"), theta0)
    masks = {lv: b.mask(lv) for lv in b.levels}
    for lv, mask in masks.items():
        assert counts(mask) == counts(parent.mask(lv))
        assert all(not torch.equal(mask[k], parent.mask(lv)[k]) for k in mask)
        assert same(b.weights(lv, which="start"), theta0)
        assert b.level_metrics(lv)["start_step"] == 0
    # drawn anew per level: level 2's random mask is not inside level 1's
    assert any((masks[2][k] & ~masks[1][k]).any() for k in masks[1])
    lr = b.history()
    assert lr["lr"].tolist() == [step_lr(s) for s in lr["step"]]


def test_shuffle_permutes_each_tensor_once_keeping_counts_nesting_and_jaccard(parent, kids):
    b = kids["shuffle"]
    assert same(b.weights(which="init"), parent.weights(which="init"))
    mine = {lv: b.mask(lv) for lv in (1, 2, 3)}
    theirs = {lv: parent.mask(lv) for lv in (1, 2, 3)}
    for lv in (1, 2, 3):
        assert counts(mine[lv]) == counts(theirs[lv])
        assert all(not torch.equal(mine[lv][k], theirs[lv][k]) for k in mine[lv])
    for a, c in [(1, 2), (2, 3), (1, 3)]:
        for k in mine[a]:
            assert not (theirs[c][k] & ~theirs[a][k]).any()  # the parent's are nested
            assert not (mine[c][k] & ~mine[a][k]).any()  # so are the shuffled ones
            inter = int((mine[a][k] & mine[c][k]).sum())
            assert inter == int((theirs[a][k] & theirs[c][k]).sum())


class _StubParent:
    """Hand-made non-nested masks, as a drop-pruning parent would have."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(3)
        self.masks = {
            lv: {
                "fc1.weight": torch.rand(12, 10, generator=gen) < 0.6 - 0.15 * lv,
                "fc2.weight": torch.rand(7, 12, generator=gen) < 0.7 - 0.2 * lv,
            }
            for lv in (1, 2)
        }

    def mask(self, level):
        return self.masks[level]


def test_shuffle_of_non_nested_masks_stays_non_nested_with_the_parents_jaccard():
    cfg = branch_config(small(), "shuffle")
    stub = _StubParent()
    p1, p2 = stub.mask(1), stub.mask(2)
    s1, s2 = branch_mask(cfg, stub, 1), branch_mask(cfg, stub, 2)
    for k in p1:
        assert (p2[k] & ~p1[k]).any() and (s2[k] & ~s1[k]).any()  # neither is nested
        assert int(s1[k].sum()) == int(p1[k].sum()) and int(s2[k].sum()) == int(p2[k].sum())
        assert int((s1[k] & s2[k]).sum()) == int((p1[k] & p2[k]).sum())
        assert int((s1[k] | s2[k]).sum()) == int((p1[k] | p2[k]).sum())  # Jaccard equal
        assert not torch.equal(s1[k], p1[k])
    again = branch_mask(branch_config(small(), "shuffle"), stub, 2)
    assert same(again, s2)  # the permutation is fixed by the seed and tensor name
    other = branch_mask(branch_config(small(), "shuffle", seed=5), stub, 2)
    assert not same(other, s2)


# --- rewind -----------------------------------------------------------------------------------
def test_rewind_branch_reproduces_a_rewind_parent_bit_for_bit(parent, kids):
    b = kids["rewind"]
    assert same(b.weights(which="init"), parent.weights(which="init"))
    for lv in (1, 2, 3):
        assert same(b.mask(lv), parent.mask(lv))
        assert same(b.weights(lv), parent.weights(lv))
    cols = ["level", "step", "lr", "train_loss", "test_acc"]
    assert b.history()[cols].equals(
        parent.history().query("level >= 1")[cols].reset_index(drop=True)
    )


@pytest.fixture(scope="module")
def late_parent(root):
    """A rewind parent to θk at 4 it (stores rewind.safetensors), 2 levels."""
    return run(small(rewind_to="4it", levels=2), root / "late", progress=False)


def test_rewind_branch_reproduces_a_late_rewinding_parent_from_its_theta_k(late_parent):
    b = branch(late_parent, "rewind", progress=False)
    assert b.levels == [1, 2]
    assert same(b.weights(which="rewind"), late_parent.weights(which="rewind"))
    for lv in (1, 2):
        assert same(b.weights(lv), late_parent.weights(lv))
        assert same(b.weights(lv, which="start"), late_parent.weights(which="rewind"))
        assert b.level_metrics(lv)["start_step"] == 4


def test_rewind_to_other_than_parents_trains_its_own_dense_level_and_theta_k(
    parent, late_parent, tmp_path
):
    b = branch(parent, "rewind", overrides={"rewind_to": "4it"}, out=tmp_path, progress=False)
    assert b.levels == [0, 1, 2, 3]
    assert b.config.branch.first == 0
    assert (b.path / "rewind.safetensors").is_file()
    # level 0 is the parent's dense training; θk its snapshot at 4 it (as the 4 it run stores)
    assert same(b.weights(0), parent.weights(0))
    assert same(b.weights(which="rewind"), late_parent.weights(which="rewind"))
    for lv in (1, 2, 3):
        assert same(b.mask(lv), parent.mask(lv))
        assert same(b.weights(lv, which="start"), late_parent.weights(which="rewind"))
        assert b.level_metrics(lv)["start_step"] == 4
    assert sorted(b.info["parent"]["masks"]) == ["0", "1", "2", "3"]


def test_rewind_to_other_than_parents_with_level_is_refused(parent, tmp_path):
    with pytest.raises(ConfigError, match="--levels, not --level"):
        branch(parent, "rewind", level=2, overrides={"rewind_to": "4it"}, out=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- finetune / lr_rewind ---------------------------------------------------------------------
def test_finetune_branch_starts_from_parent_previous_level_at_the_final_lr(parent, kids):
    b = kids["finetune"]
    final_lr = LR * GAMMA**2
    history = b.history()
    assert len(history) == 3 * 4 and (history["level"] >= 1).all()
    assert (history["lr"] == final_lr).all(), history["lr"].unique()
    for lv in (1, 2, 3):
        assert same(b.mask(lv), parent.mask(lv))
        assert same(b.weights(lv, which="start"), parent.weights(lv - 1))
        m = b.level_metrics(lv)
        assert m["start_step"] == 0 and m["iterations"] == T


def test_lr_rewind_branch_starts_from_parent_previous_level_replaying_the_schedule(parent, kids):
    b = kids["lr_rewind"]
    history = b.history()
    assert history["lr"].tolist() == [step_lr(s) for s in history["step"]]
    assert sorted(set(history["lr"])) == [LR * GAMMA**2, LR * GAMMA, LR]
    for lv in (1, 2, 3):
        assert same(b.weights(lv, which="start"), parent.weights(lv - 1))
    # same mask, same start, another schedule: the two branches trained differently
    assert not same(b.weights(1), kids["finetune"].weights(1))


@pytest.mark.parametrize("regime", ["finetune", "lr_rewind"])
def test_finetune_and_lr_rewind_runs_and_their_branches(regime, root):
    p = run(small(regime=regime, levels=2), root / f"regime_{regime}", progress=False)
    history = p.history()
    dense, pruned = history[history.level == 0], history[history.level >= 1]
    assert dense["lr"].tolist() == [step_lr(s) for s in dense["step"]]  # level 0: full schedule
    if regime == "finetune":
        assert (pruned["lr"] == LR * GAMMA**2).all()
    else:
        assert pruned["lr"].tolist() == [step_lr(s) for s in pruned["step"]]
    for lv in (1, 2):
        assert same(p.weights(lv, which="start"), p.weights(lv - 1))
    b = branch(p, regime, progress=False)  # the same kind on its own masks: the parent again
    for lv in (1, 2):
        assert same(b.weights(lv), p.weights(lv))


# --- moved regimes ----------------------------------------------------------------------------
def test_run_regimes_are_rewind_finetune_lr_rewind_reinit_prune():
    assert tuple(REGIMES) == ("rewind", "finetune", "lr_rewind", "reinit_prune")
    assert set(MOVED_REGIMES) == {"reinit", "random_mask", "scratch_e", "scratch_b"}


@pytest.mark.parametrize("regime", ["reinit", "random_mask", "scratch_e", "scratch_b"])
def test_moved_regimes_raise_config_error_naming_the_branch_kind(regime):
    with pytest.raises(ConfigError, match=f"branch kind '{regime}'"):
        small(regime=regime)
    with pytest.raises(ConfigError, match="no longer a regime"):
        RunConfig(regime=regime)


# --- idempotence and resuming -------------------------------------------------------------
def test_asking_again_returns_the_same_branch_and_trains_nothing(parent, kids):
    b = kids["scratch_b"]
    before = done_files(b)
    again = branch(parent, "scratch_b", progress=False)
    assert again.path == b.path and again.levels == [1, 2, 3]
    assert done_files(again) == before
    again = branch(parent.path, "scratch_b", levels=3, progress=False)
    assert again.path == b.path and done_files(again) == before


def test_deleting_last_done_retrains_only_that_level_bit_identically(parent, tmp_path):
    b = branch(parent, "reinit", out=tmp_path, progress=False)
    weights = {lv: b.weights(lv) for lv in b.levels}
    history = b.history()[["level", "step", "lr", "train_loss", "test_acc"]]
    kept = {lv: (level_dir(b.path, lv) / "DONE").stat().st_mtime_ns for lv in (1, 2)}
    (level_dir(b.path, 3) / "DONE").unlink()
    assert open_run(b.path).levels == [1, 2]
    again = branch(parent, "reinit", out=tmp_path, progress=False)
    assert again.path == b.path and again.levels == [1, 2, 3]
    for lv in (1, 2):
        assert (level_dir(b.path, lv) / "DONE").stat().st_mtime_ns == kept[lv]
    for lv, w in weights.items():
        assert same(again.weights(lv), w)
    assert again.history()[history.columns].equals(history)


# --- refusals ---------------------------------------------------------------------------------
def test_parent_lacking_levels_raises_store_error_naming_them_and_writes_nothing(parent, tmp_path):
    with pytest.raises(StoreError, match=r"needs levels \[4, 5\]"):
        branch(parent, "reinit", levels=5, out=tmp_path, progress=False)
    with pytest.raises(StoreError, match=r"needs levels \[9\]"):
        branch(parent, "random_mask", level=9, out=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "key, value",
    [
        ("prune.amount", 0.5),
        ("prune.criterion", "random"),
        ("model.width", 0.5),
        ("levels", 2),
        ("seed", 3),
        ("branch.kind", "reinit"),
    ],
)
def test_overriding_model_prune_levels_seed_is_a_config_error(parent, tmp_path, key, value):
    with pytest.raises(ConfigError, match="a branch cannot set"):
        branch(parent, "reinit", overrides={key: value}, out=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_train_overrides_change_the_branch_id_and_are_applied(parent, tmp_path):
    b = branch(parent, "finetune", level=1, overrides={"train.lr": 0.02}, out=tmp_path)
    assert b.config.train.lr == 0.02
    assert (b.history()["lr"] == 0.02 * GAMMA**2).all()


def test_fresh_kinds_refuse_rewind_to_and_unknown_kinds_are_refused(parent):
    for kind in ("reinit", "scratch_e", "scratch_b"):
        with pytest.raises(ConfigError, match="rewind_to cannot be set"):
            branch(parent, kind, overrides={"rewind_to": "4it"}, progress=False)
    with pytest.raises(ConfigError, match="branch kind 'bogus'"):
        branch(parent, "bogus", progress=False)


def test_branching_a_branch_is_a_config_error(kids):
    with pytest.raises(ConfigError, match="is itself a branch"):
        branch(kids["reinit"], "shuffle", progress=False)
    with pytest.raises(ConfigError, match="is itself a branch"):
        branch(kids["reinit"].path, "reinit", level=1, progress=False)


# --- legacy run directories -----------------------------------------------------------------
def legacy_copy(parent, dest, regime):
    shutil.copytree(parent.path, dest)
    info = json.loads((dest / "config.json").read_text())
    del info["schema"]
    info["config"]["regime"] = regime
    (dest / "config.json").write_text(json.dumps(info))
    return dest


def test_legacy_finetune_run_opens_as_lr_rewind(parent, tmp_path):
    r = open_run(legacy_copy(parent, tmp_path / "old_ft", "finetune"))
    assert r.config.regime == "lr_rewind" and r.config.rule.name == "lr_rewind"
    assert r.levels == [0, 1, 2, 3] and r.run_id == parent.run_id
    r = open_run(legacy_copy(parent, tmp_path / "old_re", "reinit"))
    assert r.config.regime == "reinit_prune"
    r = open_run(legacy_copy(parent, tmp_path / "old_rw", "rewind"))
    assert r.config.regime == "rewind"


@pytest.mark.parametrize("regime", ["random_mask", "scratch_b"])
def test_legacy_moved_regime_run_raises_store_error_explaining_branches(parent, tmp_path, regime):
    path = legacy_copy(parent, tmp_path / "old", regime)
    with pytest.raises(StoreError, match=f"branch kind '{regime}'"):
        open_run(path)


def test_schema_2_finetune_run_stays_finetune(parent, tmp_path):
    shutil.copytree(parent.path, tmp_path / "new")
    info = json.loads((tmp_path / "new" / "config.json").read_text())
    info["config"]["regime"] = "finetune"
    (tmp_path / "new" / "config.json").write_text(json.dumps(info))
    assert open_run(tmp_path / "new").config.regime == "finetune"


# --- CLI --------------------------------------------------------------------------------------
def test_cli_branch_prints_run_directory(parent, kids, capsys):
    assert main(["branch", str(parent.path), "--kind", "reinit", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"run directory: {kids['reinit'].path}" in out.splitlines()


def test_cli_branch_beyond_the_parent_exits_2_naming_the_missing_level(parent, tmp_path, capsys):
    code = main(
        [
            "branch",
            str(parent.path),
            "--kind",
            "reinit",
            "--level",
            "9",
            "--quiet",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("maskstudy: error:") and "needs levels [9]" in err
    assert list(tmp_path.iterdir()) == []
    code = main(["branch", str(parent.path), "--kind", "reinit", "--set", "prune.amount=0.5"])
    assert code == 2 and "prune.amount" in capsys.readouterr().err


# --- sweeps -----------------------------------------------------------------------------------
SWEEP = """
levels = 2
seeds = [0, 1]
[base]
data.name = "synthetic"
data.synthetic_shape = [1, 8, 8]
data.synthetic_size = 256
model.name = "lenet300_100"
model.width = 0.2
train.lr = 0.05
train.batch_size = 32
train.duration = "8it"
train.eval_every = "4it"
"prune.amount" = 0.3
[grid]
regime = ["rewind", "finetune"]
[branches]
kinds = ["reinit", "finetune"]
of = { regime = "rewind" }
"""


def test_parse_sweep_lists_runs_then_their_branches():
    configs = parse_sweep(SWEEP).configs
    runs, kids = configs[:4], configs[4:]
    assert [c.is_branch for c in configs] == [False] * 4 + [True] * 4
    rewinds = [c for c in runs if c.regime == "rewind"]
    assert {(c.branch.kind, c.branch.parent, c.seed) for c in kids} == {
        (kind, p.run_id(), p.seed) for kind in ("reinit", "finetune") for p in rewinds
    }
    assert all(c.levels == 2 and c.level_range() == range(1, 3) for c in kids)
    extra = SWEEP.replace('of = { regime = "rewind" }', 'seeds = [9]\nset = { "train.lr" = 0.01 }')
    kids = parse_sweep(extra).configs[4:]
    assert len(kids) == 8 and {c.seed for c in kids} == {9}
    assert {c.train.lr for c in kids} == {0.01}


@pytest.mark.parametrize(
    "table, match",
    [
        ('kinds = ["reinit"]\nparents = 1', "unknown key"),
        ('kinds = ["reinit"]\nof = { regime = "lr_rewind" }', "picks none"),
        ('kinds = ["reinit"]\nof = { nonsense = 1 }', "not a config field"),
        ("of = { regime = 'rewind' }", "needs kinds"),
        ('kinds = ["rewind_mask"]', "branch kind"),
        ('kinds = ["reinit"]\nset = { "prune.amount" = 0.5 }', "cannot set"),
    ],
)
def test_bad_branches_tables_are_config_errors(table, match):
    text = SWEEP.split("[branches]")[0] + "[branches]\n" + table + "\n"
    with pytest.raises(ConfigError, match=match):
        parse_sweep(text)


SECOND_TABLE = """
[[branches]]
kinds = ["rewind"]
of = { regime = "finetune", seed = [1] }
set = { rewind_to = "4it" }
"""


def test_of_filters_take_lists_and_branches_tables_may_repeat():
    text = SWEEP.replace("[branches]", "[[branches]]") + SECOND_TABLE
    kids = parse_sweep(text).configs[4:]
    assert [(c.branch.kind, c.regime, c.seed) for c in kids] == [
        ("reinit", "rewind", 0),
        ("finetune", "rewind", 0),
        ("reinit", "rewind", 1),
        ("finetune", "rewind", 1),
        ("rewind", "finetune", 1),
    ]
    assert kids[-1].rewind_to == "4it" and kids[-1].level_range() == range(0, 3)
    both = SWEEP.replace('of = { regime = "rewind" }', 'of = { regime = ["rewind", "finetune"] }')
    assert len(parse_sweep(both).configs) == 4 + 8


def test_run_sweep_trains_parents_then_branches_and_tables_them(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP.replace("[branches]", "[[branches]]") + SECOND_TABLE)
    run_sweep(tmp_path / "s.toml", tmp_path / "out", progress=False)
    sweep = open_sweep(tmp_path / "out")
    status = sweep.status()
    assert len(status) == 9 and (status["state"] == "done").all()
    # the rewind branch to 4 it trains its own dense level 0: 3 levels
    assert status["levels"].tolist() == ["3/3"] * 4 + ["2/2"] * 4 + ["3/3"]
    frame = sweep.frame()
    assert {"branch", "parent", "parent_regime"} <= set(frame.columns)
    runs = frame[frame["branch"] == ""]
    assert (runs["parent"] == "").all() and (runs["parent_regime"] == "").all()
    assert sorted(runs["regime"].unique()) == ["finetune", "rewind"]
    kids = frame[frame["branch"] != ""]
    by_kind = kids.drop_duplicates("run_id").set_index("branch")
    assert by_kind.loc["reinit", "regime"].unique().tolist() == ["reinit"]
    assert by_kind.loc["finetune", "regime"].unique().tolist() == ["finetune (branch)"]
    assert by_kind.loc["rewind", "regime"] == "rewind (branch)"
    assert by_kind.loc["rewind", "parent_regime"] == "finetune"
    assert (kids.loc[kids["branch"] != "rewind", "parent_regime"] == "rewind").all()
    parents = {(r.run_id): (r.regime, r.seed) for r in runs.drop_duplicates("run_id").itertuples()}
    for _, row in kids.drop_duplicates("run_id").iterrows():
        b = open_run(tmp_path / "out" / row["run_id"])
        p = b.parent
        assert p.run_id == row["parent"] and parents[p.run_id][1] == b.config.seed
        assert parents[p.run_id][0] == row["parent_regime"]
        for lv in (1, 2):
            assert same(b.mask(lv), p.mask(lv))
    rewind = open_run(tmp_path / "out" / by_kind.loc["rewind", "run_id"])
    assert rewind.levels == [0, 1, 2] and (rewind.path / "rewind.safetensors").is_file()
    assert sorted(kids.loc[kids["branch"] != "rewind", "level"].unique()) == [1, 2]
    # P4 names each side by its method: a run by its regime, a branch by its kind
    pairs = _method_pairs(Tables(sweep.runs, None))
    named = {frozenset(p) for p in zip(pairs["value_a"], pairs["value_b"], strict=True)}
    assert {frozenset({"rewind", "reinit"}), frozenset({"rewind", "finetune"})} <= named
    assert frozenset({"reinit", "finetune (branch)"}) in named
    same_mask = pairs[
        pairs["value_a"].isin(["rewind", "reinit"]) & pairs["value_b"].isin(["rewind", "reinit"])
    ]
    assert (same_mask.query("layer == 'all'")["jaccard"] == 1.0).all()  # the ticket's own masks
    # curves over % remaining: each branch starts at its parent's dense level 0, seed for seed
    at0 = with_parent_dense(frame).query("level == 0")
    assert sorted(at0["regime"]) == sorted(
        ["finetune"] * 2
        + ["rewind"] * 2
        + ["reinit"] * 2
        + ["finetune (branch)"] * 2
        + ["rewind (branch)"]
    )
    dense = runs[runs["level"] == 0].set_index("run_id")["test_acc"]
    copies = at0[at0["regime"] == "reinit"]
    assert copies["test_acc"].tolist() == dense.loc[copies["run_id"]].tolist()


@pytest.mark.slow  # several processes: run with `pytest -m slow` (CI runs both)
def test_branches_wait_while_another_process_trains_their_parents(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sweep.toml").write_text(SWEEP)  # the sweep another process started
    first = parse_sweep(SWEEP).configs[0]
    held = RunLock(tmp_path / "out" / first.run_id())
    assert held.acquire()  # another process trains this parent
    try:
        outcomes = run_sweep(tmp_path / "s.toml", tmp_path / "out", progress=False)
        assert outcomes["busy"] == 1 and outcomes["waiting"] == 2  # its reinit and finetune
        status = open_sweep(tmp_path / "out").status().set_index("run_id")
        kids = status[status["branch.kind"] != ""]
        waiting = kids[kids["state"] == "waiting"]
        assert sorted(waiting["detail"]) == [  # finetune also needs the level before
            "for levels [0, 1, 2] of its parent",
            "for levels [1, 2] of its parent",
        ]
        assert "failed" not in set(status["state"])
    finally:
        held.release()
    assert run_sweep(tmp_path / "s.toml", tmp_path / "out", progress=False)["trained"] == 3
    assert (open_sweep(tmp_path / "out").status()["state"] == "done").all()


# --- regressions: a Drop Pruning parent, a parent stored before the regimes were renamed -----
def test_drop_revive_last_parent_can_be_given_a_reinit_branch(root, tmp_path):
    cfg = small(
        levels=1, regime="finetune", **{"prune.criterion": "drop", "prune.drop.revive": "last"}
    )
    p = run(cfg, root / "drop", progress=False)
    b = branch(p, "reinit", out=tmp_path, progress=False)
    assert b.levels == [1] and same(b.mask(1), p.mask(1))
    assert same(b.weights(which="init"), fresh_init(0))


def test_legacy_finetune_run_can_be_branched(parent, tmp_path):
    old_id = small(regime="finetune").run_id()  # the id the schema-1 run was stored under
    legacy = legacy_copy(parent, tmp_path / old_id, "finetune")
    info = json.loads((legacy / "config.json").read_text())
    info["run_id"] = old_id
    (legacy / "config.json").write_text(json.dumps(info))
    assert open_run(legacy).config.regime == "lr_rewind"
    try:
        b = branch(legacy, "reinit", level=1, progress=False)
    finally:
        leftovers = [d.name for d in tmp_path.iterdir() if d.name != old_id]
    assert b.levels == [1] and b.parent.run_id == old_id
    assert same(b.mask(1), parent.mask(1)) and leftovers == [b.path.name]
