"""The run store: bit-packed masks, atomic writes, DONE last, damaged files named, no overwrites."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from maskstudy import open_run
from maskstudy.errors import StoreError
from maskstudy.files import (
    KEPT_ONLY,
    pack_mask,
    pack_weights,
    tensors_from_bytes,
    tensors_to_bytes,
    unpack_mask,
    unpack_weights,
    write_atomic,
)
from maskstudy.runs.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from maskstudy.runs.run import run
from maskstudy.runs.store import create_run, level_dir, save_level, save_weights


def random_mask(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.rand(4, 3, 3, 3, generator=g) < 0.3,
        "fc.weight": torch.rand(10, 37, generator=g) < 0.7,
    }


def test_mask_round_trip_at_one_bit_per_weight(tmp_path):
    mask = random_mask()
    data = pack_mask(mask)
    back = unpack_mask(data, tmp_path / "m")
    assert all(torch.equal(back[k], mask[k]) for k in mask)
    n = sum(m.numel() for m in mask.values())
    header = int.from_bytes(data[:8], "little") + 8
    assert (
        len(data) - header == sum(int(np.ceil(m.numel() / 8)) for m in mask.values()) <= n / 8 + 2
    )


def test_weights_keep_only_the_kept_values_and_read_back_bit_exact(tmp_path):
    g = torch.Generator().manual_seed(1)
    mask = {
        "w": torch.rand(200, 300, generator=g) < 0.012,
        "v": torch.rand(7, 5, generator=g) < 0.5,
    }
    # pruned entries +0.0, as training leaves them (masks.apply_mask_)
    weights = {name: (torch.randn(m.shape, generator=g) * m).add_(0.0) for name, m in mask.items()}
    weights["v"].view(-1)[(~mask["v"]).view(-1).nonzero()[0]] = -0.0  # a −0.0: kept whole
    weights["bias"] = torch.randn(200, generator=g)  # not masked: kept whole
    data = pack_weights(weights, mask)
    back = unpack_weights(data, tmp_path / "final.safetensors", mask)
    assert back.keys() == weights.keys()
    for name, w in weights.items():  # bit-exact, signs of zeros included
        assert torch.equal(back[name].view(torch.int32), w.view(torch.int32)), name
    kept = int(mask["w"].sum())
    dense = pack_weights(weights, {})  # nothing kept-only: every tensor whole
    assert len(dense) - len(data) == 4 * (mask["w"].numel() - kept)
    bits = 8 * (len(pack_mask({"w": mask["w"]})) + 4 * kept) / mask["w"].numel()
    assert 1.3 < bits < 1.5  # mask + kept values at 1.2 % density, against 32 dense
    old = tensors_to_bytes(weights)  # a store from before: dense, no metadata
    assert all(
        torch.equal(unpack_weights(old, tmp_path / "f", mask)[n], w) for n, w in weights.items()
    )
    with pytest.raises(StoreError, match="does not fit the level's mask"):
        unpack_weights(data, tmp_path / "final.safetensors", {**mask, "w": ~mask["w"]})


def test_atomic_write_leaves_no_temp_files_and_names_failures(tmp_path):
    write_atomic(tmp_path / "a.bin", b"xyz")
    assert os.listdir(tmp_path) == ["a.bin"]
    blocked = tmp_path / "ro"
    blocked.mkdir()
    blocked.chmod(0o500)
    try:
        if os.access(blocked, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(StoreError, match="could not write .*ro/b.bin"):
            write_atomic(blocked / "b.bin", b"1")
    finally:
        blocked.chmod(0o700)


def make_run(tmp_path, levels=2):
    cfg = RunConfig(levels=levels)
    run = create_run(tmp_path / cfg.run_id(), cfg)
    save_weights(run, "init", {"fc.weight": torch.ones(10, 37)})
    for level in range(levels + 1):
        final = {"fc.weight": torch.full((10, 37), float(level)), "fc.bias": torch.zeros(10)}
        metrics = {
            "level": level,
            "percent_remaining": 100 * 0.8**level,
            "test_acc": 0.9,
            "layer_density": {"fc.weight": 0.8**level},
        }
        history = [{"step": 10 * level, "test_acc": 0.5}, {"step": 10 * level + 5, "test_acc": 0.9}]
        save_level(run, level, random_mask(level), final, metrics, history)
    return cfg, run


def test_levels_read_back_through_open_run(tmp_path):
    cfg, run = make_run(tmp_path)
    r = open_run(run.path)
    assert r.config == cfg and r.levels == [0, 1, 2]
    assert torch.equal(r.mask(1)["fc.weight"], random_mask(1)["fc.weight"])
    assert r.weights(2)["fc.weight"][0, 0] == 2.0
    assert torch.equal(r.weights(which="init")["fc.weight"], torch.ones(10, 37))
    frame = r.metrics()
    assert list(frame["level"]) == [0, 1, 2]
    assert frame["density[fc.weight]"].tolist() == pytest.approx([1, 0.8, 0.64])
    assert len(r.history()) == 6
    info = json.loads((run.path / "config.json").read_text())
    assert set(info["versions"]) >= {"maskstudy", "torch", "python"} and info["seed"] == 0
    assert info["versions"]["cpu"].endswith(torch.backends.cpu.get_cpu_capability())


def test_a_level_without_done_is_not_complete(tmp_path):
    _, run = make_run(tmp_path)
    (level_dir(run.path, 2) / "DONE").unlink()
    assert open_run(run.path).levels == [0, 1]
    with pytest.raises(StoreError, match="level 2 .* is not complete"):
        open_run(run.path).mask(2)
    assert set(open_run(run.path).history()["level"]) == {0, 1}


def test_rewriting_a_level_replaces_its_history_and_keeps_the_others(tmp_path):
    _, run = make_run(tmp_path)
    before = open_run(run.path).history()
    save_level(run, 1, random_mask(1), {"w": torch.zeros(1)}, {"level": 1}, [{"step": 99}])
    hist = open_run(run.path).history()
    assert hist[hist.level == 1]["step"].tolist() == [99]
    others = before[before.level != 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(hist[hist.level != 1].reset_index(drop=True), others)  # each
    assert set(hist.level) == set(before.level)  # level's rows still match its own DONE


@pytest.mark.parametrize("name", ["mask.safetensors", "final.safetensors", "metrics.json"])
def test_damaged_files_are_named(tmp_path, name):
    _, run = make_run(tmp_path)
    path = level_dir(run.path, 1) / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    r = open_run(run.path)
    read = {
        "mask.safetensors": lambda: r.mask(1),
        "final.safetensors": lambda: r.weights(1),
        "metrics.json": r.metrics,
    }[name]
    with pytest.raises(StoreError, match=f"{name}.* damaged"):
        read()


def test_another_config_is_never_overwritten(tmp_path):
    cfg, run = make_run(tmp_path)
    before = (run.path / "config.json").read_bytes()
    with pytest.raises(StoreError, match="different config .*seed"):
        create_run(run.path, cfg.replace({"seed": 3}))
    assert (run.path / "config.json").read_bytes() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a maskstudy run directory"):
        create_run(tmp_path / "other", cfg)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_more_levels_reopen_the_same_run(tmp_path):
    cfg, run = make_run(tmp_path)
    again = create_run(run.path, cfg.replace({"levels": 5}))
    assert again.levels == [0, 1, 2] and open_run(run.path).config.levels == 5


def test_open_run_on_a_non_run_directory(tmp_path):
    with pytest.raises(StoreError, match="not a maskstudy run directory"):
        open_run(tmp_path)


def test_mask_files_are_byte_identical_across_processes():
    """safetensors orders several metadata keys per process (hash seed): one key, same bytes."""
    code = (
        "import hashlib, torch\n"
        "from maskstudy.files import pack_mask\n"
        "m = {'b.weight': torch.ones(3, 3, dtype=torch.bool), 'a.weight': torch.zeros(4, dtype=torch.bool)}\n"
        "print(hashlib.sha256(pack_mask(m)).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in range(6)
    }
    assert len(digests) == 1


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_trained_levels_keep_pruned_weights_at_plus_zero_and_store_kept_values(tmp_path, optimizer):
    """Masking gives +0.0 (not the −0.0 of a negative weight times 0) and masked SGD (momentum,
    weight decay) and Adam steps keep it so: every masked tensor is stored as its kept values."""
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=128),
        model=ModelConfig(name="lenet300_100", width=0.1),
        train=TrainConfig(
            optimizer=optimizer, lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=32,
            duration="12it", eval_every="12it",
        ),
        regime="finetune",
        levels=2,
    )  # fmt: skip
    r = run(cfg, tmp_path, progress=False)
    for level in r.levels:
        mask, path = r.mask(level), level_dir(r.path, level) / "final.safetensors"
        _, meta = tensors_from_bytes(path.read_bytes(), path)
        assert json.loads(meta[KEPT_ONLY]) == list(mask)
        w = r.weights(level)
        for name, m in mask.items():
            assert not torch.signbit(w[name][~m]).any() and not w[name][~m].any()
