"""Nothing lost: SIGKILL anywhere then resume, failing writes, divergence, dead lock holders.

A kill point is the k-th *event* of an uninterrupted run: a training step, or a file about to be
renamed into place / just renamed (``write_atomic``'s last act). A forked child runs the config
with those events hooked and SIGKILLs itself at event k: no ``finally``, no ``atexit``, exactly as
``kill -9`` or a preempted cluster job. The test process then reruns the config and demands
every level, bit-identical to the uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import torch
from conftest import TINY_CONV_BASE

import maskstudy.train.loop as loop
from maskstudy import open_run, open_sweep
from maskstudy.data import from_config
from maskstudy.errors import StoreError
from maskstudy.files import temp_files
from maskstudy.runs.config import DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig
from maskstudy.runs.executors import run_sweep
from maskstudy.runs.lock import DIVERGED_FILE, RunLock, is_locked, record_error, run_state
from maskstudy.runs.run import run
from maskstudy.runs.store import level_dir
from maskstudy.runs.sweep import prepare_sweep_dir
from maskstudy.runs.tasks import execute_task
from maskstudy.runs.verify import is_damaged, verify
from maskstudy.train import Diverged

LEVELS = 3


def small(**changes) -> RunConfig:
    """Four levels of 12 steps on 256 synthetic examples, rewinding to step 3 (θk is saved)."""
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.2),
        train=TrainConfig(lr=0.05, momentum=0.9, batch_size=32, duration="12it", eval_every="6it"),
        prune=PruneConfig(amount=0.2, layer_amounts={"output": 0.1}),
        rewind_to="3it",
        levels=LEVELS,
    )
    return cfg.replace(changes) if changes else cfg


CFG = small()
DATA = from_config(CFG.data, None, "cpu")


# --- events ------------------------------------------------------------------------------------
@contextmanager
def hooked(on_event: Callable[[str], None]) -> Iterator[None]:
    """Call ``on_event(label)`` at every training step and around every atomic rename."""
    real_check, real_replace = loop._check_finite, os.replace
    steps = iter(range(10**9))

    def check(step: int, values: torch.Tensor) -> None:
        on_event(f"step {next(steps)} (absolute step {step})")
        real_check(step, values)

    def replace(src, dst, **kw) -> None:
        dst = Path(dst)
        where = f"{dst.parent.name}/{dst.name}" if dst.parent.parent.name == "levels" else dst.name
        on_event(f"before renaming {where}")
        real_replace(src, dst, **kw)
        on_event(f"after renaming {where}")

    loop._check_finite, os.replace = check, replace
    try:
        yield
    finally:
        loop._check_finite, os.replace = real_check, real_replace


def events_of_job(job: Callable[[], object]) -> list[str]:
    """The events of an uninterrupted call of ``job``, in order."""
    seen: list[str] = []
    with hooked(seen.append):
        job()
    return seen


def events_of(cfg: RunConfig, out: Path) -> list[str]:
    """The events of an uninterrupted run, in order (the run is left in ``out``)."""
    return events_of_job(lambda: run(cfg, out, progress=False, data=DATA))


def killed_at(job: Callable[[], object], k: int) -> bool:
    """Call ``job`` in a forked child that SIGKILLs itself at its k-th event; True if it died
    so, False if it finished first. A child that raised exits with status 3."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 3
        try:
            count = iter(range(10**9))

            def maybe_die(_: str) -> None:
                if next(count) == k:
                    os.kill(os.getpid(), signal.SIGKILL)

            with hooked(maybe_die):
                job()
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the child raised instead of being killed"
    return False


def run_killed_at(cfg: RunConfig, out: Path, k: int) -> bool:
    """Run ``cfg`` into ``out``, killed at its k-th event (see ``killed_at``)."""
    return killed_at(lambda: run(cfg, out, progress=False, data=DATA), k)


# --- the uninterrupted reference -----------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[object, list[str]]:
    out = tmp_path_factory.mktemp("reference")
    events = events_of(CFG, out)
    return open_run(out / CFG.run_id()), events


def assert_same_run(run_a, run_b, levels) -> None:
    """Masks, θ0, θk, every level's weights, metrics (bar timing) and curves are bit-identical."""
    for which in ("init", "rewind"):
        a, b = run_a.weights(which=which), run_b.weights(which=which)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), which
    for level in levels:
        for a, b in [
            (run_a.mask(level), run_b.mask(level)),
            (run_a.weights(level), run_b.weights(level)),
        ]:
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), level
        ma, mb = run_a.level_metrics(level), run_b.level_metrics(level)
        ma.pop("seconds"), mb.pop("seconds")
        assert ma == mb, level
    history_a, history_b = run_a.history(), run_b.history()
    assert history_a[history_a.level.isin(levels)].equals(history_b[history_b.level.isin(levels)])


def completed_at(events: list[str], k: int) -> list[int]:
    """Levels whose DONE is in place when the run dies at event k."""
    return [
        int(e.split("/")[0].split()[-1])
        for e in events[: k + 1]
        if e.startswith("after renaming") and e.endswith("/DONE")
    ]


def kill_and_resume(tmp_path: Path, reference, k: int) -> str:
    """Kill at event k, check what survived, resume, compare with the reference. The event's label."""
    ref, events = reference
    out = tmp_path / f"kill{k}"
    assert run_killed_at(CFG, out, k), f"event {k} ({events[k]}) was never reached"
    path = out / CFG.run_id()
    survived = open_run(path).levels if (path / "config.json").is_file() else []
    assert survived == completed_at(events, k), events[k]  # no completed level lost or faked
    report = verify(out) if survived else None
    if report is not None:
        assert not is_damaged(report), report[report.status != "ok"].to_string()
        assert_same_run(open_run(path), ref, survived)  # and what survived reads back intact
    resumed = run(CFG, out, progress=False, data=DATA)
    assert resumed.levels == list(range(LEVELS + 1))
    report = verify(path)
    assert set(report.status) == {"ok"}, report[report.status != "ok"].to_string()
    assert not temp_files(path)
    assert_same_run(resumed, ref, resumed.levels)
    return events[k]


def test_the_reference_run_has_the_expected_events(reference):
    ref, events = reference
    assert ref.levels == [0, 1, 2, 3]
    assert sum(e.startswith("step") for e in events) == 4 * 12 - 3 * 3  # levels ≥ 1 start at k = 3
    renamed = [e.removeprefix("after renaming ") for e in events if e.startswith("after")]
    assert renamed[:3] == ["config.json", "init.safetensors", "config.json"]
    assert renamed[3:5] == ["rewind.safetensors", "config.json"]  # θk, saved after level 0
    level_files = ["mask.safetensors", "final.safetensors", "metrics.json"]
    for level in range(4):
        start = 5 + 5 * level
        assert renamed[start : start + 5] == [
            *(f"{level:02d}/{n}" for n in level_files),
            "history.jsonl",
            f"{level:02d}/DONE",
        ]
    assert len(renamed) == 25


@pytest.mark.parametrize(
    "label",
    ["step 20 (absolute step 11)", "before renaming 02/final.safetensors", "after renaming history.jsonl"],
)  # fmt: skip
def test_kill_and_resume_smoke(tmp_path, reference, label):
    _, events = reference
    k = events.index(label)  # the first: in level 1 / level 2 / level 0 before its DONE
    assert kill_and_resume(tmp_path, reference, k) == label


@pytest.mark.slow
def test_kill_at_every_event_then_resume(tmp_path, reference, capsys):
    _, events = reference
    survived = [kill_and_resume(tmp_path, reference, k) for k in range(len(events))]
    with capsys.disabled():
        print(f"\nkill points tried: {len(events)}, survived: {len(survived)}")
    assert survived == events and len(events) == 25 * 2 + 39


def test_a_run_killed_twice_in_a_row_still_ends_identical(tmp_path, reference):
    ref, events = reference
    out = tmp_path / "twice"
    assert run_killed_at(CFG, out, events.index("before renaming 01/mask.safetensors"))
    assert [p.name[:17] for p in temp_files(out)] == [".mask.safetensors"]  # left behind ...
    assert run_killed_at(CFG, out, 5)  # ... and removed by the resume, which dies in level 1
    assert not temp_files(out) and open_run(out / CFG.run_id()).levels == [0]
    resumed = run(CFG, out, progress=False, data=DATA)
    assert_same_run(resumed, ref, resumed.levels)


# --- write failures -------------------------------------------------------------------------------
@contextmanager
def failing_writes(monkeypatch, names: set[str], code: int) -> Iterator[list[str]]:
    """Make write_atomic fail for targets named in ``names``: ENOSPC when the data is flushed to
    disk (a full disk), EACCES when the temp file is created (a read-only directory)."""
    failed: list[str] = []
    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync

    def target(tmp: str) -> str:
        return Path(tmp).name[1:].rsplit(".", 2)[0]  # ".<name>.<random>.tmp" → <name>

    def mkstemp(*args, prefix: str = "", **kw):
        if code == errno.EACCES and prefix[1:-1] in names:
            failed.append(prefix[1:-1])
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kw.get("dir"))
        return real_mkstemp(*args, prefix=prefix, **kw)

    def fsync(fd: int) -> None:
        name = target(os.readlink(f"/proc/self/fd/{fd}"))
        if code == errno.ENOSPC and name in names:
            failed.append(name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", mkstemp)
        patch.setattr(os, "fsync", fsync)
        yield failed


@pytest.fixture(scope="module")
def two_levels(tmp_path_factory) -> Path:
    """Levels 0 and 1 of CFG, finished (copied by each test before it damages anything)."""
    out = tmp_path_factory.mktemp("two")
    run(CFG.replace({"levels": 1}), out, progress=False, data=DATA)
    return out / CFG.run_id()


def file_bytes(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name open files")
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES], ids=["disk full", "read-only"])
@pytest.mark.parametrize(
    "name", ["mask.safetensors", "final.safetensors", "metrics.json", "history.jsonl", "DONE"]
)
def test_a_failed_write_names_the_file_and_loses_nothing(
    tmp_path, monkeypatch, reference, two_levels, name, code
):
    path = tmp_path / CFG.run_id()
    shutil.copytree(two_levels, path)
    before = file_bytes(path)
    with failing_writes(monkeypatch, {name}, code) as failed:
        with pytest.raises(StoreError) as err:
            run(CFG.replace({"levels": 2}), tmp_path, progress=False, data=DATA)
    assert failed == [name]
    where = path / name if name == "history.jsonl" else level_dir(path, 2) / name
    assert str(err.value) == f"could not write {where}: {os.strerror(code)}"
    run_now = open_run(path)
    assert run_now.levels == [0, 1]  # the half-written level 2 is not shown as complete
    after = file_bytes(path)
    untouched = [f for f in before if f not in ("config.json", "history.jsonl")]
    assert all(after[f] == before[f] for f in untouched)  # earlier levels: byte for byte
    assert_same_run(run_now, reference[0], [0, 1])  # ... and readable
    report = verify(path)
    assert not is_damaged(report) and not temp_files(path)
    assert report.query("level == 2").status.tolist() == ["incomplete"]
    fixed = run(CFG.replace({"levels": 2}), tmp_path, progress=False, data=DATA)  # disk freed
    assert fixed.levels == [0, 1, 2]
    assert_same_run(fixed, reference[0], [0, 1, 2])


def test_a_full_disk_fails_one_run_of_a_sweep_and_the_sweep_goes_on(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        'levels = 1\nseeds = [0, 1]\n[base]\ndata.name = "synthetic"\ndata.synthetic_size = 256\n'
        'model.width = 0.2\ntrain.batch_size = 32\ntrain.duration = "6it"\ntrain.eval_every = "6it"\n'
    )
    out = tmp_path / "out"
    with failing_writes(monkeypatch, {"final.safetensors"}, errno.ENOSPC) as failed:
        assert run_sweep(sweep, out, replicas=1, jobs=1, progress=False) == {"failed": 2}
    assert failed == ["final.safetensors"] * 2
    status = open_sweep(out).status()
    assert status.state.tolist() == ["failed", "failed"] and status.levels.tolist() == ["0/2"] * 2
    assert all("final.safetensors: No space left on device" in d for d in status.detail)
    assert run_sweep(sweep, out, replicas=1, jobs=1, progress=False) == {"trained": 2}
    assert open_sweep(out).status().state.tolist() == ["done", "done"]


def test_an_error_that_cannot_be_recorded_is_printed(tmp_path, monkeypatch, capsys):
    with failing_writes(monkeypatch, {"error.txt"}, errno.ENOSPC):
        record_error(tmp_path, ValueError("the original failure"))
    err = capsys.readouterr().err
    assert f"could not write {tmp_path / 'error.txt'}: No space left on device" in err
    assert "the run failed with ValueError: the original failure" in err
    assert not list(tmp_path.iterdir())


def test_a_read_only_sweep_directory_is_named(tmp_path, monkeypatch):
    def refuse(*args, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", refuse)
        with pytest.raises(
            StoreError, match=r"could not create the lock file .*\.lock: Permission"
        ):
            RunLock(tmp_path / "run").acquire()


# --- locks of killed processes, two sweeps starting at once ----------------------------------------
def test_a_killed_lock_holder_leaves_the_run_free(tmp_path):
    run_dir = tmp_path / "run"
    pid = os.fork()
    if pid == 0:
        try:
            RunLock(run_dir).acquire()
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and (run_dir / ".lock").is_file()
    assert not is_locked(run_dir) and run_state(run_dir, 2) == ("pending", 0, "")


def sweep_workers(pid: int) -> list[int]:
    """The pool workers among the children of process ``pid`` (Linux /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def is_alive(pid: int) -> bool:
    """True while any thread of ``pid`` runs. The main thread of a dying process can be a
    zombie while its other threads still exit and hold its files, and so its locks:
    the process is gone once every thread is gone or a zombie."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with suppress(FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
    return any(state not in ("Z", "X") for state in states)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")
def test_killing_a_sweep_ends_its_workers_and_its_runs_resume(tmp_path):
    (tmp_path / "long.toml").write_text(TINY_CONV_BASE.replace('"6it"', '"100000it"'))
    command = [sys.executable, "-m", "maskstudy.cli", "sweep", str(tmp_path / "long.toml")]
    sweep = subprocess.Popen([*command, "--out", str(tmp_path / "sweep"), "--jobs", "2", "--quiet"])
    deadline = time.monotonic() + 120
    while len(sweep_workers(sweep.pid)) < 2 or len(list(tmp_path.glob("sweep/*/.lock"))) < 2:
        assert time.monotonic() < deadline and sweep.poll() is None, "the sweep never started"
        time.sleep(0.2)
    workers = sweep_workers(sweep.pid)
    sweep.send_signal(signal.SIGTERM)  # the sweep's process alone, as `kill PID` or a scheduler
    sweep.wait(timeout=30)
    while any(map(is_alive, workers)):
        assert time.monotonic() < deadline, f"workers {workers} outlived their sweep"
        time.sleep(0.2)
    states = [run_state(d, 3)[0] for d in sorted(tmp_path.glob("sweep/conv2-*"))]
    assert states == ["pending", "pending"]  # locks released: a new sweep takes the runs up


def test_a_second_sweep_process_starting_mid_write_of_sweep_toml_joins_it(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('seeds = [0]\n[base]\ndata.name = "synthetic"\n')
    out = tmp_path / "out"
    out.mkdir()
    (out / ".sweep.toml.x1y2.tmp").write_text("")  # the other process is writing sweep.toml
    assert len(prepare_sweep_dir(sweep, out).configs) == 1
    (out / "notes.txt").write_text("mine")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a sweep directory"):
        prepare_sweep_dir(sweep, other)


# --- divergence --------------------------------------------------------------------------------------
def diverge_at(monkeypatch, call: int, replica: int = 0) -> None:
    """Make the training loop see a NaN loss at its ``call``-th step (counted from 0)."""
    real, calls = loop._check_finite, iter(range(10**9))

    def check(step: int, values: torch.Tensor) -> None:
        if next(calls) == call:
            values = values.clone()
            values[replica] = float("nan")
        real(step, values)

    monkeypatch.setattr(loop, "_check_finite", check)


def test_divergence_is_recorded_with_level_and_step_and_is_final(tmp_path, monkeypatch):
    diverge_at(monkeypatch, call=12 + 9 + 4)  # level 0: 12 steps, level 1: 9, then level 2's 5th
    with pytest.raises(Diverged):
        run(CFG, tmp_path, progress=False, data=DATA)
    path = tmp_path / CFG.run_id()
    record = json.loads((path / DIVERGED_FILE).read_text())
    assert (record["level"], record["step"]) == (2, 3 + 4)  # levels ≥ 1 start at k = 3
    assert "the loss is nan" in record["message"]
    assert open_run(path).levels == [0, 1] and not is_damaged(verify(path))
    stamps = {p: p.stat().st_mtime_ns for p in path.rglob("*")}
    with pytest.raises(
        StoreError, match=f"diverged on an earlier attempt .*level 2 step 7.*{DIVERGED_FILE}"
    ):
        run(CFG, tmp_path, progress=False, data=DATA)
    assert stamps == {p: p.stat().st_mtime_ns for p in path.rglob("*")}  # not retrained
    assert run_state(path, LEVELS)[:2] == ("diverged", 2)
    monkeypatch.undo()
    (path / DIVERGED_FILE).unlink()  # the documented way to try again
    assert run(CFG, tmp_path, progress=False, data=DATA).levels == [0, 1, 2, 3]


def test_a_diverging_replica_is_marked_alone_and_its_partners_finish(tmp_path, monkeypatch):
    cfgs = [CFG.replace({"seed": s, "levels": 1}) for s in (0, 1)]
    diverge_at(monkeypatch, call=12 + 2, replica=1)  # seed 1, level 1, third step
    assert execute_task(cfgs, tmp_path, device="cpu") == {
        cfgs[0].run_id(): "trained",
        cfgs[1].run_id(): "diverged",
    }
    assert not (tmp_path / cfgs[0].run_id() / DIVERGED_FILE).exists()
    record = json.loads((tmp_path / cfgs[1].run_id() / DIVERGED_FILE).read_text())
    assert (record["level"], record["step"]) == (1, 5)
    assert execute_task(cfgs, tmp_path, device="cpu") == {
        cfgs[0].run_id(): "done",
        cfgs[1].run_id(): "diverged",
    }


def test_a_sweep_with_a_diverging_learning_rate_goes_on_and_shows_it(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        'levels = 1\nseeds = [0]\n[base]\ndata.name = "synthetic"\ndata.synthetic_size = 256\n'
        'model.width = 0.2\ntrain.batch_size = 32\ntrain.duration = "6it"\ntrain.eval_every = "6it"\n'
        "[grid]\ntrain.lr = [0.05, 1e6]\n"
    )
    out = tmp_path / "out"
    assert run_sweep(sweep, out, progress=False) == {"trained": 1, "diverged": 1}
    status = open_sweep(out).status().set_index("train.lr")
    assert status.loc[0.05, "state"] == "done"
    assert status.loc[1e6, "state"] == "diverged" and status.loc[1e6, "levels"] == "0/2"
    assert status.loc[1e6, "detail"].startswith("level 0 step ")
    assert "the loss is nan" in status.loc[1e6, "detail"]
    assert run_sweep(sweep, out, progress=False) == {"done": 1, "diverged": 1}  # not retrained
