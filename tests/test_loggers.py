"""Experiment logging (runs/loggers.py): every evaluation of a run streamed to CSV, TensorBoard
and W&B (offline), read back with each tool's own reader and compared with history.jsonl."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import pytest

from maskstudy import open_run, open_sweep
from maskstudy.cli import main
from maskstudy.errors import ConfigError
from maskstudy.runs.config import DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig
from maskstudy.runs.executors import run_sweep
from maskstudy.runs.run import run
from maskstudy.runs.sweep import parse_sweep


def small(**changes) -> RunConfig:
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.2),
        train=TrainConfig(
            optimizer="sgd", lr=0.05, batch_size=32, duration="8it", eval_every="4it"
        ),
        prune=PruneConfig(amount=0.5),
        levels=2,
    )
    return cfg.replace(changes) if changes else cfg


def evaluations(run_dir: Path) -> list[dict]:
    """history.jsonl, the record the loggers must match."""
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def densities(run_dir: Path) -> dict[int, float]:
    stored = open_run(run_dir)
    return {
        level: stored.level_metrics(level)["percent_remaining"] / 100 for level in stored.levels
    }


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Path:
    """One run of levels 0–2, logged to all three."""
    import os

    os.environ.setdefault("WANDB_SILENT", "true")
    out = tmp_path_factory.mktemp("logged")
    return run(small(), out, progress=False, log=("csv", "tensorboard", "wandb")).path


def test_csv_has_one_line_per_evaluation_with_level_and_density(logged):
    with (logged / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    history, kept = evaluations(logged), densities(logged)
    assert len(rows) == len(history) == 3 * 2  # 3 levels, evaluated at 4 and 8 iterations
    for row, record in zip(rows, history, strict=True):
        assert int(row["level"]) == record["level"]
        assert int(row["step"]) == record["step"]
        assert float(row["test_acc"]) == record["test_acc"]
        assert float(row["density"]) == pytest.approx(kept[record["level"]])
    assert [float(r["density"]) for r in rows][::2] == pytest.approx([1.0, 0.5, 0.25], abs=0.01)


def test_tensorboard_events_hold_the_curves_and_the_by_level_summary(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logged / "tensorboard"))
    events.Reload()
    history = evaluations(logged)
    for level in (0, 1, 2):
        curve = events.Scalars(f"level_{level:02d}/test_acc")
        recorded = [r for r in history if r["level"] == level]
        assert [e.step for e in curve] == [r["step"] for r in recorded]
        assert [e.value for e in curve] == pytest.approx([r["test_acc"] for r in recorded])
    final = events.Scalars("by_level/test_acc")
    stored = open_run(logged)
    assert [e.step for e in final] == [0, 1, 2]
    assert [e.value for e in final] == pytest.approx(
        [stored.level_metrics(level)["test_acc"] for level in (0, 1, 2)]
    )
    remaining = [e.value for e in events.Scalars("by_level/percent_remaining")]
    assert remaining == pytest.approx([100, 50, 25], abs=1)
    assert "config/text_summary" in events.Tags()["tensors"]


def wandb_records(path: Path):
    """The protobuf records of a W&B ``.wandb`` file: a 7-byte header (``:W&B``, magic, version),
    then LevelDB-log framing in 32 KiB blocks (crc32c, length, type: full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunks = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or the last piece of a split record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            yield record
            chunks = b""


def test_wandb_offline_run_holds_the_config_and_every_evaluation(logged):
    (offline,) = (logged / "wandb").glob("offline-run-*")
    stored = open_run(logged)
    (file,) = offline.glob(f"run-{stored.run_id}.wandb")
    records = list(wandb_records(file))
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert runs and runs[0].run_id == stored.run_id and runs[0].display_name == stored.run_id
    config = {
        item.key or "/".join(item.nested_key): json.loads(item.value_json)
        for item in runs[0].config.update
    }
    assert config["train"]["lr"] == 0.05 and config["prune"]["amount"] == 0.5
    logged_rows = [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in r.history.item
        }
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    history, kept = evaluations(logged), densities(logged)
    assert len(logged_rows) == len(history)
    for row, record in zip(logged_rows, history, strict=True):
        assert (row["level"], row["step"]) == (record["level"], record["step"])
        assert row["test_acc"] == pytest.approx(record["test_acc"])
        assert row["density"] == pytest.approx(kept[record["level"]])


def test_a_sweep_file_log_reaches_every_run_and_each_replica_logs_alone(tmp_path):
    text = """
levels = 1
seeds = [0, 1]
log = ["csv"]
[base]
data.name = "synthetic"
data.synthetic_shape = [1, 8, 8]
data.synthetic_size = 256
model.name = "lenet300_100"
model.width = 0.2
train.optimizer = "sgd"
train.batch_size = 32
train.duration = "8it"
train.eval_every = "4it"
"""
    (tmp_path / "s.toml").write_text(text)
    assert parse_sweep(text).log == ("csv",)
    run_sweep(tmp_path / "s.toml", tmp_path / "sweep", jobs=1, progress=False)
    runs = open_sweep(tmp_path / "sweep").runs
    assert len(runs) == 2  # seeds 0 and 1 trained side by side as replicas, logged apart
    for stored in runs:
        with (stored.path / "log.csv").open() as f:
            rows = list(csv.DictReader(f))
        history = evaluations(stored.path)
        assert [float(r["test_acc"]) for r in rows] == [r["test_acc"] for r in history]


def test_unknown_loggers_are_refused_with_the_nearest_name(tmp_path, capsys):
    args = ["run", "--preset", "lenet300_digits", "--out", str(tmp_path)]
    assert main([*args, "--log", "tensorbord"]) == 2
    err = capsys.readouterr().err
    assert "unknown logger 'tensorbord'" in err and "did you mean 'tensorboard'" in err
    assert not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match=r"log: unknown logger 'mlflow'.*choose from csv"):
        parse_sweep('log = ["mlflow"]\nlevels = 1')
    with pytest.raises(ConfigError, match="must be a list of loggers"):
        parse_sweep("log = 3\nlevels = 1")


def test_a_logger_whose_package_is_missing_names_the_extra(tmp_path, monkeypatch):
    real = __import__("importlib.util").util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(
        ConfigError, match=r"needs the wandb package.*pip install 'maskstudy\[wandb\]'"
    ):
        run(small(levels=0), tmp_path, progress=False, log=("wandb",))
    assert not any(tmp_path.iterdir())  # refused before anything is written
