"""Maps of many masks: Jaccard distances, a metric-MDS embedding and hierarchical clusters.

Masks that pruning makes alike (same criterion, regime, or seed) should sit together in the
map and fall in one cluster. Distances are 1 − Jaccard of the kept sets. Jaccard across
different initialisations ignores neuron permutations: two masks of permuted but equivalent
networks look unrelated, so read clusters across seeds with that in mind.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.manifold import MDS

from maskstudy.analysis.overlap import WHOLE, MaskLike, pairwise
from maskstudy.errors import ConfigError
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.table import config_columns, run_name

# Linkages that are valid for any dissimilarity (centroid, median and ward assume Euclidean
# distances between observations, which Jaccard distances are not).
LINKAGES = ("average", "complete", "single", "weighted")
AXES = ("x", "y", "z")  # coordinate columns of mask_embedding
MIN_RUNS = 3
SYMMETRY_TOLERANCE = 1e-12

__all__ = ["cluster", "jaccard_distances", "linkage_matrix", "mask_embedding", "mds"]


def jaccard_distances(masks: Sequence[MaskLike]) -> np.ndarray:
    """N×N matrix of 1 − Jaccard (kept sets) between ``masks``: symmetric, zero diagonal."""
    return 1.0 - pairwise(masks, metric="jaccard")


def _checked(distances: Any) -> np.ndarray:
    """``distances`` as a float N×N array after checking it is a distance matrix."""
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or len(d) < 2:
        raise ConfigError(
            f"distances has shape {d.shape}; pass a square N×N matrix with N >= 2 "
            "(e.g. jaccard_distances(masks))"
        )
    if not np.isfinite(d).all() or (d < 0).any():
        raise ConfigError("distances holds negative, nan or infinite entries; pass distances >= 0")
    if np.abs(d - d.T).max() > SYMMETRY_TOLERANCE or np.abs(np.diag(d)).max() > 0:
        raise ConfigError(
            "distances is not symmetric with a zero diagonal; pass a distance matrix "
            "(d[i, j] = d[j, i], d[i, i] = 0)"
        )
    return (d + d.T) / 2


def _mds_options() -> dict[str, Any]:
    """Precomputed metric MDS in the installed scikit-learn's terms (``dissimilarity`` was
    renamed ``metric`` and ``metric`` ``metric_mds`` in 1.8)."""
    if "metric_mds" in inspect.signature(MDS).parameters:
        return {"metric": "precomputed", "metric_mds": True, "init": "classical_mds"}
    return {"dissimilarity": "precomputed", "metric": True, "n_init": 4}


def mds(distances: Any, dims: int = 2, seed: int = 0) -> np.ndarray:
    """N×dims metric-MDS coordinates whose Euclidean distances best match ``distances``
    (scikit-learn SMACOF from the classical-MDS start; ``seed`` fixes any randomness)."""
    d = _checked(distances)
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims < len(d):
        raise ConfigError(
            f"dims = {dims!r}; pass an integer from 1 to {len(d) - 1} (fewer than the "
            f"{len(d)} points embedded)"
        )
    model = MDS(n_components=dims, random_state=seed, **_mds_options())
    return model.fit_transform(d)


def _check_method(method: str) -> None:
    if method not in LINKAGES:
        raise ConfigError(f"method = {method!r}; choose one of: {', '.join(LINKAGES)}")


def linkage_matrix(distances: Any, method: str = "average") -> np.ndarray:
    """scipy's (N−1)×4 linkage matrix of ``distances`` (what ``dendrogram`` draws)."""
    _check_method(method)
    return linkage(squareform(_checked(distances), checks=False), method=method)


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """Cluster labels renumbered 1, 2, … in the order the items first show them."""
    order = {label: i + 1 for i, label in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([order[label] for label in labels.tolist()], dtype=np.int64)


def cluster(
    distances: Any,
    method: str = "average",
    k: int | None = None,
    threshold: float | None = None,
) -> np.ndarray:
    """Hierarchical cluster labels 1, 2, … (numbered in order of first appearance).

    ``k`` cuts the tree into (at most) k clusters; ``threshold`` cuts at that merge height
    (no two clusters closer than it under ``method``). With neither, the tree is cut in the
    widest gap between successive merge heights, which gives >= 2 clusters unless every merge
    happens at one height (then a single cluster).
    """
    if k is not None and threshold is not None:
        raise ConfigError(f"k = {k!r} and threshold = {threshold!r}; pass one of them, not both")
    tree = linkage_matrix(distances, method)
    count = len(tree) + 1
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= count:
            raise ConfigError(f"k = {k!r}; pass an integer from 1 to {count} (the items)")
        labels = fcluster(tree, t=k, criterion="maxclust")
    else:
        if threshold is None:
            threshold = _widest_gap(tree[:, 2])
        elif not isinstance(threshold, (int, float)) or not 0 <= threshold < np.inf:
            raise ConfigError(f"threshold = {threshold!r}; pass a merge height >= 0")
        labels = fcluster(tree, t=threshold, criterion="distance")
    return _first_appearance(labels)


def _widest_gap(heights: np.ndarray) -> float:
    """A cut height in the middle of the widest gap between successive merge heights."""
    gaps = np.diff(heights)
    if len(gaps) == 0 or gaps.max() <= 0:
        return float(heights[-1])
    i = int(np.argmax(gaps))
    return float((heights[i] + heights[i + 1]) / 2)


def _layer_mask(run: RunLike, level: int, layer: str | None) -> MaskLike:
    mask = run.mask(level)
    if layer is None or layer == WHOLE:
        return mask
    if layer not in mask:
        raise ConfigError(
            f"layer = {layer!r} is not a mask entry of run {run_name(run)!r}; "
            f"choose one of: {', '.join(mask)} (or None for the whole network)"
        )
    return mask[layer]


def mask_embedding(
    runs: Iterable[RunLike],
    level: int,
    layer: str | None = None,
    dims: int = 2,
    method: str = "average",
    k: int | None = None,
    threshold: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Tidy map of the runs' masks at ``level``: one row per run that reached it.

    Columns: run_id, level, layer ('all' = whole network), the MDS coordinates x, y (z when
    ``dims`` = 3) of the Jaccard distances, cluster (see :func:`cluster` for ``method``,
    ``k``, ``threshold``), then the run's config columns (criterion, regime, seed, …).
    """
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= len(AXES):
        raise ConfigError(
            f"dims = {dims!r}; mask_embedding names coordinates {', '.join(AXES)}, so pass "
            "1, 2 or 3 (call mds() directly for more)"
        )
    present = [run for run in runs if level in run.levels]
    if len(present) < MIN_RUNS:
        raise ConfigError(
            f"{len(present)} run(s) have level {level}; an embedding needs at least "
            f"{MIN_RUNS}: pass more runs or a level they all completed"
        )
    distances = jaccard_distances([_layer_mask(run, level, layer) for run in present])
    coords = mds(distances, dims, seed)
    labels = cluster(distances, method, k, threshold)
    rows = []
    for run, point, label in zip(present, coords, labels, strict=True):
        columns = config_columns(run)
        rows.append(
            {
                "run_id": columns.pop("run_id"),
                "level": level,
                "layer": WHOLE if layer is None else layer,
                **dict(zip(AXES, point.tolist(), strict=False)),
                "cluster": int(label),
                **columns,
            }
        )
    return pd.DataFrame(rows)
