"""Your own model and dataset by name: a module in $MASKSTUDY_PLUGINS registers them, and
`maskstudy run` and a sweep's spawned workers train them like the built-in ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"  # my_models.py: tiny_mlp and two_blobs


def maskstudy(
    tmp_path: Path, *args: str, plugins: str = "my_models"
) -> subprocess.CompletedProcess:
    """The command line in a fresh process that sees the plugin folder (as a user's would)."""
    env = {**os.environ, "MASKSTUDY_PLUGINS": plugins, "PYTHONPATH": str(PLUGINS)}
    command = [sys.executable, "-m", "maskstudy.cli", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )


def test_a_registered_model_and_dataset_train_in_a_run_and_a_sweep(tmp_path):
    options = ["model.name=tiny_mlp", "data.name=two_blobs", "model.width=0.5"]
    done = maskstudy(
        tmp_path, "run", "--preset", "lenet300_digits", "--set", *options, "--levels", "1",
        "--epochs", "2", "--out", "runs", "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert (config["model"]["name"], config["data"]["name"]) == ("tiny_mlp", "two_blobs")
    assert sorted(p.name for p in (run_dir / "levels").iterdir()) == ["00", "01"]
    (tmp_path / "s.toml").write_text(
        'preset = "lenet300_digits"\nlevels = 1\nseeds = [0, 1]\n[base]\n'
        '"model.name" = "tiny_mlp"\n"data.name" = "two_blobs"\n"train.duration" = "1ep"\n'
    )
    swept = maskstudy(tmp_path, "sweep", "s.toml", "--out", "sweep", "--jobs", "2", "--no-replicas")
    assert swept.returncode == 0, swept.stderr  # two spawned workers found the plugin too
    assert "2 runs: 2 done" in swept.stdout


@pytest.mark.parametrize(
    ("plugins", "needle"),
    [
        ("no_such_module", "No module named 'no_such_module'"),
        ("", "unknown model 'tiny_mlp'; valid models: conv2"),
    ],
)
def test_a_plugin_that_does_not_load_is_named(tmp_path, plugins, needle):
    done = maskstudy(
        tmp_path, "run", "--preset", "lenet300_digits", "--set", "model.name=tiny_mlp",
        "--out", "runs", plugins=plugins,
    )  # fmt: skip
    assert done.returncode == 2 and needle in done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
