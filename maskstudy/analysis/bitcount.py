"""The counting engine of every mask overlap: intersections and sizes of many masks at once.

Masks are flattened to bool arrays, bit-packed in chunks and popcounted pairwise on a thread
pool, so N masks of n weights cost about N·n/8 bytes of memory, whatever n.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from maskstudy.errors import ConfigError

MaskLike = torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray]
DEFAULT_CHUNK = 1 << 16  # weights per mask packed at a time
WHOLE = "all"  # layer name of the whole-network row


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


def layer_counts(
    masks: Sequence[MaskLike], chunk: int = DEFAULT_CHUNK, threads: int | None = None
) -> dict[str, tuple[np.ndarray, int]]:
    """{entry: (I, n)}: the intersection matrix of every mask entry (layer) on its own."""
    threads = _check_chunk(chunk, threads)
    names, parts = _parts(list(masks))
    return {
        name: (_intersections([p[e : e + 1] for p in parts], chunk, threads), len(parts[0][e]))
        for e, name in enumerate(names)
    }
