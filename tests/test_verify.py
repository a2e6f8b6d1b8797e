"""Nothing trusted: every way of damaging a stored file is found by ``verify`` and refused, by
name, when the file is read through ``open_run``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from maskstudy import open_run
from maskstudy.errors import StoreError
from maskstudy.runs.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from maskstudy.runs.executors import run_sweep
from maskstudy.runs.run import run
from maskstudy.runs.verify import (
    COLUMNS,
    MANIFEST_DIR,
    is_damaged,
    record_run,
    record_sweep,
    summary,
    verify,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """Levels 0-2 of a reinitialising run that rewinds to step 2: every kind of stored file."""
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_size=128),
        model=ModelConfig(name="lenet300_100", width=0.1),
        train=TrainConfig(batch_size=32, duration="6it", eval_every="3it"),
        regime="reinit_prune",
        rewind_to="2it",
        levels=2,
    )
    return run(cfg, tmp_path_factory.mktemp("pristine"), progress=False).path


@pytest.fixture
def copy(pristine, tmp_path) -> Path:
    path = tmp_path / pristine.name
    shutil.copytree(pristine, path)
    return path


def rows(frame: pd.DataFrame, status: str | None = None) -> list[tuple[str, str]]:
    """(file, status) of the rows that are not ok (or have ``status``)."""
    chosen = frame[frame.status == status] if status else frame[frame.status != "ok"]
    return list(zip(chosen.file, chosen.status, strict=True))


def test_an_intact_run_is_all_ok(pristine):
    frame = verify(pristine)
    assert list(frame.columns) == list(COLUMNS)
    assert set(frame.status) == {"ok"} and not is_damaged(frame)
    expected = {"config.json", "init.safetensors", "rewind.safetensors", "history.jsonl"}
    for level in range(3):
        names = ["DONE", "mask.safetensors", "final.safetensors", "metrics.json"]
        expected |= {
            f"levels/{level:02d}/{n}" for n in names + (["start.safetensors"] * (level > 0))
        }
    assert set(frame.file) == expected
    assert frame.query("file == 'history.jsonl'").level.tolist() == [0, 1, 2]
    assert summary(frame) == f"1 runs, 3 levels, {len(frame)} files: {len(frame)} ok: intact"


# --- corruptions -----------------------------------------------------------------------------------
def truncate_half(path: Path, run_dir: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path, run_dir: Path) -> None:
    path.write_bytes(b"")


def flip_byte(path: Path, run_dir: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: a bad copy, not a different file
    path.write_bytes(bytes(data))


def append(path: Path, run_dir: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\n")


def delete(path: Path, run_dir: Path) -> None:
    path.unlink()


def from_level_2(path: Path, run_dir: Path) -> None:
    shutil.copyfile(run_dir / "levels" / "02" / path.name, path)


def from_rewind(path: Path, run_dir: Path) -> None:
    shutil.copyfile(run_dir / "rewind.safetensors", path)


READERS: dict[str, Callable] = {
    "config.json": lambda path: open_run(path),
    "init.safetensors": lambda path: open_run(path).weights(which="init"),
    "rewind.safetensors": lambda path: open_run(path).weights(which="rewind"),
    "levels/01/mask.safetensors": lambda path: open_run(path).mask(1),
    "levels/01/final.safetensors": lambda path: open_run(path).weights(1),
    "levels/01/start.safetensors": lambda path: open_run(path).weights(1, which="start"),
    "levels/01/metrics.json": lambda path: open_run(path).metrics(),
    "levels/01/DONE": lambda path: open_run(path).mask(1),
    "levels/02/DONE": lambda path: open_run(path).mask(2),
    "history.jsonl": lambda path: open_run(path).history(),
}


def flip_in_mask_sha(path: Path, run_dir: Path) -> None:
    """One hex digit of DONE's record of the mask's sha256 changed."""
    record = json.loads(path.read_text())
    sha = record["files"]["mask.safetensors"]
    record["files"]["mask.safetensors"] = ("1" if sha[0] == "0" else "0") + sha[1:]
    path.write_text(json.dumps(record))


LEVEL_1 = [f"levels/01/{n}.safetensors" for n in ("mask", "final", "start")] + [
    "levels/01/metrics.json"
]
HASHED = ["init.safetensors", "rewind.safetensors", *LEVEL_1]
RECORDS = ["config.json", "levels/01/DONE", "history.jsonl"]  # no sha256 of their own
CORRUPTIONS = (
    [(f, truncate_half, f, "truncated") for f in HASHED + RECORDS]
    + [(f, empty, f, "truncated") for f in HASHED + RECORDS]
    + [(f, flip_byte, f, "altered") for f in HASHED + ["config.json", "history.jsonl"]]
    + [(f, append, f, "altered") for f in HASHED]
    + [(f, delete, f, "missing") for f in HASHED + ["config.json", "history.jsonl"]]
    + [(f, from_level_2, f, "altered") for f in LEVEL_1]
    + [
        ("init.safetensors", from_rewind, "init.safetensors", "altered"),
        ("levels/01/DONE", delete, "levels/01/DONE", "missing"),  # level 2 is complete
        ("levels/01/DONE", from_level_2, "levels/01/mask.safetensors", "altered"),
        ("levels/01/DONE", flip_in_mask_sha, "levels/01/mask.safetensors", "altered"),
    ]
)


@pytest.mark.parametrize(
    ("target", "corrupt", "flagged", "status"),
    CORRUPTIONS,
    ids=[f"{t} {c.__name__}" for t, c, _, _ in CORRUPTIONS],
)
def test_each_corruption_is_detected_and_reading_names_the_file(
    copy, target, corrupt, flagged, status
):
    corrupt(copy / target, copy)
    frame = verify(copy)
    assert (flagged, status) in rows(frame), rows(frame)
    assert is_damaged(frame) and "DAMAGED" in summary(frame)
    with pytest.raises(StoreError) as err:
        READERS[target](copy)
    assert Path(flagged).name in str(err.value), str(err.value)


def test_a_damaged_done_record_is_found_by_its_files(copy):
    done = copy / "levels" / "01" / "DONE"
    record = json.loads(done.read_text())
    record["sizes"]["final.safetensors"] += 1
    record["files"]["strat.safetensors"] = record["files"].pop("start.safetensors")
    done.write_text(json.dumps(record))
    assert sorted(rows(verify(copy))) == [
        ("levels/01/final.safetensors", "altered"),  # right sha256, wrong recorded size
        ("levels/01/start.safetensors", "missing"),  # a reinit level must record its start
        ("levels/01/start.safetensors", "stray"),
        ("levels/01/strat.safetensors", "missing"),
    ]
    with pytest.raises(
        StoreError, match=r"01/start\.safetensors is not recorded in its level's DONE"
    ):
        open_run(copy).weights(1, which="start")  # never silently θk instead


def test_a_deleted_rewind_point_is_missing_not_replaced_by_theta0(copy):
    (copy / "rewind.safetensors").unlink()
    cfg = open_run(copy).config.replace({"regime": "rewind"})
    info = json.loads((copy / "config.json").read_text())
    info["config"], info["run_id"] = cfg.to_dict(), cfg.run_id()
    (copy / "config.json").write_text(json.dumps(info))
    assert rows(verify(copy)) == [("rewind.safetensors", "missing")]
    with pytest.raises(StoreError, match=r"missing file .*rewind\.safetensors"):
        open_run(copy).weights(1, which="start")


def test_a_deleted_last_done_is_an_incomplete_level_not_damage(copy):
    """A kill just before DONE leaves the same: only a sweep's record (below) proves the loss."""
    (copy / "levels" / "02" / "DONE").unlink()
    frame = verify(copy)
    assert rows(frame) == [("levels/02/DONE", "incomplete")] and not is_damaged(frame)
    assert "or DONE was deleted" in frame.query("status == 'incomplete'").detail.item()
    assert open_run(copy).levels == [0, 1]
    with pytest.raises(StoreError, match=r"level 2 of .* is not complete \(no DONE\)"):
        open_run(copy).mask(2)


def drop_rows(run_dir: Path, level: int) -> None:
    """Remove a level's rows from history.jsonl, as if its write was killed before them."""
    path = run_dir / "history.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(x for x in lines if json.loads(x)["level"] != level))


def test_a_deleted_last_level_is_missing_while_history_holds_its_rows(copy):
    shutil.rmtree(copy / "levels" / "02")
    frame = verify(copy)
    assert rows(frame) == [("levels/02", "missing")] and is_damaged(frame)
    drop_rows(copy, 2)  # no trace of level 2 left: nothing to tell it from a run of levels 0-1
    assert rows(verify(copy)) == []


def test_the_files_of_a_level_without_done_are_missing_when_its_rows_were_written(copy):
    (copy / "levels" / "02" / "DONE").unlink()
    (copy / "levels" / "02" / "final.safetensors").unlink()
    assert sorted(rows(verify(copy))) == [
        ("levels/02/DONE", "incomplete"),
        ("levels/02/final.safetensors", "missing"),  # written before the rows, so lost
    ]
    drop_rows(copy, 2)  # killed before the rows: the level's files may not be written yet
    frame = verify(copy)
    assert rows(frame) == [("levels/02/DONE", "incomplete")] and not is_damaged(frame)
    assert "interrupted" in frame.query("status == 'incomplete'").detail.item()


def test_a_level_with_rows_of_a_later_level_was_complete(copy):
    (copy / "levels" / "02" / "DONE").unlink()
    (copy / "levels" / "01" / "DONE").unlink()
    assert sorted(rows(verify(copy))) == [
        ("levels/01/DONE", "missing"),  # level 2's rows: level 2 trained after 1 was complete
        ("levels/02/DONE", "incomplete"),
    ]


def test_an_edited_config_no_longer_matches_its_run_id(copy):
    info = json.loads((copy / "config.json").read_text())
    info["config"]["train"]["lr"] = 0.5
    (copy / "config.json").write_text(json.dumps(info))
    assert rows(verify(copy)) == [("config.json", "altered")]
    assert "hashes to" in verify(copy).detail[0]
    info["config"]["train"]["lr"] = "fast"
    (copy / "config.json").write_text(json.dumps(info))
    with pytest.raises(StoreError, match=r"config\.json holds an invalid config \(train\.lr"):
        open_run(copy)


def test_a_done_that_drops_a_file_makes_it_unreadable(copy):
    done = copy / "levels" / "01" / "DONE"
    record = json.loads(done.read_text())
    del record["files"]["final.safetensors"]
    done.write_text(json.dumps(record))
    assert ("levels/01/final.safetensors", "missing") in rows(verify(copy))
    with pytest.raises(
        StoreError, match=r"01/final\.safetensors is not recorded in its level's DONE"
    ):
        open_run(copy).weights(1)


def test_leftovers_are_stray_but_not_damage(copy):
    (copy / "levels" / "01" / ".final.safetensors.k3j2.tmp").write_bytes(b"half")
    (copy / "levels" / "01" / "notes.txt").write_text("mine")
    (copy / ".config.json.x8y7.tmp").write_text("{")
    frame = verify(copy)
    assert sorted(rows(frame)) == [
        (".config.json.x8y7.tmp", "stray"),
        ("levels/01/.final.safetensors.k3j2.tmp", "stray"),
        ("levels/01/notes.txt", "stray"),
    ]
    assert not is_damaged(frame) and summary(frame).endswith("3 stray: intact")


SWEEP = (
    'levels = 1\nseeds = [0, 1, 2]\n[base]\ndata.name = "synthetic"\n'
    "data.synthetic_size = 128\nmodel.width = 0.1\ntrain.batch_size = 32\n"
    'train.duration = "3it"\ntrain.eval_every = "3it"\n'
)


def run_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if (p / "config.json").is_file())


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    """Three runs of levels 0-1, with the manifest a sweep's writers keep: sweep.toml's sha256
    when it is written, each run's complete levels after each attempt."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "sweep.toml").write_text(SWEEP)
    out = root / "out"
    run_sweep(root / "sweep.toml", out, replicas=1, progress=False)
    record_sweep(out)
    for run_dir in run_dirs(out):
        record_run(run_dir)
    return out


@pytest.fixture
def sweep(finished_sweep, tmp_path) -> Path:
    return Path(shutil.copytree(finished_sweep, tmp_path / "out"))


def test_a_sweep_is_checked_run_by_run_and_unstarted_runs_are_listed(sweep):
    first, second, third = run_dirs(sweep)
    shutil.rmtree(third)
    (sweep / MANIFEST_DIR / "runs" / f"{third.name}.json").unlink()  # as if never started
    flip_byte(second / "levels" / "01" / "mask.safetensors", second)
    frame = verify(sweep)
    assert set(frame.run) == {"", first.name, second.name, third.name}  # "": sweep.toml
    assert sorted(rows(frame)) == [("", "incomplete"), ("levels/01/mask.safetensors", "altered")]
    assert frame[frame.status == "incomplete"].run.item() == third.name
    assert summary(frame).startswith("3 runs, 4 levels,") and summary(frame).endswith("DAMAGED")
    assert set(verify(second).run) == {second.name}
    (sweep / "sweep.toml").unlink()  # a plain folder of runs
    shutil.rmtree(sweep / MANIFEST_DIR)
    assert set(verify(sweep).run) == {first.name, second.name}


def test_an_intact_sweep_checks_its_file_against_the_recorded_sha256(finished_sweep):
    frame = verify(finished_sweep)
    assert rows(frame) == [] and ("sweep.toml", "ok") in rows(frame, "ok")
    assert summary(frame).startswith("3 runs, 6 levels,") and summary(frame).endswith("intact")


def test_a_deleted_finished_run_of_a_sweep_is_missing_not_unstarted(sweep):
    first, *_ = run_dirs(sweep)
    shutil.rmtree(first)
    frame = verify(sweep)
    assert rows(frame) == [("", "missing")] and is_damaged(frame)
    lost = frame.query("status == 'missing'")
    assert lost.run.item() == first.name and "levels [0, 1] complete" in lost.detail.item()


def test_a_recorded_level_is_missing_whatever_else_is_gone(sweep):
    first, second, _ = run_dirs(sweep)
    (first / "levels" / "01" / "DONE").unlink()  # the last level: no later level tells
    assert rows(verify(sweep)) == [("levels/01/DONE", "missing")]
    assert rows(verify(first)) == [("levels/01/DONE", "missing")]  # a run reads its sweep's record
    shutil.rmtree(second / "levels" / "01")
    drop_rows(second, 1)
    assert ("levels/01", "missing") in rows(verify(second))
    record = sweep / MANIFEST_DIR / "runs" / f"{second.name}.json"
    record.write_text(record.read_text()[:10])
    frame = verify(second)
    assert rows(frame) == [(f"../{MANIFEST_DIR}/runs/{second.name}.json", "truncated")]


def test_an_edited_or_deleted_sweep_file_is_found(sweep):
    text = (sweep / "sweep.toml").read_text()
    (sweep / "sweep.toml").write_text(text.replace("seeds = [0, 1, 2]", "seeds = [0, 1]"))
    frame = verify(sweep)
    assert rows(frame) == [("sweep.toml", "altered")] and is_damaged(frame)
    assert "edited after the sweep was created" in frame.detail[frame.status == "altered"].item()
    (sweep / "sweep.toml").write_text(text[: len(text) // 2])
    assert rows(verify(sweep)) == [("sweep.toml", "truncated")]
    (sweep / "sweep.toml").unlink()
    assert rows(verify(sweep)) == [("sweep.toml", "missing")]


def test_verify_refuses_what_holds_no_runs(tmp_path):
    with pytest.raises(StoreError, match="holds no runs"):
        verify(tmp_path)
    with pytest.raises(StoreError, match="is not a directory"):
        verify(tmp_path / "nope")


def test_the_command_lists_damage_and_exits_1_only_when_damaged(copy, capsys):
    from maskstudy.cli import main

    assert main(["verify", str(copy)]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("intact") and "levels/01" not in out  # ok rows are not listed
    flip_byte(copy / "levels" / "01" / "mask.safetensors", copy)
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "levels/01/mask.safetensors" in out and "altered" in out
    assert out.strip().endswith("DAMAGED")
    assert main(["verify", str(copy), "--all"]) == 1
    assert "levels/00/mask.safetensors" in capsys.readouterr().out
