"""A run id means one result: the same files, byte for byte (bar the timings), whether its seed
trained grouped with others, alone, or in a group killed anywhere (inside a level, between two
members' saves) and resumed, grouped again or member by member."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_crash import DATA, events_of_job, killed_at, small
from test_sweep import sweep_text

from maskstudy import open_sweep
from maskstudy.runs.config import RunConfig
from maskstudy.runs.executors import run_sweep
from maskstudy.runs.run import run, run_group
from maskstudy.runs.store import CHECKPOINT_FILE

SEEDS = (0, 1)
CFGS = [small(seed=s, levels=2) for s in SEEDS]
EVERY_STEP = 1e-9  # checkpoint minutes: a checkpoint after every step, so kills land after one
TIMINGS = {"config.json": "created", "DONE": "seconds"}  # the only fields that may differ
LOCK = ".lock"  # an empty file that only ``run`` takes, not part of the results


def group(out: Path) -> list:
    return run_group(CFGS, out, progress=False, data=DATA, checkpoint_minutes=EVERY_STEP)


def alone(out: Path) -> list:
    return [run(c, out, progress=False, data=DATA) for c in CFGS]


def contents(run_dir: Path) -> dict[str, bytes | dict]:
    """Every file of a run by relative path: its bytes, or its JSON without the timing field."""
    files = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != LOCK):
        name = str(path.relative_to(run_dir))
        if path.name in TIMINGS:
            body = json.loads(path.read_text())
            body.pop(TIMINGS[path.name], None)
            files[name] = body
        else:
            files[name] = path.read_bytes()
    return files


def assert_same_bytes(out: Path, reference: Path, cfgs: list[RunConfig] = CFGS) -> None:
    for cfg in cfgs:
        got, want = contents(out / cfg.run_id()), contents(reference / cfg.run_id())
        assert got.keys() == want.keys(), cfg.run_id()
        differ = [name for name in want if got[name] != want[name]]
        assert not differ, f"{cfg.run_id()}: {differ}"
        assert not any(CHECKPOINT_FILE in name for name in got)  # removed when a level ends


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, list[str]]:
    """The group trained without interruption, and its events (steps, renames)."""
    out = tmp_path_factory.mktemp("group")
    return out, events_of_job(lambda: group(out))


def test_seeds_grouped_or_alone_write_the_same_bytes(reference, tmp_path):
    out, _ = reference
    alone(tmp_path)
    assert_same_bytes(tmp_path, out)


def kill_points(events: list[str]) -> list[int]:
    """24 events spread over the group's run, plus every point between two members' saves of a
    level (after the first member's DONE, before the second's) and after in-level checkpoints."""
    between = [k for k, e in enumerate(events) if e.startswith("after renaming") and "DONE" in e]
    inside = [k for k, e in enumerate(events) if e.endswith(f"/{CHECKPOINT_FILE}")]
    spread = list(range(0, len(events), max(1, len(events) // 24)))[:24]
    return sorted(set(spread) | set(between[::2]) | set(inside[::4]))


@pytest.mark.slow  # several processes: run with `pytest -m slow` (CI runs both)
def test_a_group_killed_anywhere_resumes_to_the_same_bytes(reference, tmp_path):
    ref, events = reference
    points = kill_points(events)
    assert len(points) >= 20
    labels = [events[k] for k in points]
    assert any("DONE" in label for label in labels) and any(CHECKPOINT_FILE in x for x in labels)
    for i, k in enumerate(points):
        out = tmp_path / f"kill{k}"
        assert killed_at(lambda out=out: group(out), k), f"event {k} ({events[k]}) not reached"
        if i % 2:
            alone(out)  # resumed member by member: another grouping
        else:
            group(out)
        assert_same_bytes(out, ref)


SWEEP = sweep_text('[branches]\nkinds = ["reinit"]\n', seeds="[0, 1, 2]", duration="12it")


def test_a_sweep_with_replicas_or_without_writes_the_same_bytes(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP)
    for replicas in (3, 1):  # the seeds (and their branches) side by side / one per task
        run_sweep(sweep, tmp_path / f"r{replicas}", replicas=replicas, jobs=1, progress=False)
    stacked = open_sweep(tmp_path / "r3")
    assert len(stacked.runs) == 6
    assert_same_bytes(tmp_path / "r3", tmp_path / "r1", [r.config for r in stacked.runs])
