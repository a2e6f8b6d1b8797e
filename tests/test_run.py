"""The iterative pruning loop end to end on a small synthetic problem: what lands on disk."""

import json
import re

import pytest
import torch

from maskstudy import open_run
from maskstudy.cli import main
from maskstudy.errors import ConfigError, StoreError
from maskstudy.runs.config import DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig
from maskstudy.runs.lock import RunLock
from maskstudy.runs.run import run
from maskstudy.runs.store import level_dir


def small(**changes) -> RunConfig:
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.2),
        train=TrainConfig(
            optimizer="sgd",
            lr=0.05,
            momentum=0.9,
            weight_decay=1e-3,
            batch_size=32,
            duration="16it",
            eval_every="8it",
        ),
        prune=PruneConfig(amount=0.2, layer_amounts={"output": 0.1}),
        levels=3,
    )
    return cfg.replace(changes) if changes else cfg


def expected_kept(n: int, amount: float, levels: int) -> list[int]:
    """Kept count after each level when round(amount × alive) is removed each time."""
    counts = [n]
    for _ in range(levels):
        counts.append(counts[-1] - round(amount * counts[-1]))
    return counts


@pytest.fixture(scope="module")
def rewound(tmp_path_factory):
    return run(small(), tmp_path_factory.mktemp("runs"), progress=False)


def test_every_level_saved_with_exact_iterative_densities(rewound):
    assert rewound.levels == [0, 1, 2, 3]
    masks = [rewound.mask(lv) for lv in rewound.levels]
    assert sorted(masks[0]) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    for name, amount in [("fc1.weight", 0.2), ("fc2.weight", 0.2), ("fc3.weight", 0.1)]:
        kept = [int(m[name].sum()) for m in masks]
        assert kept == expected_kept(masks[0][name].numel(), amount, 3)
    for before, after in zip(masks, masks[1:], strict=False):
        assert all(not (after[k] & ~before[k]).any() for k in before)  # nested
    table = rewound.metrics()
    kept = sum(int(m.sum()) for m in masks[-1].values())
    total = sum(m.numel() for m in masks[-1].values())
    assert table["percent_remaining"].iloc[-1] == pytest.approx(100 * kept / total)
    assert table["density[fc3.weight]"].iloc[1] == pytest.approx(
        masks[1]["fc3.weight"].float().mean().item()
    )
    assert {"test_acc", "test_loss", "train_loss", "seconds"} <= set(table.columns)


def test_pruned_weights_are_exactly_zero_and_masks_prune_smallest(rewound):
    for level in rewound.levels:
        final, mask = rewound.weights(level), rewound.mask(level)
        assert all((final[k][~mask[k]] == 0).all() for k in mask)
    trained, nxt = rewound.weights(1), rewound.mask(2)
    w, m = trained["fc1.weight"].abs(), nxt["fc1.weight"]
    assert w[m].min() >= w[rewound.mask(1)["fc1.weight"] & ~m].max()


def test_rewind_starts_every_level_from_theta0(rewound):
    init = rewound.weights(which="init")
    for level in rewound.levels:
        start = rewound.weights(level, which="start")
        assert all(torch.equal(start[k], init[k]) for k in init)
        assert rewound.level_metrics(level)["start_step"] == 0
    history = rewound.history()
    assert sorted(history["level"].unique()) == [0, 1, 2, 3]
    assert list(history[history.level == 1]["step"]) == [8, 16]


def test_same_config_is_bit_identical_and_resume_equals_one_go(rewound, tmp_path):
    first = run(small(levels=1), tmp_path, progress=False)
    resumed = run(small(levels=3), tmp_path, progress=False)
    assert first.path == resumed.path and resumed.levels == [0, 1, 2, 3]
    for level in rewound.levels:
        a, b = rewound.mask(level), resumed.mask(level)
        assert all(torch.equal(a[k], b[k]) for k in a)
        wa, wb = rewound.weights(level), resumed.weights(level)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_completed_levels_are_never_retrained(tmp_path):
    r = run(small(levels=1), tmp_path, progress=False)
    done = level_dir(r.path, 1) / "DONE"
    stamp = done.stat().st_mtime_ns
    again = run(small(levels=1), tmp_path, progress=False)
    assert again.levels == [0, 1] and done.stat().st_mtime_ns == stamp


def test_run_id_ignores_levels_and_changes_with_hyperparameters():
    assert small(levels=1).run_id() == small(levels=7).run_id()
    assert small().run_id() != small(**{"train.lr": 0.01}).run_id()


def test_finetune_starts_from_the_previous_trained_weights(tmp_path):
    r = run(small(regime="finetune", levels=2), tmp_path, progress=False)
    start, previous = r.weights(2, which="start"), r.weights(1)
    assert all(torch.equal(start[k], previous[k]) for k in previous)


def test_reinit_prune_starts_from_fresh_weights_that_are_saved(tmp_path):
    r = run(small(regime="reinit_prune", levels=2), tmp_path, progress=False)
    init, s1, s2 = r.weights(which="init"), r.weights(1, which="start"), r.weights(2, which="start")
    assert not torch.equal(s1["fc1.weight"], init["fc1.weight"])
    assert not torch.equal(s1["fc1.weight"], s2["fc1.weight"])
    assert (level_dir(r.path, 1) / "start.safetensors").is_file()
    assert not (level_dir(r.path, 0) / "start.safetensors").is_file()


def test_late_rewinding_saves_theta_k_and_restarts_there(tmp_path):
    r = run(small(rewind_to="4it", levels=1), tmp_path, progress=False)
    theta_k, init = r.weights(which="rewind"), r.weights(which="init")
    assert not torch.equal(theta_k["fc1.weight"], init["fc1.weight"])
    assert r.level_metrics(1)["start_step"] == 4
    start = r.weights(1, which="start")
    assert all(torch.equal(start[k], theta_k[k]) for k in theta_k)
    assert list(r.history().query("level == 1")["step"]) == [8, 16]


def test_excluded_layer_is_never_pruned(tmp_path):
    r = run(
        small(**{"prune.exclude": ["output"], "prune.layer_amounts": {}}, levels=1),
        tmp_path,
        progress=False,
    )
    assert "fc3.weight" not in r.mask(1)
    assert (
        int(r.mask(1)["fc1.weight"].sum())
        == expected_kept(r.mask(0)["fc1.weight"].numel(), 0.2, 1)[1]
    )


def test_a_directory_holding_another_config_is_refused(tmp_path):
    r = run(small(levels=0), tmp_path, progress=False)
    other = small(**{"train.lr": 0.5})
    before = (r.path / "config.json").read_bytes()
    with pytest.raises(StoreError, match="different config .*train"):
        from maskstudy.runs.store import create_run

        create_run(r.path, other)
    assert (r.path / "config.json").read_bytes() == before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rewind_to": "16it"}, "not before the end of training"),
        ({"prune.layer_amounts": {"fc9.weight": 0.1}}, "not a prunable tensor.*fc1.weight"),
        ({"prune.exclude": ["bias"]}, "not a prunable tensor"),
    ],
)
def test_bad_configs_fail_before_anything_trains(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        run(small(**changes), tmp_path, progress=False)
    assert not any((p / "levels").exists() for p in tmp_path.iterdir())


def test_cli_runs_a_preset_and_prints_the_directory(tmp_path, capsys):
    args = [
        "run",
        "--preset",
        "lenet300_digits",
        "--levels",
        "1",
        "--epochs",
        "1",
        "--set",
        "train.batch_size=200",
        "prune.amount=0.3",  # several after one flag
        "--out",
        str(tmp_path),
        "--set",
        "seed=4",  # and the flag again
        "--quiet",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    path = out.strip().splitlines()[-1].removeprefix("run directory: ")
    r = open_run(path)
    assert r.levels == [0, 1]
    assert r.config.train.batch_size == 200 and r.config.data.name == "digits"
    assert r.config.prune.amount == 0.3 and r.config.seed == 4
    info = json.loads((r.path / "config.json").read_text())
    assert info["versions"]["torch"] == torch.__version__


def test_cli_says_where_a_run_trains_resumes_and_stopped(tmp_path, capsys, monkeypatch):
    args = ["run", "--preset", "lenet300_digits", "--levels", "1", "--epochs", "1"]
    args += ["--set", "train.batch_size=200", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1].removeprefix("run directory: ")
    (level_dir(path, 1) / "DONE").unlink()
    assert main(args) == 0
    err = capsys.readouterr().err.splitlines()
    name = path.rsplit("/", 1)[-1]
    assert err[0] == f"resuming run {name} at level 1 (levels done: [0]); run directory: {path}"
    assert main(args) == 0
    assert (
        capsys.readouterr().err.splitlines()[0] == f"run directory: {path} (complete: levels 0-1)"
    )

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr("maskstudy.runs.run.run_group", interrupted)
    assert main([*args[:4], "2", *args[5:]]) == 130
    err = capsys.readouterr().err
    assert f"\nrun directory: {path}\n" in err and "interrupted" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--preset", "nope"], "unknown preset 'nope'; presets: .*lenet300_mnist_lth"),
        (
            ["run", "--preset", "lenet300_digits", "--set", "train.lrr=1"],
            "unknown config field 'train.lrr'",
        ),
        (
            ["run", "--preset", "lenet300_digits", "--set", "prune.amount=1.5"],
            "strictly between 0 and 1",
        ),
        (["run", "--preset", "lenet300_digits", "--levels", "-1"], "levels = -1"),
        (
            ["run", "--preset", "lenet300_digits", "--set", "regime=prune"],
            "regime = 'prune'.*rewind",
        ),
        (
            ["run", "--preset", "lenet300_digits", "--set", "prune.criterion=big"],
            "valid criterions: .*magnitude",
        ),
        (
            ["run", "--preset", "lenet300_digits", "--set", "model.name=mlp"],
            "valid models: .*lenet5",
        ),
    ],
)
def test_cli_errors_name_the_problem(tmp_path, capsys, args, message):
    assert main([*args, "--out", str(tmp_path)]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not any(tmp_path.iterdir())


def test_presets_lists_the_papers_hyperparameters(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in [
        "lenet300_mnist_lth",
        "lenet5_mnist",
        "conv2_cifar10_lth",
        "conv4_cifar10_lth",
        "conv6_cifar10_lth",
        "resnet20_cifar10_rewind",
        "vgg19_cifar10_rewind",
    ]:
        assert name in out
    assert "adam lr=0.0012" in out and "batch=60" in out and "duration=50000it" in out


def test_mnist_preset_on_real_data(shared_data, tmp_path):
    r = run(
        small().replace(
            {
                "data": {"name": "mnist"},
                "model.width": 0.1,
                "train.duration": "200it",
                "train.eval_every": "200it",
                "train.batch_size": 60,
                "levels": 1,
            }
        ),
        tmp_path,
        data_root=shared_data,
        progress=False,
    )
    acc = r.metrics()["test_acc"]
    assert acc.iloc[0] > 0.8 and acc.iloc[1] > 0.8  # 10%-width LeNet, 200 steps: ~86% / ~88%


def test_a_run_trained_by_another_process_is_refused_and_left_alone(tmp_path):
    cfg = small(levels=1)
    held = RunLock(tmp_path / cfg.run_id())
    assert held.acquire()  # flock is per open file: a second open in this process conflicts too
    try:
        with pytest.raises(StoreError, match="being trained by another process"):
            run(cfg, tmp_path, progress=False)
        assert [p.name for p in (tmp_path / cfg.run_id()).iterdir()] == [".lock"]
    finally:
        held.release()
    assert run(cfg, tmp_path, progress=False).levels == [0, 1]


def test_a_refused_config_leaves_no_directory_behind(tmp_path):
    with pytest.raises(ConfigError):
        run(small(rewind_to="1000ep"), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_in_a_log_each_level_is_one_line_not_a_bar(tmp_path):
    """stderr not a terminal (Slurm logs, pipes): one line per level, never a \\r bar update."""
    import subprocess
    import sys

    args = ["run", "--preset", "lenet300_digits", "--levels", "2", "--epochs", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "maskstudy.cli", *args, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if " level " in line]
    pattern = r"lenet300_100-digits-magnitude-rewind-s0-\w+ level (\d): [\d.]+ % remaining, test acc [\d.]+ %, [\d.]+ s"
    assert [re.fullmatch(pattern, line).group(1) for line in lines] == ["0", "1", "2"]
