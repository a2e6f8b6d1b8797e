"""Sweep files, executors (local pool, submitit), status, idempotence, locks, interruption."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maskstudy import open_run, open_sweep
from maskstudy.cli import main
from maskstudy.data import from_config
from maskstudy.errors import ConfigError, StoreError
from maskstudy.runs import lock
from maskstudy.runs.discover import status_of
from maskstudy.runs.executors import Ray, available_devices, run_sweep
from maskstudy.runs.lock import RunLock
from maskstudy.runs.sweep import parse_sweep
from maskstudy.runs.table import ALIASES, config_columns
from maskstudy.runs.tasks import plan_tasks
from maskstudy.train import evaluate

BASE = """
levels = 2
[base]
data.name = "synthetic"
data.synthetic_shape = [1, 8, 8]
data.synthetic_size = 256
model.width = 0.2
train.optimizer = "sgd"
train.lr = 0.05
train.momentum = 0.9
train.batch_size = 32
train.duration = "{duration}"
train.eval_every = "{duration}"
"prune.layer_amounts" = {{output = 0.1}}
"""


def sweep_text(grid: str = "", seeds: str = "[0, 1]", duration: str = "8it") -> str:
    return f"seeds = {seeds}\n" + BASE.format(duration=duration) + grid


CRITERIA_GRID = '[grid]\n"prune.criterion" = ["magnitude", "random"]\n'


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(*args: str, cwd: Path | None = None, **kw) -> subprocess.Popen:
    """The command line in its own process, with Ctrl-C's default action: a test runner's
    worker (pytest-xdist) ignores SIGINT, and a child would inherit that."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "maskstudy.cli", *args]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw,
    )  # fmt: skip


# --- sweep files --------------------------------------------------------------------------------
def test_grid_tied_and_seeds_expand_to_the_cartesian_product():
    text = sweep_text(
        CRITERIA_GRID + 'regime = ["rewind", "reinit_prune"]\n'
        '[[tied]]\n"prune.amount" = [0.2, 0.5]\ntrain.lr = [0.1, 0.01]\n',
        seeds="[0, 1, 2]",
    )
    spec = parse_sweep(text)
    assert len(spec.configs) == 2 * 2 * 2 * 3
    pairs = {(c.prune.amount, c.train.lr) for c in spec.configs}
    assert pairs == {(0.2, 0.1), (0.5, 0.01)}  # tied axes vary together
    assert {(c.prune.criterion, c.regime, c.seed) for c in spec.configs} == {
        (a, b, s)
        for a in ("magnitude", "random")
        for b in ("rewind", "reinit_prune")
        for s in (0, 1, 2)
    }
    first = spec.configs[0]
    assert (
        first.levels == 2
        and first.train.momentum == 0.9
        and first.prune.layer_amounts == {"output": 0.1}
    )
    assert first.data.synthetic_shape == (1, 8, 8)
    assert spec.axes == ("prune.amount", "prune.criterion", "regime", "train.lr", "seed")


def test_preset_is_the_base_and_nested_tables_equal_dotted_keys():
    spec = parse_sweep('preset = "lenet300_digits"\n[base.train]\nlr = 0.5\n')
    dotted = parse_sweep('preset = "lenet300_digits"\n[base]\n"train.lr" = 0.5\n')
    assert spec.configs == dotted.configs and spec.configs[0].train.lr == 0.5
    assert spec.configs[0].data.name == "digits"


@pytest.mark.parametrize(
    "text,match",
    [
        ("seed = [1]", r"key\(s\) \['seed'\] \(did you mean 'seeds'\?\); allowed: preset"),
        ("[grid]\nregime = 'rewind'", "axis 'regime' must be a non-empty list"),
        (
            "[[tied]]\nregime = ['rewind', 'finetune']\nseed = [1]",
            "tied axes must have equal lengths",
        ),
        ("[grid]\n'train.lrate' = [0.1]", "train.lrate"),
        ("[grid]\nregime = ['rewind', 'rewind']", "the same run more than once"),
        ("seeds = [0]\n[grid]\nseed = [1]", "not both"),
        ("preset = 'nope'", "nope"),
        ("[grid\n", "not valid TOML"),
    ],
)
def test_bad_sweep_files_name_the_problem(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_sweep(text, "my.toml")


def test_plan_groups_seeds_into_replica_tasks():
    spec = parse_sweep(sweep_text(CRITERIA_GRID, seeds="[0, 1, 2, 3, 4]"))
    tasks = plan_tasks(spec.configs)
    assert [len(t) for t in tasks] == [5, 5]  # lenet300: side by side by default
    assert all(len({c.prune.criterion for c in t}) == 1 for t in tasks)
    assert [len(t) for t in plan_tasks(spec.configs, replicas=2)] == [2, 2, 1, 2, 2, 1]
    assert [len(t) for t in plan_tasks(spec.configs, replicas=1)] == [1] * 10
    assert [len(t) for t in plan_tasks(spec.configs, jobs=4)] == [3, 2, 3, 2]  # 4 workers busy
    assert [len(t) for t in plan_tasks(spec.configs, jobs=20)] == [1] * 10
    big = parse_sweep(sweep_text('[grid]\n"model.name" = ["vgg11"]\n'))
    assert [len(t) for t in plan_tasks(big.configs)] == [1, 1]
    conv = parse_sweep(sweep_text('[grid]\n"model.name" = ["lenet5"]\n', seeds="[0, 1, 2]"))
    assert [len(t) for t in plan_tasks(conv.configs)] == [1, 1, 1]  # no faster side by side
    with pytest.raises(ConfigError, match="replicas = 0"):
        plan_tasks(spec.configs, replicas=0)


def test_runs_spread_over_every_visible_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert available_devices(None) == ["cuda:0", "cuda:1", "cuda:2"]
    assert available_devices("cuda:1") == ["cuda:1"]
    assert available_devices("cpu") == ["cpu"]


# --- running, reading, resuming -------------------------------------------------------------------
@pytest.fixture(scope="module")
def done_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    path = write(root, sweep_text(CRITERIA_GRID))
    outcomes = run_sweep(path, root / "out", progress=False)
    return root, path, outcomes


def test_sweep_runs_everything_into_ordinary_run_dirs(done_sweep):
    root, path, outcomes = done_sweep
    assert outcomes == {"trained": 4}
    sweep = open_sweep(root / "out")
    assert (root / "out" / "sweep.toml").read_text() == path.read_text()
    assert len(sweep.runs) == 4 and all(r.levels == [0, 1, 2] for r in sweep.runs)
    status = sweep.status()
    assert list(status["state"]) == ["done"] * 4 and list(status["levels"]) == ["3/3"] * 4


def test_select_picks_runs_by_column_and_a_run_gives_its_ready_model(done_sweep):
    sweep = open_sweep(done_sweep[0] / "out")
    magnitude = sweep.select(criterion="magnitude")
    assert [r.config.prune.criterion for r in magnitude] == ["magnitude"] * 2
    assert [r.config.seed for r in sweep.select(criterion="random", seed=1)] == [1]
    assert len(sweep.select(seed=[0, 1], prune__scope="layer")) == 4
    with pytest.raises(ConfigError, match="no column 'critrion' \\(did you mean 'criterion'"):
        sweep.select(critrion="magnitude")
    run = sweep.select(criterion="magnitude", seed=0)[0]
    net = run.model(2)  # the level's weights, its mask applied, eval mode
    assert not net.training
    params = dict(net.named_parameters())
    for name, m in run.mask(2).items():
        assert (
            torch.equal(params[name].detach(), run.weights(2)[name]) and not params[name][~m].any()
        )
    _, accuracy = evaluate(net, from_config(run.config.data).test)
    assert accuracy == run.level_metrics(2)["test_acc"]  # what the level recorded


def test_a_sweep_logs_one_line_per_completed_level_when_not_on_a_terminal(tmp_path):
    path = write(tmp_path, sweep_text(CRITERIA_GRID, seeds="[0]"))
    done = subprocess.run(
        [sys.executable, "-m", "maskstudy.cli", "sweep", str(path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    lines = sorted(line for line in done.stderr.splitlines() if " level " in line)
    assert len(lines) == 2 * 3  # 2 runs × levels 0–2, each once
    assert all(
        re.fullmatch(r"\S+ level \d: [\d.]+ % remaining, test acc [\d.]+ %, [\d.]+ s", x)
        for x in lines
    )


def test_on_a_terminal_the_sweep_bar_names_the_level_finished_last(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("maskstudy.runs.executors.interactive", lambda: True)
    path = write(tmp_path, sweep_text(CRITERIA_GRID, seeds="[0]"))
    run_sweep(path, tmp_path / "out", jobs=1, progress=True)
    bar = capsys.readouterr().err.split("\r")[-2]  # the bar's last refresh (tqdm writes to stderr)
    assert "6/6" in bar and "runs 2/2;" in bar
    assert re.search(r"-s0-\w+ level 2: [\d.]+ % remaining, test acc [\d.]+ %", bar)


def test_frame_is_one_row_per_run_and_level_with_config_columns(done_sweep):
    sweep = open_sweep(done_sweep[0] / "out")
    frame = sweep.frame()
    assert len(frame) == 4 * 3
    for column in [
        "run_id",
        "criterion",
        "regime",
        "seed",
        "level",
        "test_acc",
        "test_loss",
        "percent_remaining",
        "density[fc1.weight]",
    ]:
        assert column in frame.columns, column
    assert sorted(frame.groupby("criterion").size().items()) == [("magnitude", 6), ("random", 6)]
    last = frame[frame.level == 2].iloc[0]
    assert last["density[fc1.weight]"] == pytest.approx(0.64, abs=0.005)
    assert last["density[fc3.weight]"] == pytest.approx(0.81, abs=0.01)
    long = sweep.frame(long=True)
    assert len(long) == 4 * 3 * 3 and set(long["layer"]) == {
        "fc1.weight",
        "fc2.weight",
        "fc3.weight",
    }
    row = long[(long.run_id == last.run_id) & (long.level == 2) & (long.layer == "fc1.weight")]
    assert row["density"].item() == last["density[fc1.weight]"]


def test_frame_keeps_the_columns_that_tell_runs_apart_unless_asked_for_all(done_sweep):
    sweep = open_sweep(done_sweep[0] / "out")
    short, full = sweep.frame(), sweep.frame(all_columns=True)
    config = set(config_columns(sweep.runs[0]))
    kept = config & set(short.columns)
    # the short names stay; their dotted twins, the fields every run shares and the (empty)
    # branch columns go; each field left varies across the sweep
    assert {"run_id", "model", "dataset", "criterion", "scope", "regime", "seed"} <= kept
    assert not {"prune.criterion", "model.name", "train.lr", "branch", "parent"} & kept
    assert all(
        short[c].astype(str).nunique() > 1 for c in kept - set(ALIASES.values()) - {"run_id"}
    )
    assert {"prune.criterion", "train.lr", "branch"} <= set(full.columns)
    dropped = set(full.columns) - set(short.columns)
    assert dropped <= config  # every metric stays, constant or not
    assert short.equals(full.drop(columns=sorted(dropped, key=list(full.columns).index)))


def test_second_call_skips_completed_runs_without_touching_them(done_sweep):
    root, path, _ = done_sweep
    stamps = {
        p: p.stat().st_mtime_ns
        for p in (root / "out").rglob("*")
        if p.is_file() and p.name != ".lock"
    }
    assert run_sweep(path, root / "out", progress=False) == {"done": 4}
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


def test_a_different_sweep_file_is_refused_and_extend_keeps_the_old_one(done_sweep, tmp_path):
    root, path, _ = done_sweep
    other = write(tmp_path, sweep_text(CRITERIA_GRID, seeds="[0, 1, 2]"))
    with pytest.raises(StoreError, match="already holds a different sweep"):
        run_sweep(other, root / "out", progress=False)
    copy = tmp_path / "copy"
    run_sweep(path, copy, progress=False, replicas=1)
    outcomes = run_sweep(other, copy, progress=False, extend=True)
    assert outcomes == {"done": 4, "trained": 2}
    assert (copy / "sweep.1.toml").read_text() == path.read_text()
    assert len(open_sweep(copy).runs) == 6


def test_a_file_with_the_same_runs_reruns_the_sweep_and_the_stored_file_is_kept(done_sweep):
    """Comments, layout and old field names do not make another sweep: no --extend needed."""
    root, path, _ = done_sweep
    stored = (root / "out" / "sweep.toml").read_text()
    text = "# the same runs, commented\n" + path.read_text().replace("\n", "\n\n")
    edited = write(root, text, name="edited.toml")
    assert run_sweep(edited, root / "out", progress=False) == {"done": 4}
    assert (root / "out" / "sweep.toml").read_text() == stored
    assert not list((root / "out").glob("sweep.*.toml"))


def test_seeds_split_a_sweep_over_calls_without_another_sweep_file(tmp_path, capsys):
    """--seeds trains those seeds only, the others stay planned (pending) and a later call
    trains them into the same directory: the runs are those of one call, byte for byte."""
    path = write(tmp_path, sweep_text(CRITERIA_GRID, seeds="[0, 1, 2]"))
    out = tmp_path / "out"
    assert (
        main(["sweep", str(path), "--out", str(out), "--seeds", "2", "--quiet", "--jobs", "1"]) == 0
    )
    status = open_sweep(out).status()
    assert sorted(status.loc[status["state"] == "done", "seed"]) == [2, 2]
    assert set(status.loc[status["state"] != "done", "state"]) == {"pending"}
    assert "6 runs: 2 done, 4 pending" in capsys.readouterr().out
    assert run_sweep(path, out, progress=False, seeds=[0, 1], jobs=1) == {"trained": 4}
    whole = tmp_path / "whole"
    run_sweep(path, whole, progress=False, jobs=1)
    for run in open_sweep(whole).runs:
        for level in run.levels:
            one_go, split = (
                run.path / "levels" / f"{level:02d}",
                out / run.run_id / "levels" / f"{level:02d}",
            )
            for file in ("final.safetensors", "mask.safetensors"):
                assert (one_go / file).read_bytes() == (split / file).read_bytes()
    with pytest.raises(ConfigError, match=r"seeds \[3\]: the sweep file's seeds are \[0, 1, 2\]"):
        run_sweep(path, out, progress=False, seeds=[3])


def test_a_failure_that_cannot_be_recorded_still_fails_the_sweep(tmp_path, monkeypatch, capsys):
    def full_disk(path, data):
        raise StoreError(f"could not write {path}: No space left on device")

    monkeypatch.setattr(lock, "write_atomic", full_disk)  # error.txt cannot be written
    text = sweep_text('[grid]\n"data.name" = ["mnist"]\n', seeds="[0]")
    path = write(tmp_path, text)
    args = ["--out", str(tmp_path / "out"), "--data", str(tmp_path / "no-data"), "--quiet"]
    assert main(["sweep", str(path), *args]) == 1
    out = capsys.readouterr()
    assert "this call: 1 failed" in out.out and "No space left on device" in out.err
    assert open_sweep(tmp_path / "out").status()["state"].tolist() == ["pending"]


def test_a_failing_run_records_its_error_and_the_others_go_on(tmp_path, capsys):
    # config errors stop the sweep before it starts (tests/test_bad_input.py); files missing
    # where the sweep runs are each run's own failure, as a cluster's nodes may hold them
    text = sweep_text('[grid]\n"data.name" = ["synthetic", "mnist"]\n', seeds="[0]")
    path = write(tmp_path, text)
    args = ["--out", str(tmp_path / "out"), "--data", str(tmp_path / "no-data"), "--quiet"]
    assert main(["sweep", str(path), *args]) == 1
    status = open_sweep(tmp_path / "out").status()
    failed = status[status["data.name"] == "mnist"].iloc[0]
    assert failed["state"] == "failed"
    assert failed["detail"].startswith("DataError: MNIST file train-images-idx3-ubyte.gz not found")
    assert "Traceback" in (tmp_path / "out" / failed["run_id"] / "error.txt").read_text()
    assert status[status["data.name"] == "synthetic"]["state"].item() == "done"
    assert main(["status", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "2 runs: 1 done, 1 failed" in out


def test_status_and_ls_read_a_folder_of_runs_and_show_the_final_accuracy(
    done_sweep, tmp_path, capsys
):
    sweep = open_sweep(done_sweep[0] / "out")
    folder = tmp_path / "runs"  # the sweep's runs, as a plain folder (no sweep.toml)
    for stored in sweep.runs[:3]:
        shutil.copytree(stored.path, folder / stored.run_id)
    shutil.rmtree(folder / sweep.runs[2].run_id / "levels" / "02")  # one run left partial
    status = status_of(folder)
    assert status["run_id"].tolist() == sorted(r.run_id for r in sweep.runs[:3])
    assert {"prune.criterion", "seed"} <= set(status.columns)  # the fields that vary
    finals = {r.run_id: r.level_metrics(2)["test_acc"] for r in sweep.runs[:2]}
    for row in status.itertuples():
        if row.run_id in finals:
            assert (row.state, row.levels, row.test_acc) == ("done", "3/3", finals[row.run_id])
        else:  # the partial run shows its last completed level
            stored = open_run(folder / row.run_id)
            assert (row.state, row.levels) == ("partial", "2/3")
            assert row.test_acc == stored.level_metrics(1)["test_acc"]
            assert row.percent_remaining == stored.level_metrics(1)["percent_remaining"]
    assert status_of(done_sweep[0] / "out")["test_acc"].notna().all()  # a sweep's status too
    assert main(["ls", str(folder)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "test_acc" in listed[0] and "state" not in listed[0] and len(listed) == 4
    assert main(["status", str(folder)]) == 0
    assert "3 runs: 2 done, 1 partial" in capsys.readouterr().out


def test_status_shows_partial_pending_and_running(tmp_path):
    path = write(tmp_path, sweep_text(CRITERIA_GRID, seeds="[0]"))
    run_sweep(path, tmp_path / "out", progress=False)
    sweep = open_sweep(tmp_path / "out")
    spec = sweep.spec
    partial, other = spec.configs
    for level in (1, 2):
        for f in (tmp_path / "out" / partial.run_id() / "levels" / f"{level:02d}").iterdir():
            f.unlink()
    (tmp_path / "out" / other.run_id()).rename(tmp_path / "moved")
    status = sweep.status().set_index("run_id")
    assert (
        status.loc[partial.run_id(), "state"] == "partial"
        and status.loc[partial.run_id(), "levels"] == "1/3"
    )
    assert status.loc[other.run_id(), "state"] == "pending"
    with RunLock(tmp_path / "out" / partial.run_id()):
        assert (
            open_sweep(tmp_path / "out").status().set_index("run_id").loc[partial.run_id(), "state"]
            == "running"
        )
        assert run_sweep(path, tmp_path / "out", progress=False) == {"busy": 1, "trained": 1}
    assert run_sweep(path, tmp_path / "out", progress=False) == {"done": 1, "trained": 1}


def assert_same_runs(out: Path, reference: dict) -> None:
    """Every run under ``out`` has its reference's masks and weights, bit for bit."""
    for run in open_sweep(out).runs:
        ref = reference[run.run_id]
        assert run.levels == ref.levels
        for level in ref.levels:
            for a, b in (
                (run.mask(level), ref.mask(level)),
                (run.weights(level), ref.weights(level)),
            ):
                assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_worker_pool_and_submitit_local_give_the_in_process_results(done_sweep, tmp_path):
    root, path, _ = done_sweep
    reference = {r.run_id: r for r in open_sweep(root / "out").runs}
    assert run_sweep(path, tmp_path / "pool", jobs=2, progress=False) == {"trained": 4}
    assert run_sweep(
        path,
        tmp_path / "slurm",
        executor="slurm",
        cluster="local",
        slurm={"timeout_min": 5},
        progress=False,
    ) == {"trained": 4}
    for out in ("pool", "slurm"):
        assert_same_runs(tmp_path / out, reference)


@pytest.mark.slow  # several processes: run with `pytest -m slow` (CI runs both)
def test_a_local_ray_instance_gives_the_in_process_results(done_sweep, tmp_path):
    ray = pytest.importorskip(
        "ray", reason="ray does not install here: pip install 'maskstudy[ray]'"
    )
    root, path, _ = done_sweep
    reference = {r.run_id: r for r in open_sweep(root / "out").runs}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert run_sweep(path, tmp_path / "ray", executor=Ray(), progress=False) == {"trained": 4}
    finally:
        ray.shutdown()
    assert_same_runs(tmp_path / "ray", reference)
    assert main(["status", str(tmp_path / "ray")]) == 0


def test_bad_slurm_resources_and_executor_are_refused(tmp_path):
    path = write(tmp_path, sweep_text(seeds="[0]"))
    with pytest.raises(ConfigError, match="executor = 'dask'"):
        run_sweep(path, tmp_path / "a", executor="dask", progress=False)
    args = ["sweep", str(path), "--out", str(tmp_path / "a"), "--executor", "dask"]
    assert main(args) == 2  # the CLI says so too, in one line (tests/test_bad_input.py's style)
    with pytest.raises(ConfigError, match=r"\[slurm\] resources"):
        run_sweep(
            path,
            tmp_path / "b",
            executor="slurm",
            cluster="local",
            slurm={"gpus_pre_node": 1},
            progress=False,
        )


# --- processes: interruption and concurrency ------------------------------------------------------
def _wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.slow  # several processes: run with `pytest -m slow` (CI runs both)
def test_ctrl_c_stops_cleanly_and_the_next_call_resumes_to_the_same_result(tmp_path, done_sweep):
    path = write(tmp_path, sweep_text(CRITERIA_GRID, duration="60it"))
    out = tmp_path / "out"
    proc = cli("sweep", str(path), "--out", str(out), "--no-replicas", "--quiet")
    _wait_for(lambda: any(out.glob("*/levels/*/DONE")))  # 11 of 12 levels still to train
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    assert "Traceback" not in err
    status = open_sweep(out).status()
    assert (status["state"] != "done").any() and not (status["state"] == "failed").any()
    finish = cli("sweep", str(path), "--out", str(out), "--no-replicas", "--quiet")
    stdout, _ = finish.communicate(timeout=300)
    assert finish.returncode == 0 and "4 runs: 4 done" in stdout
    straight = cli(
        "sweep", str(path), "--out", str(tmp_path / "straight"), "--no-replicas", "--quiet"
    )
    straight.communicate(timeout=300)
    runs = {r.run_id: r for r in open_sweep(tmp_path / "straight").runs}
    for run in open_sweep(out).runs:
        for level in (0, 1, 2):
            a, b = run.weights(level), runs[run.run_id].weights(level)
            assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # several processes: run with `pytest -m slow` (CI runs both)
def test_two_sweep_processes_on_one_directory_never_train_a_run_twice(tmp_path):
    path = write(tmp_path, sweep_text(CRITERIA_GRID, seeds="[0, 1, 2]", duration="30it"))
    out = tmp_path / "out"
    procs = [
        cli("sweep", str(path), "--out", str(out), "--no-replicas", "--quiet") for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    trained = 0
    for text in outputs:
        line = next(x for x in text.splitlines() if x.startswith("this call:"))
        trained += sum(
            int(part.split()[0])
            for part in line[len("this call:") :].split(",")
            if "trained" in part
        )
    assert trained == 6
    assert list(open_sweep(out).status()["state"]) == ["done"] * 6
