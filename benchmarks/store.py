"""Bits per weight and read time of a level's stored weights: kept values only vs whole tensors.

A level of LeNet-300-100 (or another model) magnitude-pruned to each density is saved as a run
level (mask + trained weights) and read back with ``Run.weights(level)`` (mask and weights: what
every analysis reads), in this process; the dense baseline is the same weights written whole, as
stores before kept-only files held them.

    python benchmarks/store.py [--model lenet300_100] [--densities 1 0.2 0.012] [--repeat 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from maskstudy.files import tensors_from_bytes, tensors_to_bytes
from maskstudy.models import build
from maskstudy.pruning import full_mask, prune
from maskstudy.runs.config import RunConfig
from maskstudy.runs.store import FINAL_FILE, MASK_FILE, create_run, level_dir, save_level


def mean_ms(read, repeat: int) -> float:
    read()  # warm the page cache
    began = time.perf_counter()
    for _ in range(repeat):
        read()
    return 1000 * (time.perf_counter() - began) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet300_100")
    parser.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.2, 0.05, 0.012])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    model = build(args.model, (1, 28, 28), 10, seed=0)
    weights = {n: t.detach().clone() for n, t in model.state_dict().items()}
    full = full_mask(model)
    masked = sum(m.numel() for m in full.values())
    print(f"{args.model}: {masked:,} masked weights; bits per masked weight (mask file included)")
    print(
        "and ms per read (kept-only: Run.weights(level), mask and weights; whole: the file alone)"
    )
    print(
        f"{'density':>8} {'kept-only':>10} {'whole':>8} {'read kept-only':>15} {'read whole':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = create_run(Path(tmp) / "run", RunConfig(levels=1))
        whole_path = Path(tmp) / "whole.safetensors"
        for density in args.densities:
            mask = prune(weights, full, "magnitude", 1 - density, "global") if density < 1 else full
            final = {n: (w * mask[n]).add_(0.0) if n in mask else w for n, w in weights.items()}
            save_level(run, 1, mask, final, {"level": 1}, [])
            files = level_dir(run.path, 1)
            size = (files / MASK_FILE).stat().st_size
            bits = 8 * (size + (files / FINAL_FILE).stat().st_size) / masked
            whole_path.write_bytes(tensors_to_bytes(final))  # as stores before kept-only files
            whole_bits = 8 * (size + whole_path.stat().st_size) / masked
            kept_ms = mean_ms(lambda: run.weights(1), args.repeat)
            whole_ms = mean_ms(
                lambda: tensors_from_bytes(whole_path.read_bytes(), whole_path), args.repeat
            )
            print(
                f"{density:>8.3f} {bits:>8.2f} b {whole_bits:>6.1f} b {kept_ms:>12.2f} ms "
                f"{whole_ms:>8.2f} ms"
            )


if __name__ == "__main__":
    main()
