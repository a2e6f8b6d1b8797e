"""The counting engine of every mask overlap: intersections and sizes of many masks at once.

The N×N intersection counts of N flattened 0/1 masks X (N×n) are the Gram matrix X·Xᵀ, computed
``chunk`` weights at a time and summed exactly in int64:

* on the CPU, as int8 GEMMs (``torch._int_mm``, oneDNN: 0/1 bytes in, int32 sums out, exact
  as chunks are capped at 2**30 weights; float32 GEMMs where a torch lacks it). Each of ``threads``
  worker threads copies a chunk of every mask into its own N×chunk int8 buffer and runs its
  GEMMs single-threaded, so a busy machine stalls no thread team.
* on any other torch device (masks that all live on one GPU), as float32 GEMMs on that device:
  products are 0 or 1 and every partial sum an integer ≤ chunk ≤ 2**24, so float32 (and TF32)
  sums are exact there too. Only the N×N result comes back to the host.

Memory: N·chunk bytes per CPU thread (4·N·chunk bytes on a device) plus O(N²), whatever n.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from maskstudy.errors import ConfigError

MaskLike = torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray]
Flat = torch.Tensor | np.ndarray  # one flattened mask entry (bool)
DEFAULT_CHUNK = 1 << 16  # weights per mask counted at a time
WHOLE = "all"  # layer name of the whole-network row
INT8_LIMIT = 1 << 30  # weights per int8 GEMM: its int32 sums stay exact
FLOAT32_LIMIT = 1 << 24  # weights per float32 GEMM: every partial sum is an exact float32
HOST_DEVICES = ("cpu",)  # torch device types counted on host threads; others on the device


# --- flattening ------------------------------------------------------------------------------
def _flat_bool(x: Any, what: str) -> Flat:
    """``x`` flattened to 1-D bool: a torch tensor stays a tensor on its device, anything else
    becomes a numpy array (views wherever ``x`` is contiguous)."""
    if isinstance(x, torch.Tensor):
        if x.dtype != torch.bool:
            raise ConfigError(
                f"{what} has dtype {x.dtype}; masks must be boolean (True = kept): "
                "pass `x != 0` or `x.bool()`"
            )
        return x.detach().reshape(-1)
    arr = np.asarray(x)
    if arr.dtype != np.bool_:
        raise ConfigError(
            f"{what} has dtype {arr.dtype}; masks must be boolean (True = kept): "
            "pass `x != 0` or `x.bool()`"
        )
    return arr.reshape(-1)


def _parts(masks: Sequence[MaskLike]) -> tuple[list[str], list[list[Flat]]]:
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
def _device(parts: list[list[Flat]]) -> torch.device | None:
    """The device of the masks when all are torch tensors on one device, else None (numpy)."""
    flat = [p for mask in parts for p in mask]
    if not all(isinstance(p, torch.Tensor) for p in flat):
        return None
    devices = {p.device for p in flat}
    return devices.pop() if len(devices) == 1 else None


@functools.cache
def _int8_gemm() -> bool:
    """Whether this torch has the exact CPU int8 GEMM (``torch._int_mm``); else float32."""
    try:
        probe = torch.ones((1, 8), dtype=torch.int8)
        return int(torch._int_mm(probe, probe.t())) == 8
    except (AttributeError, NotImplementedError, RuntimeError):
        return False


def _gram(block: torch.Tensor) -> torch.Tensor:
    """block·blockᵀ of a 0/1 int8 or float32 N×k block, as exact int64 (k a multiple of 8:
    ``torch._int_mm`` returns garbage for k = 1 on the CPU in torch 2.13)."""
    if block.dtype == torch.int8:
        return torch._int_mm(block, block.t()).to(torch.int64)
    return torch.mm(block, block.t()).to(torch.int64)


def _segments(lengths: list[int], size: int) -> list[list[tuple[int, int, int]]]:
    """Chunks of ``size`` weights of the entries laid end to end: per chunk (entry, start, stop)."""
    chunks: list[list[tuple[int, int, int]]] = []
    room = 0
    for entry, length in enumerate(lengths):
        at = 0
        while at < length:
            if room == 0:
                chunks.append([])
                room = size
            take = min(room, length - at)
            chunks[-1].append((entry, at, at + take))
            at += take
            room -= take
    return chunks


def _chunk_size(chunk: int, limit: int, weights: int) -> int:
    """Weights per GEMM: ``chunk`` capped at ``limit`` and at ``weights``, a multiple of 8."""
    return min(chunk, limit, max(8, -(-weights // 8) * 8)) // 8 * 8


def _count_chunks(
    parts: list[list[Flat]], chunks: Iterator[list[tuple[int, int, int]]], size: int, device: Any
) -> np.ndarray | torch.Tensor:
    """Σ over ``chunks`` (taken from a shared iterator) of the chunk's exact Gram matrix.

    ``device`` None: numpy masks copied into an int8 buffer allocated by numpy; a CPU device:
    torch masks copied into the same kind of buffer; any other device: a float32 buffer there.
    """
    count = len(parts)
    on_host = device is None or device.type in HOST_DEVICES
    int8 = on_host and _int8_gemm()
    if on_host:
        host = np.empty(count * size, np.int8 if int8 else np.float32)
        buffer = torch.from_numpy(host)
        total: np.ndarray | torch.Tensor = np.zeros((count, count), np.int64)
    else:
        buffer = torch.empty(count * size, dtype=torch.float32, device=device)
        total = torch.zeros((count, count), dtype=torch.int64, device=device)
    for segments in chunks:
        used = sum(stop - start for _, start, stop in segments)
        width = -(-used // 8) * 8  # zero columns pad a short last chunk: they count nothing
        rows = [[part[e][start:stop] for e, start, stop in segments] for part in parts]
        if width == used:  # one copy of the whole chunk, row after row
            pieces = [piece for row in rows for piece in row]
            if device is None:
                np.concatenate(pieces, out=host[: count * used], casting="unsafe")
            else:
                torch.cat(pieces, out=buffer[: count * used])
        else:
            block = buffer[: count * width].view(count, width)
            block[:, used:] = 0
            for i, row in enumerate(rows):
                if device is None:
                    np.concatenate(row, out=host[i * width : i * width + used], casting="unsafe")
                else:
                    torch.cat(row, out=block[i, :used])
        gram = _gram(buffer[: count * width].view(count, width))
        if isinstance(total, np.ndarray):
            total += gram.numpy()
        else:
            total += gram
    return total


def _single_threaded(
    parts: list[list[Flat]], chunks: Iterator[list[tuple[int, int, int]]], size: int, device: Any
) -> np.ndarray | torch.Tensor:
    """:func:`_count_chunks` with this thread's torch (OpenMP/oneDNN) threads set to 1."""
    torch.set_num_threads(1)
    return _count_chunks(parts, chunks, size, device)


def _intersections(parts: list[list[Flat]], chunk: int, threads: int) -> np.ndarray:
    """N×N matrix of |A_i ∧ A_j| (kept counts on the diagonal), exact int64.

    Masks that all live on one non-CPU torch device are counted there in the calling thread;
    otherwise ``threads`` worker threads take the chunks one after another as they finish.
    """
    count = len(parts)
    lengths = [len(p) for p in parts[0]]
    device = _device(parts)
    if device is not None and device.type not in HOST_DEVICES:
        size = _chunk_size(chunk, FLOAT32_LIMIT, sum(lengths))
        total = _count_chunks(parts, iter(_segments(lengths, size)), size, device)
        return total.cpu().numpy()
    if device is None:  # mixed inputs: torch entries as numpy views (copies if off the CPU)
        parts = [[p.cpu().numpy() if isinstance(p, torch.Tensor) else p for p in m] for m in parts]
    limit = INT8_LIMIT if _int8_gemm() else FLOAT32_LIMIT
    size = _chunk_size(chunk, limit, sum(lengths))
    plan = _segments(lengths, size)
    chunks = iter(plan)  # shared: each worker takes the next chunk when it is free
    workers = max(1, min(threads, len(plan)))
    caller_threads = torch.get_num_threads()
    try:
        if workers == 1:
            total = _single_threaded(parts, chunks, size, device)
        else:
            with ThreadPoolExecutor(workers) as pool:
                jobs = [
                    pool.submit(_single_threaded, parts, chunks, size, device)
                    for _ in range(workers)
                ]
                total = sum((job.result() for job in jobs), np.zeros((count, count), np.int64))
    finally:
        torch.set_num_threads(caller_threads)  # also resets the default of new threads
    return np.asarray(total)


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

    Exact Gram matrices of the 0/1 masks, ``chunk`` weights at a time (at most 2**30 on the
    CPU, 2**24 on another device). CPU masks (numpy arrays, CPU tensors) are counted on
    ``threads`` threads (default ``torch.get_num_threads()``), each with its own N·chunk-byte
    int8 buffer; masks that all live on one other torch device (a GPU) are counted there with
    a 4·N·chunk-byte float32 buffer, and only I comes back. Mixed inputs are counted on the CPU.
    Extra memory beyond the buffers is O(N²) plus a copy of any mask that is not contiguous.
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
