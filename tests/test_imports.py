"""Imported runs: a fake OpenLTH tree read back file for file, and torch-pruned models as runs."""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from maskstudy.analysis.overlap import jaccard
from maskstudy.analysis.run_overlap import overlap_table
from maskstudy.errors import ConfigError, StoreError
from maskstudy.masks import prunable_names
from maskstudy.models import build
from maskstudy.runs.config import RunConfig
from maskstudy.runs.foreign import load_tensors
from maskstudy.runs.openlth import OpenLTHRun, maskstudy_names, open_openlth, openlth_config
from maskstudy.runs.pruned_models import (
    PRUNE_FIELDS,
    from_pruned_model,
    runs_from_pruned_models,
    torch_prune_settings,
)
from maskstudy.runs.table import runs_frame

# OpenLTH's mnist_lenet_300_100: fc_layers.0, fc_layers.1, then the output layer fc.
LENET = {
    "fc_layers.0.weight": (300, 784),
    "fc_layers.0.bias": (300,),
    "fc_layers.1.weight": (100, 300),
    "fc_layers.1.bias": (100,),
    "fc.weight": (10, 100),
    "fc.bias": (10,),
}
PRUNABLE = ("fc_layers.0.weight", "fc_layers.1.weight", "fc.weight")
# ... read back under maskstudy's names for the same network
RENAMED = {"fc_layers.0": "fc1", "fc_layers.1": "fc2", "fc": "fc3"}
IGNORED = "fc.weight"


def renamed(state: dict) -> dict:
    """An OpenLTH LeNet-300-100 state dict under maskstudy's tensor names."""
    return {RENAMED[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v for k, v in state.items()}


EPOCH = 469  # OpenLTH's MNIST iterations per epoch at batch size 128
END = 10 * EPOCH  # training_steps = 10ep: model_ep10_it0.pth sorts before ep1 as a string

# What OpenLTH's Desc.save writes for `lottery --default_hparams=mnist_lenet_300_100 --training_steps=10ep`.
HPARAMS = """Dataset Hyperparameters
    * dataset_name => mnist
    * batch_size => 128
Model Hyperparameters
    * model_name => mnist_lenet_300_100
    * model_init => kaiming_normal
    * batchnorm_init => uniform
Hyperparameters for Sparse Global Pruning
    * pruning_strategy => sparse_global
    * pruning_fraction => 0.2
    * pruning_layers_to_ignore => fc.weight
Training Hyperparameters
    * optimizer_name => sgd
    * lr => 0.1
    * training_steps => 10ep"""

# The same with --rewinding_steps=1ep and an initialiser maskstudy does not have.
HPARAMS_REWIND = """Dataset Hyperparameters
    * dataset_name => mnist
    * batch_size => 128
Model Hyperparameters
    * model_name => mnist_lenet_300_100
    * model_init => orthogonal
    * batchnorm_init => uniform
Pretraining Dataset Hyperparameters
    * dataset_name => mnist
    * batch_size => 128
Pretraining Training Hyperparameters
    * optimizer_name => sgd
    * lr => 0.1
    * training_steps => 1ep
Hyperparameters for Sparse Global Pruning
    * pruning_strategy => sparse_global
    * pruning_fraction => 0.2
    * pruning_layers_to_ignore => fc.weight
Training Hyperparameters
    * optimizer_name => sgd
    * lr => 0.1
    * training_steps => 10ep"""


@dataclass
class Saved:
    """Everything written for one fake replicate, to compare the reader against."""

    init: dict
    rewind: dict | None = None
    masks: list[dict] = field(default_factory=list)  # float 0/1, as older OpenLTH saved them
    starts: list[dict] = field(default_factory=list)
    finals: list[dict] = field(default_factory=list)
    logs: list[list[tuple[str, int, float]]] = field(default_factory=list)


def openlth_prune(weights: dict, mask: dict, fraction: float = 0.2) -> dict:
    """OpenLTH's sparse_global: drop the ceil(fraction × alive) smallest |w| among the pruned layers."""
    names = [n for n in mask if n != IGNORED]
    alive = torch.cat([weights[n][mask[n] == 1].abs() for n in names])
    threshold = alive.sort().values[math.ceil(fraction * alive.numel())]
    return {
        n: torch.where(weights[n].abs() > threshold, m, 0.0) if n in names else m
        for n, m in mask.items()
    }


def masked(state: dict, mask: dict) -> dict:
    return {k: v * mask[k] if k in mask else v.clone() for k, v in state.items()}


def write_replicate(root: pathlib.Path, name: str, seed: int, hparams: str, rewind: bool) -> Saved:
    """An OpenLTH replicate with levels 0-2 (level_<L>/main: mask.pth, checkpoints, logger)."""
    g = torch.Generator().manual_seed(seed)
    replicate = root / name
    saved = Saved(init={k: torch.randn(s, generator=g) for k, s in LENET.items()})
    start_step = (1, 0) if rewind else (0, 0)
    start = saved.init
    if rewind:
        pretrain = replicate / "level_pretrain" / "main"
        pretrain.mkdir(parents=True)
        saved.rewind = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in start.items()}
        torch.save(saved.init, pretrain / "model_ep0_it0.pth")
        torch.save(saved.rewind, pretrain / "model_ep1_it0.pth")
        start = saved.rewind
    mask = {n: torch.ones(LENET[n]) for n in PRUNABLE}
    for level in range(3):
        main = replicate / f"level_{level}" / "main"
        main.mkdir(parents=True)
        if level > 0:
            mask = openlth_prune(saved.finals[-1], mask)
        final = masked({k: v + torch.randn(v.shape, generator=g) for k, v in start.items()}, mask)
        saved.masks.append(mask)
        saved.starts.append(masked(start, mask) if level else start)
        saved.finals.append(final)
        torch.save({k: v.int() for k, v in mask.items()}, main / "mask.pth")  # as Mask.save
        torch.save(saved.starts[-1], main / "model_ep{}_it{}.pth".format(*start_step))
        torch.save(final, main / "model_ep10_it0.pth")
        first = start_step[0] * EPOCH
        log = [
            (metric, it, round(float(torch.rand((), generator=g)), 6))
            for it in (first, END, first + EPOCH)  # not in step order
            for metric in ("test_loss", "test_accuracy")
        ] + [("test_examples", it, 10000.0) for it in (END, first)]
        saved.logs.append(log)
        (main / "logger").write_text("\n".join(f"{n},{it},{v}" for n, it, v in log))
        (main / "sparsity_report.json").write_text("{}")
    (replicate / "level_0" / "main" / "hparams.log").write_text(hparams)
    return saved


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[pathlib.Path, dict[str, Saved]]:
    """Results root: lottery_aaa with replicates 1 and 2, lottery_bbb (rewinding) with one."""
    root = tmp_path_factory.mktemp("open_lth_data")
    saved = {
        "lottery_aaa-rep1": write_replicate(root, "lottery_aaa/replicate_1", 1, HPARAMS, False),
        "lottery_aaa-rep2": write_replicate(root, "lottery_aaa/replicate_2", 2, HPARAMS, False),
        "lottery_bbb-rep1": write_replicate(
            root, "lottery_bbb/replicate_1", 3, HPARAMS_REWIND, True
        ),
    }
    # A level still training: mask and start checkpoint written, no logger yet.
    unfinished = root / "lottery_aaa" / "replicate_1" / "level_3" / "main"
    unfinished.mkdir(parents=True)
    torch.save({n: torch.ones(LENET[n]).int() for n in PRUNABLE}, unfinished / "mask.pth")
    torch.save(saved["lottery_aaa-rep1"].init, unfinished / "model_ep0_it0.pth")
    return root, saved


def equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_open_finds_every_replicate_of_a_root_a_lottery_or_a_replicate(tree):
    root, saved = tree
    assert [r.run_id for r in open_openlth(root)] == list(saved)
    assert [r.run_id for r in open_openlth(root / "lottery_aaa")] == [
        "lottery_aaa-rep1",
        "lottery_aaa-rep2",
    ]
    (run,) = open_openlth(root / "lottery_bbb" / "replicate_1")
    assert run.run_id == "lottery_bbb-rep1" and run.replicate == 1
    assert run.path == root / "lottery_bbb" / "replicate_1"


def test_masks_weights_and_levels_are_what_was_saved(tree):
    root, saved = tree
    for run in open_openlth(root):
        want = saved[run.run_id]
        assert run.levels == [0, 1, 2]  # level_3 of rep1 has no logger yet
        for level in run.levels:
            mask = run.mask(level)
            assert list(mask) == ["fc1.weight", "fc2.weight", "fc3.weight"]
            assert all(m.dtype == torch.bool for m in mask.values())
            saved_mask = renamed(want.masks[level])
            assert all(torch.equal(mask[n], saved_mask[n] == 1) for n in mask)
            assert equal_states(run.weights(level), renamed(want.finals[level]))
            assert equal_states(run.weights(level, which="start"), renamed(want.starts[level]))
        assert equal_states(run.weights(which="init"), renamed(want.init))
    # Masks are nested at 80 % of the pruned layers (the ignored output layer stays full).
    run = OpenLTHRun(root / "lottery_aaa" / "replicate_1")
    alive = [
        sum(int(run.mask(lv)[n].sum()) for n in ("fc1.weight", "fc2.weight")) for lv in run.levels
    ]
    assert [a / alive[0] for a in alive] == pytest.approx([1, 0.8, 0.64], abs=1e-4)
    assert bool(run.mask(2)["fc3.weight"].all())


def test_rewind_points_follow_openlth_pretraining(tree):
    root, saved = tree
    rewinding = OpenLTHRun(root / "lottery_bbb" / "replicate_1")
    want = saved["lottery_bbb-rep1"]
    assert equal_states(rewinding.weights(which="init"), renamed(want.init))  # pretrain's step 0
    assert equal_states(rewinding.weights(which="rewind"), renamed(want.rewind))
    assert equal_states(rewinding.weights(0, which="start"), renamed(want.rewind))
    assert rewinding.level_metrics(1)["start_step"] == EPOCH
    with pytest.raises(StoreError, match="use which='init'"):
        OpenLTHRun(root / "lottery_aaa" / "replicate_1").weights(which="rewind")


def test_level_metrics_come_from_the_logger_end_and_the_mask(tree):
    root, saved = tree
    run = OpenLTHRun(root / "lottery_aaa" / "replicate_2")
    want = saved[run.run_id]
    for level in run.levels:
        m = run.level_metrics(level)
        end = {n: v for n, it, v in want.logs[level] if it == END}
        assert (m["level"], m["step"], m["start_step"]) == (level, END, 0)
        assert m["test_acc"] == end["test_accuracy"]
        assert m["test_loss"] == end["test_loss"]
        mask = want.masks[level]
        kept = int(sum(v.sum() for v in mask.values()))
        total = sum(v.numel() for v in mask.values())
        assert (m["kept"], m["total"]) == (kept, total)
        assert m["percent_remaining"] == pytest.approx(100 * kept / total)
        assert m["layer_density"] == pytest.approx(
            {n: float(v.mean()) for n, v in renamed(mask).items()}
        )
    frame = run.metrics()
    assert list(frame["level"]) == [0, 1, 2]
    assert list(frame["density[fc3.weight]"]) == [1.0, 1.0, 1.0]
    history = run.history()
    assert list(history.columns[:2]) == ["level", "step"]
    assert list(history["step"][history["level"] == 1]) == [0, EPOCH, END]
    at = {(n, it): v for n, it, v in want.logs[1]}
    assert list(history["test_acc"][history["level"] == 1]) == [
        at[("test_accuracy", it)] for it in (0, EPOCH, END)
    ]


def test_config_is_read_from_hparams_log(tree):
    root, _ = tree
    run = OpenLTHRun(root / "lottery_aaa" / "replicate_2")
    cfg = run.config
    assert (cfg.model.name, cfg.data.name, cfg.data.augment) == ("lenet300_100", "mnist", False)
    assert (cfg.prune.criterion, cfg.prune.scope, cfg.prune.amount) == ("magnitude", "global", 0.2)
    assert (cfg.prune.exclude, cfg.prune.rounding) == (("fc3.weight",), "ceil")
    assert (cfg.train.duration, cfg.train.lr, cfg.train.batch_size) == ("10ep", 0.1, 128)
    assert (cfg.regime, cfg.rewind_to, cfg.seed, cfg.levels) == ("rewind", "0it", 2, 2)
    assert run.hparams["model_name"] == "mnist_lenet_300_100"
    assert run.unmapped == {"batchnorm_init": "uniform"}
    rewinding = OpenLTHRun(root / "lottery_bbb" / "replicate_1")
    assert rewinding.config.rewind_to == "1ep"
    assert rewinding.config.model.init == "kaiming_normal"  # orthogonal has no equivalent
    assert rewinding.unmapped == {"model_init": "orthogonal", "batchnorm_init": "uniform"}
    assert rewinding.hparams["pretrain_training_steps"] == "1ep"


RESNET20_DEFAULTS = {  # OpenLTH's cifar_resnet_20 default_hparams, as hparams.log spells them
    "dataset_name": "cifar10",
    "batch_size": "128",
    "model_name": "cifar_resnet_20",
    "model_init": "kaiming_normal",
    "optimizer_name": "sgd",
    "momentum": "0.9",
    "milestone_steps": "80ep,120ep",
    "lr": "0.1",
    "gamma": "0.1",
    "weight_decay": "0.0001",
    "training_steps": "160ep",
    "pruning_strategy": "sparse_global",
    "pruning_fraction": "0.2",
}


def test_openlth_defaults_of_resnet20_map_to_a_full_config():
    cfg, unmapped = openlth_config(RESNET20_DEFAULTS, replicate=4, levels=3)
    assert unmapped == {}
    want = RunConfig.from_dict(
        {
            "data": {"name": "cifar10", "augment": True},
            "model": {"name": "resnet20"},
            "train": {
                "momentum": 0.9,
                "schedule": "step",
                "milestones": ["80ep", "120ep"],
                "gamma": 0.1,
                "weight_decay": 1e-4,
                "duration": "160ep",
            },
            "prune": {"scope": "global", "rounding": "ceil"},
            "levels": 3,
            "seed": 4,
        }
    )
    assert cfg == want
    no_augment, _ = openlth_config({**RESNET20_DEFAULTS, "do_not_augment": "True"})
    assert no_augment.data.augment is False
    pretrained, unmapped = openlth_config(
        {
            "lr": "0.1",
            "pretrain_lr": "0.1",
            "pretrain_training_steps": "2ep",
            "pretrain_gamma": "0.5",
        }
    )
    assert (pretrained.rewind_to, unmapped) == ("2ep", {"pretrain_gamma": "0.5"})
    nesterov, _ = openlth_config({"nesterov_momentum": "0.9"})
    assert (nesterov.train.momentum, nesterov.train.nesterov) == (0.9, True)


@pytest.mark.parametrize(
    ("openlth", "model", "width"),
    [
        ("mnist_lenet_300_100", "lenet300_100", 1.0),
        ("cifar_resnet_20", "resnet20", 1.0),
        ("cifar_resnet_56_32", "resnet56", 2.0),
        ("cifar_vgg_16", "vgg16", 1.0),
    ],
)
def test_openlth_model_names_map_to_maskstudy_models(openlth, model, width):
    cfg, unmapped = openlth_config({"model_name": openlth})
    assert (cfg.model.name, cfg.model.width, unmapped) == (model, width, {})


@pytest.mark.parametrize(
    "hparams",
    [
        {"model_name": "mnist_lenet_500_300"},
        {"model_name": "cifar_resnet_110"},  # a depth maskstudy has no builder for
        {"model_name": "imagenet_resnet_50"},
        {"dataset_name": "imagenet"},
        {"pruning_strategy": "magnitude_structured"},
        {"lr": "fast"},
    ],
)
def test_unmappable_hparams_keep_defaults_and_their_raw_value(hparams):
    cfg, unmapped = openlth_config(hparams, replicate=1)
    assert cfg == RunConfig(levels=0, seed=1)
    assert unmapped == hparams


def make_replicate(tmp_path: pathlib.Path) -> pathlib.Path:
    """A one-level replicate with a tiny model, for the damaged-file tests."""
    main = tmp_path / "lottery_x" / "replicate_1" / "level_0" / "main"
    main.mkdir(parents=True)
    torch.save({"fc.weight": torch.tensor([[1, 0], [1, 1]], dtype=torch.int32)}, main / "mask.pth")
    torch.save({"fc.weight": torch.ones(2, 2)}, main / "model_ep0_it0.pth")
    torch.save({"fc.weight": torch.ones(2, 2)}, main / "model_ep1_it0.pth")
    (main / "logger").write_text("test_accuracy,0,0.5\ntest_accuracy,3,0.75")
    return main


class Exploit:
    """Unpickling this would create ``target``: a stand-in for code hidden in a checkpoint."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def test_pth_files_are_never_unpickled(tmp_path):
    main = make_replicate(tmp_path)
    (run,) = open_openlth(tmp_path)
    assert run.level_metrics(0)["test_acc"] == 0.75
    assert run.mask(0)["fc.weight"].tolist() == [[True, False], [True, True]]
    marker = tmp_path / "exploited"
    torch.save({"fc.weight": Exploit(marker)}, main / "model_ep1_it0.pth")
    with pytest.raises(StoreError, match=r"model_ep1_it0\.pth holds pickled Python objects"):
        run.weights(0)
    assert not marker.exists()
    torch.save({"fc.weight": print}, main / "model_ep1_it0.pth")
    with pytest.raises(StoreError, match=r"pickled Python objects \(print\)"):
        run.weights(0)
    torch.save(nn.Linear(2, 2), main / "model_ep0_it0.pth")
    with pytest.raises(StoreError, match=r"model_ep0_it0\.pth .*torch\.nn\.modules\.linear"):
        run.weights(0, which="start")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"fc.weight": 3}, r"entry 'fc\.weight' is a int, not a tensor"),
        ([torch.ones(2)], "holds a list, not a dict"),
        ({"fc.weight": torch.tensor([0.0, 2.0])}, "values other than 0 and 1"),
    ],
)
def test_masks_that_are_not_dicts_of_0_1_tensors_are_refused(tmp_path, content, message):
    main = make_replicate(tmp_path)
    torch.save(content, main / "mask.pth")
    with pytest.raises(StoreError, match=message):
        OpenLTHRun(main.parents[1]).mask(0)


def test_damaged_files_and_wrong_paths_are_named(tmp_path):
    main = make_replicate(tmp_path)
    run = OpenLTHRun(main.parents[1])
    (main / "model_ep1_it0.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(StoreError, match=r"model_ep1_it0\.pth is not a readable torch file"):
        run.weights(0)
    (main / "logger").write_text("test_accuracy,0,0.5\ntest_accuracy;3;0.75")
    with pytest.raises(StoreError, match="logger line 2 = 'test_accuracy;3;0.75'"):
        run.level_metrics(0)
    with pytest.raises(StoreError, match=r"has no level 1; its levels: \[0\]"):
        run.mask(1)
    with pytest.raises(StoreError, match="choose one of: final, start, init, rewind"):
        run.weights(0, which="best")
    with pytest.raises(StoreError, match="holds no OpenLTH runs"):
        open_openlth(main)
    with pytest.raises(StoreError, match="is not a directory"):
        open_openlth(tmp_path / "missing")
    with pytest.raises(StoreError, match=r"missing file .*nothing\.pth"):
        load_tensors(tmp_path / "nothing.pth")


def test_replicates_compare_along_seed_and_levels_nest(tree):
    root, saved = tree
    runs = open_openlth(root)  # lottery_bbb rewinds to 1ep: another config, never paired
    table = overlap_table(runs, along="seed")
    assert set(zip(table["run_a"], table["run_b"], strict=True)) == {
        ("lottery_aaa-rep1", "lottery_aaa-rep2")
    }
    assert set(zip(table["value_a"], table["value_b"], strict=True)) == {(1, 2)}
    whole = table[table["layer"] == "all"].set_index("level")
    assert list(whole.index) == [0, 1, 2] and whole.loc[0, "jaccard"] == 1.0
    a, b = (saved[f"lottery_aaa-rep{r}"].masks[2] for r in (1, 2))
    inter = sum(int(((a[n] == 1) & (b[n] == 1)).sum()) for n in PRUNABLE)
    union = sum(int(((a[n] == 1) | (b[n] == 1)).sum()) for n in PRUNABLE)
    assert whole.loc[2, "jaccard"] == pytest.approx(inter / union, rel=1e-12)
    levels = overlap_table(runs[:1], along="level")
    row = levels[(levels["layer"] == "all") & (levels["level"] == 1) & (levels["level_b"] == 2)]
    kept = [
        sum(int(saved["lottery_aaa-rep1"].masks[lv][n].sum()) for n in PRUNABLE) for lv in (1, 2)
    ]
    assert row["nested"].item() and row["jaccard"].item() == pytest.approx(kept[1] / kept[0])


def test_openlth_runs_fill_the_run_table(tree):
    root, saved = tree
    frame = runs_frame(open_openlth(root / "lottery_aaa"))
    assert len(frame) == 6
    assert set(frame["model"]) == {"lenet300_100"} and list(frame["seed"]) == [1, 1, 1, 2, 2, 2]
    end = {n: v for n, it, v in saved["lottery_aaa-rep2"].logs[2] if it == END}
    assert frame["test_acc"].iloc[-1] == end["test_accuracy"]


# --- torch.nn.utils.prune ------------------------------------------------------------------
def lenet(seed: int = 0) -> nn.Module:
    return build("lenet300_100", (1, 8, 8), 10, seed=seed)


def linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def pruned_pair() -> tuple[nn.Module, nn.Module]:
    """Two copies of one network: l1_unstructured and random_unstructured, half of each layer."""
    a, b = lenet(), lenet()
    torch.manual_seed(0)
    for layer in linears(a).values():
        torch_prune.l1_unstructured(layer, "weight", amount=0.5)
    for layer in linears(b).values():
        torch_prune.random_unstructured(layer, "weight", amount=0.5)
    return a, b


def test_torch_pruned_models_import_their_weight_mask_buffers():
    a, b = pruned_pair()
    runs = runs_from_pruned_models([a, b], names=["l1", "random"])
    for run, model in zip(runs, (a, b), strict=True):
        assert run.levels == [0]
        mask, weights = run.mask(0), run.weights(0)
        for name, layer in linears(model).items():
            assert torch.equal(mask[f"{name}.weight"], layer.weight_mask.bool())
            assert torch.equal(weights[f"{name}.weight"], layer.weight_orig * layer.weight_mask)
            assert torch.equal(weights[f"{name}.bias"], layer.bias)
        assert not any(k.endswith(("_orig", "_mask")) for k in weights)
        m = run.level_metrics(0)
        assert (m["kept"], m["total"], m["percent_remaining"]) == (25100, 50200, 50.0)
    assert (runs[0].config.prune.criterion, runs[1].config.prune.criterion) == (
        "magnitude",
        "random",
    )
    assert runs[0].config.prune.amount == 0.5 and runs[0].config.levels == 0
    # The l1 mask keeps the larger half of |w| in every layer (torch's own rule, independently).
    for name, layer in linears(a).items():
        w = layer.weight_orig.abs().flatten()
        assert w[runs[0].mask(0)[f"{name}.weight"].flatten()].min() >= w.median()


def test_pruned_models_compare_through_jaccard_and_overlap_table():
    a, b = pruned_pair()
    runs = runs_from_pruned_models([a, b], names=["l1", "random"])
    ka = torch.cat([layer.weight_mask.flatten() for layer in linears(a).values()]).bool()
    kb = torch.cat([layer.weight_mask.flatten() for layer in linears(b).values()]).bool()
    expected = int((ka & kb).sum()) / int((ka | kb).sum())
    assert jaccard(runs[0].mask(0), runs[1].mask(0)) == pytest.approx(expected, rel=1e-12)
    table = overlap_table(runs, along="criterion")
    row = table[table["layer"] == "all"]
    assert (row["run_a"].item(), row["value_a"].item(), row["value_b"].item()) == (
        "l1",
        "magnitude",
        "random",
    )
    assert row["jaccard"].item() == pytest.approx(expected, rel=1e-12)
    # Same method, different seeds: configs tell them apart for along="seed".
    c, d = lenet(1), lenet(2)
    for model in (c, d):
        for layer in linears(model).values():
            torch_prune.l1_unstructured(layer, "weight", amount=0.5)
    seeds = runs_from_pruned_models([c, d], configs=[{"seed": 1}, {"seed": 2}])
    table = overlap_table(seeds, along="seed")
    assert set(table["run_a"]) == {"imported-0"} and set(table["value_b"]) == {2}


def test_settings_are_read_only_from_one_plain_torch_method():
    a, _ = pruned_pair()
    assert torch_prune_settings(a) == {"prune.criterion": "magnitude", "prune.amount": 0.5}
    structured = lenet()
    for layer in linears(structured).values():
        torch_prune.ln_structured(layer, "weight", amount=0.25, n=2, dim=1)
    cfg = from_pruned_model(structured).config.prune
    assert (cfg.criterion, cfg.amount, cfg.n, cfg.dim) == ("ln_structured", 0.25, 2, 1)
    twice = lenet()  # pruned twice: a PruningContainer, no single amount per level
    for _ in range(2):
        torch_prune.l1_unstructured(linears(twice)["fc1"], "weight", amount=0.5)
    globally = lenet()  # global_unstructured attaches CustomFromMask hooks
    params = [(layer, "weight") for layer in linears(globally).values()]
    torch_prune.global_unstructured(params, torch_prune.L1Unstructured, amount=0.5)
    counted = lenet()  # an integer amount is a count, not a fraction
    torch_prune.l1_unstructured(linears(counted)["fc1"], "weight", amount=7)
    for model in (twice, globally, counted):
        assert torch_prune_settings(model) == {}
        with pytest.warns(UserWarning, match="prune.criterion and prune.amount unknown"):
            run = from_pruned_model(model)
        assert run.config == RunConfig(levels=0) and run.unknown == PRUNE_FIELDS
        frame = runs_frame([run])  # tables say so, never the defaults
        assert (frame["criterion"].item(), frame["prune.amount"].item()) == ("unknown", "unknown")
    with pytest.warns(UserWarning, match="'imported': prune.criterion unknown"):
        told = from_pruned_model(counted, config={"prune.amount": 0.1})
    assert told.unknown == ("prune.criterion",)
    mask = from_pruned_model(
        globally, config={"prune.criterion": "magnitude", "prune.amount": 0.5}
    ).mask(0)
    assert sum(int(m.sum()) for m in mask.values()) == 25100


def test_trained_weights_config_and_metrics_of_an_imported_model():
    a, b = pruned_pair()
    trained = {k: v + 1 for k, v in from_pruned_model(b).weights(0).items()}
    run = from_pruned_model(
        a, "ticket", trained=trained, config={"seed": 3}, metrics={"test_acc": 0.91}
    )
    assert equal_states(run.weights(0), trained)
    assert equal_states(run.weights(0, which="start"), from_pruned_model(a).weights(0))
    assert (run.config.seed, run.config.prune.criterion) == (3, "magnitude")
    assert run.level_metrics(0)["test_acc"] == 0.91 and "start_step" not in run.level_metrics(0)
    assert run.metrics()["test_acc"].tolist() == [0.91]
    with pytest.raises(StoreError, match="has no 'start' weights"):
        from_pruned_model(a).weights(0, which="start")
    with pytest.raises(StoreError, match=r"has no level 1; its levels: \[0\]"):
        run.mask(1)


def test_bad_imports_say_what_to_do():
    a, b = pruned_pair()
    with pytest.raises(ConfigError, match="no torch.nn.utils.prune masks.*l1_unstructured"):
        from_pruned_model(lenet())
    with pytest.raises(ConfigError, match=r"missing: \['fc3.bias'\]"):
        state = from_pruned_model(a).weights(0)
        del state["fc3.bias"]
        from_pruned_model(a, trained=state)
    with pytest.raises(
        ConfigError, match="unknown model 'lenet9' \\(did you mean 'lenet5'\\?\\); valid models: "
    ):
        from_pruned_model(a, config={"model.name": "lenet9"})
    with pytest.raises(ConfigError, match="2 models, 1 names"):
        runs_from_pruned_models([a, b], names=["x"])
    with pytest.raises(ConfigError, match="repeat"):
        runs_from_pruned_models([a, b], names=["x", "x"])


def test_openlth_names_are_maskstudy_names_for_the_models_both_have(tree):
    run = OpenLTHRun(tree[0] / "lottery_aaa" / "replicate_1")
    net = build("lenet300_100", (1, 28, 28), 10)
    assert list(run.mask(1)) == prunable_names(net)  # masks compare with maskstudy runs'
    net.load_state_dict(run.weights(1))  # and the weights load into maskstudy's network
    # OpenLTH's CIFAR ResNet-20 and VGG-11 (its models/cifar_resnet.py, cifar_vgg.py): every
    # tensor of the ResNet, and every conv / BN / fc tensor of the VGG (whose convs also have a
    # bias, which maskstudy's have not), land on maskstudy's name for the same tensor
    stages = [(0, 16, False), (1, 32, True), (2, 64, True)]
    resnet = ["conv.weight", *bn("bn"), "fc.weight", "fc.bias"]
    for s, _, down in stages:
        for b in range(3):
            block = f"blocks.{3 * s + b}"
            resnet += [f"{block}.conv1.weight", *bn(f"{block}.bn1")]
            resnet += [f"{block}.conv2.weight", *bn(f"{block}.bn2")]
            if down and b == 0:
                resnet += [f"{block}.shortcut.0.weight", *bn(f"{block}.shortcut.1")]
    ours = maskstudy_names("cifar_resnet_20", resnet)
    assert sorted(ours.values()) == sorted(build("resnet20", (3, 32, 32), 10).state_dict())
    plan = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512]
    vgg = [f"layers.{i}.{t}" for i, c in enumerate(plan) if c != "M" for t in CONV_BN]
    vgg += ["fc.weight", "fc.bias"]
    ours = maskstudy_names("cifar_vgg_11", vgg)
    assert sorted(ours.values()) == sorted(build("vgg11", (3, 32, 32), 10).state_dict())
    assert ours["layers.4.conv.weight"] == "conv3.weight"  # the third conv, after two pools
    assert maskstudy_names("mnist_lenet_20_10", ["fc_layers.0.weight"]) == {
        "fc_layers.0.weight": "fc_layers.0.weight"  # a model maskstudy lacks keeps its names
    }


CONV_BN = ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]
CONV_BN += ["bn.num_batches_tracked"]


def bn(prefix: str) -> list[str]:
    return [f"{prefix}.{t}" for t in ("weight", "bias", "running_mean", "running_var")] + [
        f"{prefix}.num_batches_tracked"
    ]
