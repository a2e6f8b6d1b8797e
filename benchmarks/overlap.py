"""Time an N×N Jaccard matrix of random masks: ``maskstudy.analysis.overlap.pairwise`` against
``scipy.spatial.distance.pdist(metric="jaccard")`` on the same boolean arrays, same process.

maskstudy packs the masks into 64-bit words and counts intersections with popcount, chunked;
scipy compares every pair with its C loop over the booleans. The masks have LeNet-300-100's
266,200 weights by default. scipy may run on the first ``--baseline-masks`` masks only: its
cost per pair is constant, so its time is then scaled to the full number of pairs (printed).

The issue's target size: ``--masks 256 --weights 1000000 --baseline-masks 64``. Peak memory
is what ``pairwise`` allocates on top of the masks (tracemalloc sees numpy's buffers).

    python benchmarks/overlap.py [--masks 200] [--weights 266200] [--density 0.2]
                                 [--baseline-masks 200] [--repeats 2] [--seed 0]
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


def best_time(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """(fastest wall time of ``repeats`` calls, the result of the last call)."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return min(times), result


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
    parser.add_argument("--repeats", type=positive_int, default=2, help="best of this many")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 0 < args.density < 1:
        parser.error(f"--density {args.density} must lie strictly between 0 and 1")
    if not 2 <= args.baseline_masks <= args.masks:
        parser.error(f"--baseline-masks {args.baseline_masks} must lie in [2, --masks]")

    masks = random_masks(args.masks, args.weights, args.density, args.seed)
    pairs = args.masks * (args.masks - 1) // 2
    base_count = args.baseline_masks
    base_pairs = base_count * (base_count - 1) // 2
    print(
        f"{args.masks} masks x {args.weights:,} weights at density {args.density}; "
        f"numpy {np.__version__}, scipy {scipy.__version__}, {torch.get_num_threads()} threads; "
        f"best of {args.repeats}"
    )

    ours, matrix = best_time(lambda: pairwise(list(masks), "jaccard"), args.repeats)
    base, distances = best_time(lambda: pdist(masks[:base_count], metric="jaccard"), args.repeats)
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
    extra = peak_extra_memory(lambda: pairwise(list(masks), "jaccard"))
    print(
        f"peak memory: pairwise allocates {extra / 2**20:.1f} MiB beyond the "
        f"{masks.nbytes / 2**20:.0f} MiB of boolean masks it reads; "
        f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB"
    )


if __name__ == "__main__":
    main()
