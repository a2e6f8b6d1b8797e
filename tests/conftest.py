"""Shared fixtures: the real MNIST / Fashion-MNIST beside the repo when present, and a tiny
conv sweep (criteria × seeds × 3 levels on synthetic data) built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread for every test (set before module fixtures train anything):
    results are bit-reproducible only at a fixed thread count."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    """The data cache (maskstudy.data.cache) of every test, and of the commands they start, is
    a folder of this session: the suite never writes the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MASKSTUDY_CACHE", str(tmp_path_factory.mktemp("maskstudy_cache")))
        yield


@pytest.fixture
def shared_data() -> Path:
    """Directory holding mnist/ and fashion-mnist/ IDX files; skips the test if absent."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


# conv2 on synthetic 8×8 inputs, seeds 0/1, levels 0–2: the base every tiny conv sweep shares
TINY_CONV_BASE = """
levels = 2
seeds = [0, 1]
[base]
data.name = "synthetic"
data.synthetic_shape = [1, 8, 8]
data.synthetic_size = 256
model.name = "conv2"
model.width = 0.25
train.optimizer = "sgd"
train.lr = 0.05
train.batch_size = 32
train.duration = "6it"
train.eval_every = "3it"
"prune.amount" = 0.5
"""
TINY_CONV_SWEEP = TINY_CONV_BASE + '[grid]\n"prune.criterion" = ["magnitude", "random"]\n'


@pytest.fixture(scope="session")
def conv_sweep_dir(tmp_path_factory) -> Path:
    """A finished sweep: conv2 on synthetic 8×8 inputs, magnitude/random × seeds 0/1, levels 0–2."""
    from maskstudy.runs.executors import run_sweep

    root = tmp_path_factory.mktemp("conv_sweep")
    (root / "grid.toml").write_text(TINY_CONV_SWEEP)
    run_sweep(root / "grid.toml", root / "sweep", progress=False)
    return root / "sweep"
