"""Mask overlap: Jaccard, Hamming and overlap coefficient, beside their exact chance baselines.

A mask is a bool tensor/array (True = kept) or a mask dict; a dict is compared over all its
entries together (the whole network), or entry by entry with :func:`layerwise`. Every count
comes from one routine, :func:`pairwise_counts`: popcount over bit-packed masks, chunked.

Read overlaps against chance. Two random masks at 20 % density already have J ≈ 0.111, so
report the lift J / E[J] and the z-score next to the raw J. Jaccard of *pruned* sets
(``on="pruned"``) is large at high sparsity by construction and is not comparable with the
kept-set J. Jaccard across different initialisations ignores neuron permutations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from maskstudy.analysis.chance import (
    expected_hamming,
    expected_jaccard,
    lift,
    stratified_jaccard_moments,
    zscore,
)
from maskstudy.errors import ConfigError
from maskstudy.runs.config import RunConfig, field_paths
from maskstudy.runs.table import ALIASES, flatten, run_name

MaskLike = torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray]

METRICS = ("jaccard", "hamming", "overlap")
SETS = ("kept", "pruned")
WHOLE = "all"  # layer name of the whole-network row
LEVEL = "level"
DEFAULT_CHUNK = 1 << 16  # weights per mask packed at a time

__all__ = [
    "Overlap",
    "compare",
    "expected_hamming",
    "expected_jaccard",
    "hamming",
    "jaccard",
    "layerwise",
    "overlap_coefficient",
    "overlap_table",
    "pairwise",
    "pairwise_counts",
]


# --- flattening ------------------------------------------------------------------------------
def _flat_bool(x: Any, what: str) -> np.ndarray:
    """``x`` as a 1-D numpy bool array (a view when ``x`` is a contiguous CPU tensor/array)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.dtype != np.bool_:
        raise ConfigError(
            f"{what} has dtype {arr.dtype}; masks must be boolean (True = kept): "
            "pass `x != 0` or `x.bool()`"
        )
    return arr.reshape(-1)


def _parts(masks: Sequence[MaskLike]) -> tuple[list[str], list[list[np.ndarray]]]:
    """Entry names and, per mask, its entries as flat bool arrays in the first mask's key order.

    A plain tensor/array is one entry named ``'all'``. Masks must agree in keys and shapes.
    """
    if not masks:
        raise ConfigError("no masks given; pass at least one mask (tensor, array or mask dict)")
    names = list(masks[0]) if isinstance(masks[0], Mapping) else [WHOLE]
    if not names:
        raise ConfigError("mask 0 is an empty dict; pass a mask with at least one entry")
    shapes = [tuple(np.shape(e)) for e in _entries(masks[0], names, 0)]
    parts = []
    for i, mask in enumerate(masks):
        entries = _entries(mask, names, i)
        for name, entry, shape in zip(names, entries, shapes, strict=True):
            if tuple(np.shape(entry)) != shape:
                where = "" if name == WHOLE else f" entry {name!r}"
                raise ConfigError(
                    f"mask {i}{where} has shape {tuple(np.shape(entry))} but mask 0 has {shape}: "
                    "compare masks of the same model"
                )
        parts.append(
            [_flat_bool(e, f"mask {i} {n!r}") for n, e in zip(names, entries, strict=True)]
        )
    return names, parts


def _entries(mask: MaskLike, names: list[str], index: int) -> list[Any]:
    if names == [WHOLE]:
        if isinstance(mask, Mapping):
            raise ConfigError(f"mask {index} is a dict but mask 0 is a single tensor; mix no kinds")
        return [mask]
    if not isinstance(mask, Mapping):
        raise ConfigError(f"mask {index} is a single tensor but mask 0 is a dict; mix no kinds")
    if set(mask) != set(names):
        missing, extra = sorted(set(names) - set(mask)), sorted(set(mask) - set(names))
        raise ConfigError(
            f"mask {index} has other entries than mask 0 (missing: {missing}, extra: {extra}); "
            "compare masks of the same model and pruning scope"
        )
    return [mask[k] for k in names]


# --- counting -------------------------------------------------------------------------------
def _pack(mask_parts: list[np.ndarray], out: np.ndarray) -> None:
    """Bit-pack one mask's entries into ``out`` (uint64 words), each entry zero-padded to a word."""
    raw = out.view(np.uint8)
    at = 0
    for part in mask_parts:
        packed = np.packbits(part)
        raw[at : at + len(packed)] = packed
        at += -(-len(part) // 64) * 8


def _count_rows(rows: range, packed: np.ndarray, words: int, out: np.ndarray) -> None:
    """out[i, i:] = Σ popcount(packed[i] & packed[i:]) for each row i in ``rows``, ``words``
    64-bit words at a time (small scratch buffers that stay in cache)."""
    count = len(packed)
    both = np.empty((count, words), np.uint64)
    ones = np.empty((count, words), np.uint8)
    for start in range(0, packed.shape[1], words):
        block = packed[:, start : start + words]
        used = block.shape[1]
        for i in rows:
            m = count - i
            np.bitwise_and(block[i], block[i:], out=both[:m, :used])
            np.bitwise_count(both[:m, :used], out=ones[:m, :used])
            out[i, i:] += ones[:m, :used].sum(axis=1, dtype=np.uint32)


def _intersections(parts: list[list[np.ndarray]], chunk: int, threads: int) -> np.ndarray:
    """N×N matrix of |A_i ∧ A_j| (kept counts on the diagonal), exact int64.

    Every mask is bit-packed once (N·n/8 bytes, an eighth of the boolean masks), then each
    thread takes interleaved rows of the upper triangle and sweeps them ``chunk`` weights at a
    time, with no barrier between chunks.
    """
    count = len(parts)
    total_words = sum(-(-len(part) // 64) for part in parts[0])
    packed = np.zeros((count, total_words), np.uint64)  # zero padding after each entry
    out = np.zeros((count, count), np.int64)
    workers = min(threads, count)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(_pack, parts, packed))
        groups = [range(t, count, workers) for t in range(workers)]
        words = -(-min(chunk, 64 * total_words) // 64)
        list(pool.map(lambda rows: _count_rows(rows, packed, words, out), groups))
    return out + np.triu(out, 1).T


def _check_chunk(chunk: int, threads: int | None) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 64 <= chunk <= 1 << 31:
        raise ConfigError(f"chunk = {chunk!r} must be an integer in [64, 2**31] (weights per pass)")
    threads = torch.get_num_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads = {threads!r} must be an integer >= 1")
    return threads


def pairwise_counts(
    masks: Sequence[MaskLike], chunk: int = DEFAULT_CHUNK, threads: int | None = None
) -> tuple[np.ndarray, int]:
    """(I, n): I[i, j] = |A_i ∧ A_j| as exact int64 (kept counts on the diagonal), n weights.

    Popcount over bit-packed masks, ``chunk`` weights at a time on ``threads`` threads (default
    ``torch.get_num_threads()``). Peak extra memory ≈ N·n/8 bytes (the packed masks) +
    1.125·N·chunk/8 bytes per thread + 16·N² bytes, plus a full copy of any mask that is not a
    contiguous CPU tensor/array.
    """
    threads = _check_chunk(chunk, threads)
    _, parts = _parts(list(masks))
    return _intersections(parts, chunk, threads), sum(len(p) for p in parts[0])


def _layer_counts(
    masks: Sequence[MaskLike], chunk: int = DEFAULT_CHUNK, threads: int | None = None
) -> dict[str, tuple[np.ndarray, int]]:
    """{entry: (I, n)}: the intersection matrix of every mask entry (layer) on its own."""
    threads = _check_chunk(chunk, threads)
    names, parts = _parts(list(masks))
    return {
        name: (_intersections([p[e : e + 1] for p in parts], chunk, threads), len(parts[0][e]))
        for e, name in enumerate(names)
    }


# --- metrics from counts --------------------------------------------------------------------
def _metric(metric: str, on: str, n: int, k_a: Any, k_b: Any, inter: Any) -> np.ndarray:
    """Vectorised metric from counts; J = overlap = 1 where the sets compared are both empty."""
    if metric not in METRICS:
        raise ConfigError(f"metric = {metric!r}; choose one of: {', '.join(METRICS)}")
    if on not in SETS:
        raise ConfigError(f"on = {on!r}; choose one of: {', '.join(SETS)}")
    k_a, k_b, inter = (np.asarray(v, dtype=np.float64) for v in (k_a, k_b, inter))
    if on == "pruned":
        k_a, k_b, inter = n - k_a, n - k_b, n - k_a - k_b + inter
    if metric == "hamming":
        return (k_a + k_b - 2 * inter) / n
    denominator = k_a + k_b - inter if metric == "jaccard" else np.minimum(k_a, k_b)
    return np.divide(
        inter,
        denominator,
        out=np.ones(np.broadcast(inter, denominator).shape),
        where=denominator > 0,
    )


def _two(a: MaskLike, b: MaskLike) -> tuple[int, int, int, int]:
    """(n, |A|, |B|, |A∧B|) over all entries."""
    inter, n = pairwise_counts([a, b])
    return n, int(inter[0, 0]), int(inter[1, 1]), int(inter[0, 1])


def jaccard(a: MaskLike, b: MaskLike, on: str = "kept") -> float:
    """|A∧B| / |A∨B| over the kept (or, with ``on="pruned"``, the pruned) weights; 1 if both empty."""
    n, k_a, k_b, inter = _two(a, b)
    return float(_metric("jaccard", on, n, k_a, k_b, inter))


def hamming(a: MaskLike, b: MaskLike, normalize: bool = True) -> float:
    """Positions where the masks differ: a fraction of all weights, or a count if not ``normalize``."""
    n, k_a, k_b, inter = _two(a, b)
    differ = k_a + k_b - 2 * inter
    return differ / n if normalize else differ


def overlap_coefficient(a: MaskLike, b: MaskLike, on: str = "kept") -> float:
    """|A∧B| / min(|A|, |B|): 1 exactly when one set contains the other (1 if one is empty)."""
    n, k_a, k_b, inter = _two(a, b)
    return float(_metric("overlap", on, n, k_a, k_b, inter))


@dataclass(frozen=True)
class Overlap:
    """Observed overlap of two masks beside its chance baseline: independent uniform masks
    keeping the same number of weights in every layer. ``hamming`` values are fractions of
    ``n``; ``nested`` is true when one kept set contains the other."""

    n: int
    kept_a: int
    kept_b: int
    intersection: int
    density_a: float
    density_b: float
    jaccard: float
    expected_jaccard: float
    jaccard_std: float
    lift: float
    z: float
    hamming: float
    expected_hamming: float
    overlap: float
    nested: bool


Stratum = tuple[int, int, int, int]  # (n, kept_a, kept_b, intersection) of one layer


def _record(strata: Sequence[Stratum]) -> Overlap:
    """Overlap of the union of ``strata``; chance keeps every stratum's kept counts."""
    n, k_a, k_b, inter = (sum(s[c] for s in strata) for c in range(4))
    observed = float(_metric("jaccard", "kept", n, k_a, k_b, inter))
    mean, sd = stratified_jaccard_moments(tuple(s[:3] for s in strata))
    chance_h = sum(expected_hamming(*s[:3], normalize=False) for s in strata) / n
    return Overlap(
        n=n,
        kept_a=k_a,
        kept_b=k_b,
        intersection=inter,
        density_a=k_a / n,
        density_b=k_b / n,
        jaccard=observed,
        expected_jaccard=mean,
        jaccard_std=sd,
        lift=lift(observed, mean),
        z=zscore(observed, mean, sd),
        hamming=(k_a + k_b - 2 * inter) / n,
        expected_hamming=chance_h,
        overlap=float(_metric("overlap", "kept", n, k_a, k_b, inter)),
        nested=inter == min(k_a, k_b),
    )


def _strata(
    counts: Mapping[str, tuple[np.ndarray, int]], layers: Iterable[str], i: int, j: int
) -> list[Stratum]:
    return [
        (n, int(inter[i, i]), int(inter[j, j]), int(inter[i, j]))
        for inter, n in (counts[layer] for layer in layers)
    ]


def compare(a: MaskLike, b: MaskLike) -> Overlap:
    """Observed Jaccard/Hamming/overlap of two masks with E[J], sd, lift = J/E[J] and z-score.

    The chance masks keep as many weights as ``a`` and ``b`` in every entry (layer), see
    :func:`~maskstudy.analysis.chance.stratified_jaccard_moments`. lift is nan when E[J] = 0
    (a mask keeps nothing); z is nan when chance has no spread (masks keep all or nothing).
    """
    counts = _layer_counts([a, b])
    return _record(_strata(counts, counts, 0, 1))


def _pair_rows(
    counts: Mapping[str, tuple[np.ndarray, int]],
    pairs: Iterable[tuple[int, int]],
    layers: Sequence[str],
    labels: Mapping[str, Sequence[Any]],
) -> list[dict[str, Any]]:
    """One row per (pair, layer), ``'all'`` = every entry together; ``labels[col][i]`` / ``[j]``
    fill columns ``col_a`` / ``col_b``."""
    rows = []
    for i, j in pairs:
        ids = {
            f"{col}_{side}": values[k]
            for col, values in labels.items()
            for side, k in (("a", i), ("b", j))
        }
        for layer in layers:
            strata = _strata(counts, counts if layer == WHOLE else [layer], i, j)
            rows.append({**ids, "layer": layer, **dataclasses.asdict(_record(strata))})
    return rows


def layerwise(a: MaskLike, b: MaskLike) -> pd.DataFrame:
    """One :class:`Overlap` row per mask entry, then the whole network (``layer='all'``)."""
    counts = _layer_counts([a, b])
    layers = list(counts) if WHOLE in counts else [*counts, WHOLE]
    return pd.DataFrame(_pair_rows(counts, [(0, 1)], layers, {}))


def pairwise(
    masks: Sequence[MaskLike],
    metric: str = "jaccard",
    on: str = "kept",
    chunk: int = DEFAULT_CHUNK,
    threads: int | None = None,
) -> np.ndarray:
    """N×N matrix of ``metric`` (jaccard | hamming (a fraction) | overlap) between ``masks``.

    One bit-packed popcount pass over all masks (see :func:`pairwise_counts` for memory);
    mask dicts are compared over all entries in the first mask's key order.
    """
    _metric(metric, on, 1, 0, 0, 0)  # validate before the expensive pass
    inter, n = pairwise_counts(masks, chunk, threads)
    kept = np.diag(inter)
    return _metric(metric, on, n, kept[:, None], kept[None, :], inter)


# --- tables over runs -----------------------------------------------------------------------
class RunLike(Protocol):
    """What :func:`overlap_table` needs of a run (``maskstudy.runs.store.Run`` has it)."""

    config: RunConfig

    @property
    def levels(self) -> list[int]: ...

    def mask(self, level: int) -> dict[str, torch.Tensor]: ...


def along_field(along: str) -> str:
    """The dotted config field named by ``along`` (an alias such as 'criterion', or a path)."""
    fields = {p: p for p in field_paths() if p != "levels"}
    fields.update({alias: path for path, alias in ALIASES.items()})
    if along not in fields:
        raise ConfigError(
            f"along = {along!r}; choose 'level', an alias ({', '.join(ALIASES.values())}) "
            f"or a config field ({', '.join(p for p in field_paths() if p != 'levels')})"
        )
    return fields[along]


def _selected_layers(mask: Mapping[str, Any], layers: Iterable[str] | None) -> list[str]:
    if layers is None:
        return [*mask, WHOLE]
    layers = list(layers)
    unknown = sorted(set(layers) - set(mask) - {WHOLE})
    if unknown:
        raise ConfigError(f"layers {unknown} are not mask entries; entries: {', '.join(mask)}")
    return [*(name for name in mask if name in layers), WHOLE]


def _wanted(levels: Iterable[int] | None, available: Iterable[int]) -> list[int]:
    return sorted(set(available) if levels is None else set(available) & set(levels))


def overlap_table(
    runs: Iterable[RunLike],
    along: str = "seed",
    levels: Iterable[int] | None = None,
    layers: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Tidy overlap table: one row per (pair of masks, level, layer), whole network as 'all'.

    ``along`` = a config field ('seed', 'criterion', 'regime', or any dotted field path):
    compare, at each matched level, every two runs whose configs differ only in that field
    (columns ``value_a``/``value_b`` hold the two values). ``along='level'``: compare levels
    L < L' of the same run (``level``, ``level_b``).

    Pitfall: inside one IMP run the masks are nested (M^{t+1} ⊂ M^t), so J(M^t, M^{t+1}) equals
    the density ratio (0.8 at amount 0.2) by construction, and the lift over *independent*
    random masks is meaningless. Rows whose kept sets are nested get ``nested=True``; read
    them as a sanity check, not as similarity. ``layers`` limits the per-layer rows (the 'all'
    row is always there); ``levels`` limits the levels compared.
    """
    runs = list(runs)
    rows: list[dict[str, Any]] = []
    if along == LEVEL:
        for run in runs:
            chosen = _wanted(levels, run.levels)
            masks = [run.mask(level) for level in chosen]
            if len(masks) < 2:
                continue
            counts = _layer_counts(masks)
            labels = {"run": [run_name(run)] * len(chosen), "value": chosen, "level": chosen}
            rows += _pair_rows(
                counts,
                combinations(range(len(chosen)), 2),
                _selected_layers(masks[0], layers),
                labels,
            )
    else:
        field = along_field(along)
        groups: dict[tuple[Any, ...], list[tuple[RunLike, Any]]] = {}
        for run in runs:
            flat = flatten(run.config.to_dict())
            value = flat.pop(field)
            for how_much in ("levels", "branch.parent", "branch.first"):  # not what a run is
                flat.pop(how_much, None)
            groups.setdefault(tuple(sorted(flat.items())), []).append((run, value))
        for members in groups.values():
            rows += _group_rows(members, levels, layers)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.rename(columns={"level_a": "level"})
    first = ["run_a", "run_b", "value_a", "value_b", "level", "level_b", "layer"]
    return frame[first + [c for c in frame.columns if c not in first]]


def _group_rows(
    members: list[tuple[RunLike, Any]], levels: Iterable[int] | None, layers: Iterable[str] | None
) -> list[dict[str, Any]]:
    """Rows for every two runs of one group (same config but the ``along`` field) per level."""
    rows: list[dict[str, Any]] = []
    all_levels = _wanted(levels, {lv for run, _ in members for lv in run.levels})
    for level in all_levels:
        present = [(run, value) for run, value in members if level in run.levels]
        pairs = [
            (i, j)
            for i, j in combinations(range(len(present)), 2)
            if present[i][1] != present[j][1]
        ]
        if not pairs:
            continue
        masks = [run.mask(level) for run, _ in present]
        labels = {
            "run": [run_name(run) for run, _ in present],
            "value": [value for _, value in present],
            "level": [level] * len(present),
        }
        rows += _pair_rows(_layer_counts(masks), pairs, _selected_layers(masks[0], layers), labels)
    return rows
