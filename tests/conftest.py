"""Shared fixtures: the real MNIST / Fashion-MNIST beside the repo when present."""

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


@pytest.fixture
def shared_data() -> Path:
    """Directory holding mnist/ and fashion-mnist/ IDX files; skips the test if absent."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA
