"""In-level checkpoints: a level killed mid-training resumes from its last checkpoint and ends
with the same bytes as a level trained in one go (CPU), alone or as a replica group."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskstudy.runs.config import DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig
from maskstudy.runs.run import run, run_group
from maskstudy.runs.store import CHECKPOINT_FILE, LevelCheckpoints, level_dir

EVERY_STEP = 1e-9  # minutes: a checkpoint after every step


def config(optimizer: str = "adam", seed: int = 0) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.2),
        train=TrainConfig(
            optimizer=optimizer,
            lr=0.01 if optimizer == "adam" else 0.05,
            momentum=0.0 if optimizer == "adam" else 0.9,
            batch_size=32,
            duration="24it",
            eval_every="5it",
            schedule="step",
            milestones=("12it",),
        ),
        prune=PruneConfig(amount=0.3),
        rewind_to="3it",
        seed=seed,
        levels=2,
    )


def kill_after(monkeypatch, saves: int) -> None:
    """The process dies right after its ``saves``-th checkpoint write."""
    original, count = LevelCheckpoints.save, [0]

    def save(self, tensors, meta):
        original(self, tensors, meta)
        count[0] += 1
        if count[0] == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(LevelCheckpoints, "save", save)


def stored(path: Path) -> dict[str, bytes]:
    """Every file of a run but those holding its timings (config.json's creation time, DONE's
    seconds); metrics.json and the rest are compared byte for byte."""
    return {
        f.relative_to(path).as_posix(): f.read_bytes()
        for f in sorted(path.rglob("*"))
        if f.is_file() and f.name not in (".lock", "config.json", "DONE")
    }


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("saves", [2, 7, 23, 30])  # inside level 0 (before/after θk), level 1
def test_a_killed_level_resumes_from_its_checkpoint_to_the_same_bytes(
    tmp_path, monkeypatch, optimizer, saves
):
    cfg = config(optimizer)
    whole = run(cfg, tmp_path / "whole", progress=False, checkpoint_minutes=0)
    with monkeypatch.context() as patch:
        kill_after(patch, saves)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, tmp_path / "killed", progress=False, checkpoint_minutes=EVERY_STEP)
    killed = tmp_path / "killed" / cfg.run_id()
    level = (saves - 1) // 23  # level 0 checkpoints after each of its steps 1..23 of 24
    checkpoint = level_dir(killed, level) / CHECKPOINT_FILE
    assert checkpoint.is_file()
    resumed = run(cfg, tmp_path / "killed", progress=False, checkpoint_minutes=EVERY_STEP)
    assert stored(resumed.path) == stored(whole.path)
    assert not list(resumed.path.rglob(CHECKPOINT_FILE))  # removed once their level is saved


def test_a_replica_group_resumes_together_and_another_grouping_starts_anew(tmp_path, monkeypatch):
    cfgs = [config(seed=s) for s in (0, 1, 2)]
    whole = run_group(cfgs, tmp_path / "whole", progress=False, checkpoint_minutes=0)
    with monkeypatch.context() as patch:
        kill_after(patch, 11)
        with pytest.raises(KeyboardInterrupt):
            run_group(cfgs, tmp_path / "killed", progress=False, checkpoint_minutes=EVERY_STEP)
    resumed = run_group(cfgs, tmp_path / "killed", progress=False, checkpoint_minutes=EVERY_STEP)
    for a, b in zip(resumed, whole, strict=True):
        assert stored(a.path) == stored(b.path)
    # a checkpoint written by a group of three is not one of a run alone: it trains anew
    alone = run(cfgs[1], tmp_path / "alone", progress=False, checkpoint_minutes=0)
    with monkeypatch.context() as patch:
        kill_after(patch, 11)
        with pytest.raises(KeyboardInterrupt):
            run_group(cfgs, tmp_path / "mixed", progress=False, checkpoint_minutes=EVERY_STEP)
    again = run(cfgs[1], tmp_path / "mixed", progress=False, checkpoint_minutes=EVERY_STEP)
    assert stored(again.path) == stored(alone.path)
