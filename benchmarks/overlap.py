"""Time an N×N Jaccard matrix of random masks: ``maskstudy.analysis.overlap.pairwise`` against
``scipy.spatial.distance.pdist(metric="jaccard")`` on the same boolean arrays, same process.

maskstudy counts intersections as exact chunked Gram matrices X·Xᵀ of the 0/1 masks (int8
GEMMs on the CPU, float32 GEMMs on a GPU); scipy compares every pair with its C loop over the
booleans. The masks have LeNet-300-100's 266,200 weights by default. scipy may run on the
first ``--baseline-masks`` masks only: its cost per pair is constant, so its time is then
scaled to the full number of pairs (printed). The two are timed in turns, ``--repeats`` times
each, and the fastest of each is kept, so a busy machine slows both alike.

The issue's target size: ``--masks 64 --weights 1000000 --baseline-masks 64`` (≥ 100× on 2
cores). ``--device cpu`` or ``--device cuda`` hands maskstudy torch tensors on that device
instead of numpy arrays. Peak memory is what ``pairwise`` allocates on top of the masks:
tracemalloc sees numpy's buffers (the CPU path allocates its chunk buffers with numpy) but
not torch's, so on a GPU the peak of ``torch.cuda.max_memory_allocated`` is printed instead.

    python benchmarks/overlap.py [--masks 200] [--weights 266200] [--density 0.2]
                                 [--baseline-masks 200] [--repeats 3] [--seed 0]
                                 [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import scipy
import torch
from scipy.spatial.distance import pdist, squareform

from maskstudy.analysis.overlap import pairwise


def random_masks(count: int, weights: int, density: float, seed: int) -> np.ndarray:
    """``count`` independent uniform masks (rows) keeping round(density·weights) weights each."""
    rows = np.zeros((count, weights), bool)
    rows[:, : round(density * weights)] = True
    return np.random.default_rng(seed).permuted(rows, axis=1)


def best_times(
    fns: list[Callable[[], np.ndarray]], repeats: int, sync: Callable[[], None]
) -> list[tuple[float, np.ndarray]]:
    """Per function: (fastest wall time of ``repeats`` calls, the result of its last call); the
    functions take turns, so load that comes and goes on the machine hits them alike."""
    times: list[list[float]] = [[] for _ in fns]
    results: list[np.ndarray] = [np.empty(0) for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            sync()
            began = time.perf_counter()
            results[k] = fn()
            sync()
            times[k].append(time.perf_counter() - began)
    return [(min(t), r) for t, r in zip(times, results, strict=True)]


def peak_extra_memory(fn: Callable[[], np.ndarray]) -> int:
    """Bytes numpy allocated at the peak of one ``fn()`` call, beyond what existed before it."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=positive_int, default=200, help="masks compared (N)")
    parser.add_argument("--weights", type=positive_int, default=266_200, help="weights per mask")
    parser.add_argument("--density", type=float, default=0.2, help="fraction of weights kept")
    parser.add_argument(
        "--baseline-masks",
        type=positive_int,
        default=200,
        help="masks given to scipy (at most --masks); its time is scaled per pair",
    )
    parser.add_argument("--repeats", type=positive_int, default=3, help="best of this many")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default=None, help="give maskstudy torch tensors on this device (cpu, cuda)"
    )
    args = parser.parse_args()
    if not 0 < args.density < 1:
        parser.error(f"--density {args.density} must lie strictly between 0 and 1")
    if not 2 <= args.baseline_masks <= args.masks:
        parser.error(f"--baseline-masks {args.baseline_masks} must lie in [2, --masks]")

    masks = random_masks(args.masks, args.weights, args.density, args.seed)
    given: list = list(masks)
    on_gpu = args.device is not None and torch.device(args.device).type == "cuda"
    if args.device is not None:
        given = [torch.from_numpy(row).to(args.device) for row in masks]
    sync = torch.cuda.synchronize if on_gpu else lambda: None
    pairs = args.masks * (args.masks - 1) // 2
    base_count = args.baseline_masks
    base_pairs = base_count * (base_count - 1) // 2
    print(
        f"{args.masks} masks x {args.weights:,} weights at density {args.density}; "
        f"numpy {np.__version__}, scipy {scipy.__version__}, {torch.get_num_threads()} threads; "
        f"best of {args.repeats}, taking turns; masks as "
        + ("numpy arrays" if args.device is None else f"torch tensors on {args.device}")
    )

    (ours, matrix), (base, distances) = best_times(
        [
            lambda: pairwise(given, "jaccard"),
            lambda: pdist(masks[:base_count], metric="jaccard"),
        ],
        args.repeats,
        sync,
    )
    similarity = 1 - squareform(distances)
    np.fill_diagonal(similarity, 1.0)
    error = np.abs(similarity - matrix[:base_count, :base_count]).max()
    if error > 1e-12:
        raise SystemExit(f"the two Jaccard matrices differ by {error:.3g}: benchmark invalid")
    scaled = base * pairs / base_pairs

    print(
        f"maskstudy pairwise : {ours:8.3f} s for {pairs:,} pairs ({ours / pairs * 1e6:.2f} us/pair)"
    )
    note = (
        "measured"
        if base_count == args.masks
        else f"scaled from {base:.3f} s on {base_count} masks ({base_pairs:,} pairs)"
    )
    print(
        f"scipy pdist jaccard: {scaled:8.3f} s for {pairs:,} pairs "
        f"({base / base_pairs * 1e6:.2f} us/pair, {note})"
    )
    print(f"matrices agree to {error:.1e}; speed ratio scipy/maskstudy: {scaled / ours:.1f}x")
    extra = peak_extra_memory(lambda: pairwise(given, "jaccard"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(
        f"peak memory: pairwise allocates {extra / 2**20:.1f} MiB of host memory beyond the "
        f"{masks.nbytes / 2**20:.0f} MiB of boolean masks it reads; process max RSS {rss:.0f} MiB"
    )
    if on_gpu:
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        pairwise(given, "jaccard")
        gpu_extra = torch.cuda.max_memory_allocated() - held
        print(f"peak GPU memory: pairwise allocates {gpu_extra / 2**20:.1f} MiB on {args.device}")


if __name__ == "__main__":
    main()
