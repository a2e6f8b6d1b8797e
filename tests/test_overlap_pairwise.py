"""The pairwise counting engine (maskstudy.analysis.bitcount): exact Gram counts against scipy,
a hand-computed case, counts beyond float32's 2**24, torch inputs kept on their device, and
the caller's torch thread count left as it was."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform

from maskstudy.analysis import bitcount
from maskstudy.analysis.overlap import pairwise, pairwise_counts


def scipy_counts(x: np.ndarray) -> np.ndarray:
    """Exact |A_i ∧ A_j| of the rows of ``x`` from scipy alone: |A| + |B| − |A xor B| over 2,
    with |A xor B| = n · pdist(hamming) rounded (n ≤ 2**20 keeps it far from a half)."""
    n = x.shape[1]
    kept = x.sum(1).astype(np.int64)
    xor = np.rint(squareform(pdist(x, metric="hamming")) * n).astype(np.int64)
    both = kept[:, None] + kept[None, :] - xor
    assert np.all(both % 2 == 0)
    return both // 2


def mask_rows(rng: np.random.Generator, count: int, n: int, density: float) -> np.ndarray:
    """``count`` random masks; row 0 keeps nothing and, from 3 rows on, row 1 too (J(∅, ∅) = 1)."""
    x = rng.random((count, n)) < density
    x[0] = False
    if count >= 3:
        x[1] = False
        x[2, : n // 2] = True  # a mask overlapping half the weights, whatever the density
    return x


def assert_matches_scipy(x: np.ndarray, counts: np.ndarray, matrix: np.ndarray) -> None:
    reference = scipy_counts(x) if len(x) > 1 else x.sum(1, keepdims=True).astype(np.int64)
    assert counts.dtype == np.int64
    assert np.array_equal(counts, reference)
    kept = np.diag(reference).astype(float)
    union = kept[:, None] + kept[None, :] - reference
    exact = np.divide(reference, union, out=np.ones(union.shape), where=union > 0)
    assert np.array_equal(matrix, exact)  # bit for bit: the same integers, the same division
    if len(x) > 1:  # scipy's 1 − |A xor B| / |A ∨ B| rounds differently, by an ulp at most
        similarity = 1 - squareform(pdist(x, metric="jaccard"))
        np.fill_diagonal(similarity, 1.0)
        assert np.abs(similarity - matrix).max() <= 4e-16


@pytest.mark.parametrize(
    ("count", "n", "density"),
    [
        (1, 1, 0.5),
        (3, 1, 0.5),
        (4, 9, 0.5),
        (1, 777, 0.3),
        (2, 64, 0.5),
        (5, 1000, 0.01),
        (9, 4097, 0.5),
        (17, 70_001, 0.9),
    ],
)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_counts_and_jaccard_equal_scipy(count, n, density, kind):
    x = mask_rows(np.random.default_rng(count * n), count, n, density)
    masks = list(x) if kind == "numpy" else [torch.from_numpy(row) for row in x]
    counts, total = pairwise_counts(masks)
    assert total == n
    assert_matches_scipy(x, counts, pairwise(masks, "jaccard"))
    for chunk, threads in [(64, 1), (100, 3), (1 << 12, 2)]:  # chunk edges and thread counts
        assert np.array_equal(pairwise_counts(masks, chunk, threads)[0], counts)


def test_hand_computed_case():
    a = np.array([1, 1, 0, 0, 1, 0, 1, 0], bool)
    b = np.array([1, 0, 1, 0, 1, 0, 0, 0], bool)
    c = np.zeros(8, bool)
    d = np.zeros(8, bool)
    counts, n = pairwise_counts([a, b, c, d])
    assert n == 8
    assert counts.tolist() == [[4, 2, 0, 0], [2, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    matrix = pairwise([a, b, c, d])
    # |a ∧ b| = 2, |a ∨ b| = 5; a mask against an empty one: 0; two empty masks: 1 by convention
    assert matrix[0, 1] == matrix[1, 0] == 2 / 5
    assert matrix[0, 2] == matrix[1, 3] == 0.0
    assert matrix[2, 3] == matrix[2, 2] == matrix[0, 0] == 1.0
    assert pairwise([c]).tolist() == [[1.0]]
    assert pairwise([a]).tolist() == [[1.0]]


def test_dict_masks_with_mixed_entries_match_the_flat_masks():
    rng = np.random.default_rng(3)
    masks = [
        {"w": rng.random((33, 7)) < d, "b": rng.random(5) < d, "e": np.zeros(0, bool)}
        for d in (0.0, 0.2, 0.6, 1.0)
    ]
    mixed = [{**m, "w": torch.from_numpy(m["w"])} for m in masks]  # numpy and torch entries
    flat = np.stack([np.concatenate([m[k].ravel() for k in m]) for m in masks])
    for given in (masks, mixed):
        for chunk in (64, 65, 1 << 16):
            counts, n = pairwise_counts(given, chunk=chunk, threads=2)
            assert n == flat.shape[1] == 33 * 7 + 5
            assert_matches_scipy(flat, counts, pairwise(given, chunk=chunk, threads=2))


def test_bool_bytes_other_than_one_count_as_kept():
    raw = np.array([0, 1, 2, 255, 0, 7, 0, 0], np.uint8)
    odd = raw.view(bool)  # a bool array whose True bytes are not all 1
    plain = raw != 0
    for mask in (odd, torch.from_numpy(raw.copy()).view(torch.bool)):
        counts, _ = pairwise_counts([mask, plain])
        assert counts.tolist() == [[4, 4], [4, 4]]


@pytest.mark.parametrize("int8", [True, False])
def test_counts_beyond_float32_precision_stay_exact(monkeypatch, int8):
    """2**24 + 101 kept weights is not a float32: one float32 GEMM over every weight would
    round it, so the float32 kernel (the GPU's) must cap its chunks at 2**24 weights."""
    if not int8:
        monkeypatch.setattr(bitcount, "_int8_gemm", lambda: False)
    n = (1 << 24) + 101
    ones = np.ones(n, bool)
    half = np.zeros(n, bool)
    half[::2] = True  # (n + 1) / 2 kept, all inside ``ones``
    masks = [torch.from_numpy(ones), torch.from_numpy(half)]
    counts, total = pairwise_counts(masks, chunk=1 << 31, threads=1)
    assert total == n
    k = (n + 1) // 2
    assert counts.tolist() == [[n, k], [k, k]]


def test_device_path_stays_in_torch_until_the_result(monkeypatch):
    """Pretend the CPU is an accelerator: masks that all live on one torch device are counted
    there in float32, and only the N×N result is moved off it or turned into numpy."""
    monkeypatch.setattr(bitcount, "HOST_DEVICES", ())
    x = mask_rows(np.random.default_rng(7), 6, 20_011, 0.3)
    masks = [torch.from_numpy(row) for row in x]
    moved = []
    for name in ("cpu", "numpy"):
        real = getattr(torch.Tensor, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            moved.append((_name, tuple(self.shape), self.dtype))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    counts, _ = pairwise_counts(masks, chunk=4096, threads=2)
    matrix = pairwise(masks)
    monkeypatch.undo()
    assert set(moved) == {("cpu", (6, 6), torch.int64), ("numpy", (6, 6), torch.int64)}
    assert_matches_scipy(x, counts, matrix)


def test_callers_thread_count_is_left_alone():
    x = mask_rows(np.random.default_rng(8), 4, 300_000, 0.4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        pairwise_counts(list(x), chunk=1 << 12, threads=2)
        assert torch.get_num_threads() == 2
        seen = []
        worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        worker.start()
        worker.join()
        assert seen == [2]  # a thread started afterwards gets the caller's count, not 1
    finally:
        torch.set_num_threads(before)
