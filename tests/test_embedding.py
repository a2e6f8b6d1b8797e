"""Mask maps: Jaccard distances against scipy, MDS recovering known geometry, clusters
recovering planted groups, linkage equal to scipy's, embedding tables on hand-made runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial import procrustes
from scipy.spatial.distance import pdist, squareform

from maskstudy.analysis.embedding import (
    LINKAGES,
    cluster,
    jaccard_distances,
    linkage_matrix,
    mask_embedding,
    mds,
)
from maskstudy.errors import ConfigError
from maskstudy.runs.config import PruneConfig, RunConfig

SHAPES = {"fc1.weight": (12, 20), "fc2.weight": (6, 12)}


def noisy_copies(
    rng: np.random.Generator, base: np.ndarray, groups: list[int], flips: int
) -> list[np.ndarray]:
    """One copy of ``base[g]`` per entry of ``groups``, with ``flips`` random bits flipped."""
    masks = []
    for g in groups:
        mask = base[g].copy()
        where = rng.choice(mask.size, flips, replace=False)
        mask[where] = ~mask[where]
        masks.append(mask)
    return masks


def planted(groups: list[int], flips: int = 12, seed: int = 0) -> list[np.ndarray]:
    """Flat masks near one of two random 30 %-density masks, chosen by ``groups``."""
    rng = np.random.default_rng(seed)
    return noisy_copies(rng, rng.random((2, 600)) < 0.3, groups, flips)


GROUPS = [0, 1, 1, 0, 1, 0, 0, 1]
TRUTH = np.array([1, 2, 2, 1, 2, 1, 1, 2])  # GROUPS numbered by first appearance


# --- distances and MDS ----------------------------------------------------------------------
def test_jaccard_distances_match_scipy_for_arrays_and_dicts():
    masks = planted(GROUPS)
    expected = squareform(pdist(np.array(masks), metric="jaccard"))
    d = jaccard_distances(masks)
    np.testing.assert_allclose(d, expected, rtol=0, atol=1e-15)
    assert (d == d.T).all() and (np.diag(d) == 0).all()
    as_dicts = [{"a": torch.from_numpy(m[:200]), "b": torch.from_numpy(m[200:])} for m in masks]
    np.testing.assert_allclose(jaccard_distances(as_dicts), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("dims", [2, 3])
def test_mds_recovers_euclidean_distances(dims):
    points = np.random.default_rng(4).normal(size=(5, dims))
    d = squareform(pdist(points))
    coords = mds(d, dims=dims, seed=1)
    assert coords.shape == (5, dims)
    np.testing.assert_allclose(squareform(pdist(coords)), d, atol=1e-6)
    _, _, disparity = procrustes(points, coords)  # same shape up to rotation, shift, scale
    assert disparity < 1e-10
    np.testing.assert_array_equal(mds(d, dims=dims, seed=1), coords)


def test_mds_of_a_line_in_one_dimension():
    d = np.abs(np.subtract.outer([0.0, 1.0, 3.0, 7.0], [0.0, 1.0, 3.0, 7.0]))
    line = mds(d, dims=1).ravel()
    np.testing.assert_allclose(np.abs(np.subtract.outer(line, line)), d, atol=1e-6)


def test_mds_rejects_bad_input():
    d = squareform(pdist(np.eye(4)))
    with pytest.raises(ConfigError, match="dims = 4"):
        mds(d, dims=4)
    with pytest.raises(ConfigError, match="shape"):
        mds(d[:3])
    skewed = d.copy()
    skewed[0, 1] += 0.1
    with pytest.raises(ConfigError, match="not symmetric"):
        mds(skewed)
    with pytest.raises(ConfigError, match="negative, nan"):
        mds(d * np.nan)


# --- clustering -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", LINKAGES)
def test_cluster_recovers_planted_groups(method):
    d = jaccard_distances(planted(GROUPS))
    np.testing.assert_array_equal(cluster(d, method, k=2), TRUTH)
    np.testing.assert_array_equal(cluster(d, method, threshold=0.5), TRUTH)
    np.testing.assert_array_equal(cluster(d, method), TRUTH)  # widest gap
    assert len(set(cluster(d, method, k=8))) == 8


@pytest.mark.parametrize("method", LINKAGES)
def test_linkage_and_labels_equal_scipy(method):
    masks = np.array(planted(GROUPS, flips=150, seed=3))  # noisy: a less trivial tree
    reference = linkage(pdist(masks, metric="jaccard"), method=method)
    tree = linkage_matrix(jaccard_distances(list(masks)), method)
    np.testing.assert_allclose(tree, reference, rtol=0, atol=1e-12)
    for k in (2, 3, 5):
        scipy_labels = fcluster(reference, t=k, criterion="maxclust")
        ours = cluster(jaccard_distances(list(masks)), method, k=k)
        # the same partition (labels renumbered by first appearance)
        assert len(set(zip(ours, scipy_labels, strict=True))) == len(set(ours))
        assert len(set(ours)) == len(set(scipy_labels))


def test_widest_gap_cut_by_hand():
    positions = np.array([0.0, 1.0, 2.0, 10.0, 11.0])
    d = np.abs(np.subtract.outer(positions, positions))
    # single linkage merges at 1, 1, 1, 8; average at 1, 1, 1.5, 9.5: cut inside the last gap
    for method in ("single", "average"):
        np.testing.assert_array_equal(cluster(d, method), [1, 1, 1, 2, 2])
    equidistant = 1 - np.eye(4)  # every merge at height 1: one cluster
    np.testing.assert_array_equal(cluster(equidistant), [1, 1, 1, 1])
    np.testing.assert_array_equal(cluster(d, "single", threshold=0.5), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(cluster(d, "complete", k=3), [1, 1, 2, 3, 3])


def test_cluster_rejects_bad_arguments():
    d = 1 - np.eye(4)
    with pytest.raises(ConfigError, match="not both"):
        cluster(d, k=2, threshold=0.5)
    with pytest.raises(ConfigError, match="method = 'ward'.*average"):
        cluster(d, "ward")
    with pytest.raises(ConfigError, match="k = 5"):
        cluster(d, k=5)
    with pytest.raises(ConfigError, match="threshold = -1"):
        cluster(d, threshold=-1)


# --- tables over runs -----------------------------------------------------------------------
@dataclass
class FakeRun:
    config: RunConfig
    masks: dict[int, dict[str, torch.Tensor]]

    @property
    def levels(self) -> list[int]:
        return sorted(self.masks)

    def mask(self, level: int) -> dict[str, torch.Tensor]:
        return self.masks[level]


def fake_runs() -> list[FakeRun]:
    """Magnitude runs near one level-1 mask, random runs near another; seed 9 stops at level 0."""
    rng = np.random.default_rng(7)
    base = rng.random((2, sum(r * c for r, c in SHAPES.values()))) < 0.3
    specs = [("magnitude", 0), ("random", 0), ("magnitude", 1), ("random", 1), ("magnitude", 2)]
    flat = noisy_copies(rng, base, [int(criterion == "random") for criterion, _ in specs], flips=8)
    runs = []
    for (criterion, seed), mask in zip(specs, flat, strict=True):
        parts = np.split(mask, [SHAPES["fc1.weight"][0] * SHAPES["fc1.weight"][1]])
        level1 = {
            name: torch.from_numpy(part.reshape(shape))
            for (name, shape), part in zip(SHAPES.items(), parts, strict=True)
        }
        dense = {name: torch.ones(shape, dtype=torch.bool) for name, shape in SHAPES.items()}
        config = RunConfig(seed=seed, prune=PruneConfig(criterion=criterion))
        runs.append(FakeRun(config, {0: dense, 1: level1}))
    runs.insert(2, FakeRun(RunConfig(seed=9), {0: runs[0].masks[0]}))
    return runs


def flat_masks(runs: list[FakeRun], layers: list[str]) -> np.ndarray:
    return np.array([np.concatenate([r.mask(1)[n].numpy().ravel() for n in layers]) for r in runs])


def test_mask_embedding_rows_coordinates_and_clusters():
    runs = fake_runs()
    frame = mask_embedding(runs, level=1, k=2)
    present = [run for run in runs if 1 in run.levels]
    assert list(frame.run_id) == [run.config.run_id() for run in present]
    assert list(frame.criterion) == ["magnitude", "random", "magnitude", "random", "magnitude"]
    assert list(frame.seed) == [0, 0, 1, 1, 2]
    assert list(frame["prune.criterion"]) == list(frame.criterion)
    assert (frame.level == 1).all() and (frame.layer == "all").all()
    assert list(frame.cluster) == [1, 2, 1, 2, 1]  # the criterion groups
    distances = squareform(pdist(flat_masks(present, list(SHAPES)), metric="jaccard"))
    np.testing.assert_allclose(frame[["x", "y"]].to_numpy(), mds(distances), atol=1e-9)
    assert list(frame.columns[:6]) == ["run_id", "level", "layer", "x", "y", "cluster"]


def test_mask_embedding_of_one_layer_in_three_dimensions():
    runs = fake_runs()
    frame = mask_embedding(runs, level=1, layer="fc2.weight", dims=3, method="single", seed=2)
    present = [run for run in runs if 1 in run.levels]
    distances = squareform(pdist(flat_masks(present, ["fc2.weight"]), metric="jaccard"))
    np.testing.assert_allclose(frame[["x", "y", "z"]].to_numpy(), mds(distances, 3, 2), atol=1e-9)
    np.testing.assert_array_equal(frame.cluster, cluster(distances, "single"))
    assert (frame.layer == "fc2.weight").all()


def test_mask_embedding_errors_name_the_fix():
    runs = fake_runs()
    with pytest.raises(ConfigError, match="2 run.* level 1.*at least 3"):
        mask_embedding(runs[:3], level=1)
    with pytest.raises(ConfigError, match="'fc9.weight'.*fc1.weight, fc2.weight"):
        mask_embedding(runs, level=1, layer="fc9.weight")
    with pytest.raises(ConfigError, match="dims = 4"):
        mask_embedding(runs, level=1, dims=4)
