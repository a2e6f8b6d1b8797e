"""K seeds of LeNet-300-100 (or another model) on MNIST (or digits) trained side by side in one
loop vs one after another.

Both ways run the same ``maskstudy.train`` loop in this process, on ``--threads`` CPU threads
(1, the runs' default ``train.threads``), from the same K initial weights and 80 %-pruned masks,
with Adam 1.2e-3, batch 60 and one evaluation at the end; the ratio is sequential time / side by
side time (throughput gain). The two give the same bytes; only the time differs.

    python benchmarks/replicas.py [--data ../shared/data] [--dataset mnist|digits] [--steps 300]
        [--ks 1 8 32] [--device cpu] [--model lenet300_100 --width 1] [--threads 1]

The default grouping of sweeps (maskstudy/runs/executors.py) follows these ratios.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from maskstudy.data import load
from maskstudy.models import build
from maskstudy.pruning import full_mask, prune
from maskstudy.runs.config import TrainConfig
from maskstudy.train import replica_net, train, train_replicas

REPO = Path(__file__).resolve().parents[1]


def setup(k: int, data, device: str, model: str, width: float):
    """K models (seeds 0..K-1) and their 80 %-pruned magnitude masks."""
    models = [
        build(model, data.input_shape, data.num_classes, seed=s, init="glorot_normal", width=width)
        for s in range(k)
    ]
    masks = []
    for m in models:
        m.to(device)
        weights = {n: p.detach() for n, p in m.named_parameters() if n in full_mask(m)}
        masks.append(prune(weights, None, "magnitude", 0.8))
    return models, masks


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    began = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - began


def compare(k: int, data, cfg: TrainConfig, args: argparse.Namespace) -> tuple[float, float]:
    """Seconds for K seeds one after another, and side by side, from the same starting point."""
    device = args.device
    models, masks = setup(k, data, device, args.model, args.width)
    starts = [{n: t.clone() for n, t in m.state_dict().items()} for m in models]
    net = replica_net(copy.deepcopy(models[0]), starts)

    def one_after_another() -> None:
        for seed, (model, mask) in enumerate(zip(models, masks, strict=True)):
            train(model, data, cfg, mask=mask, seed=seed)

    def side_by_side() -> None:
        train_replicas(net, data, cfg, masks=masks, seeds=list(range(k)))

    return timed(one_after_another, device), timed(side_by_side, device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument(
        "--dataset", default="mnist", help="mnist, or digits (8×8 inputs: overhead-bound steps)"
    )
    parser.add_argument("--steps", type=int, default=300, help="training steps per replica")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="lenet300_100", help="any name of maskstudy.models")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier of the model")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (train.threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load(args.dataset, args.data, device=args.device)
    cfg = TrainConfig(
        optimizer="adam",
        lr=1.2e-3,
        batch_size=60,
        duration=f"{args.steps}it",
        eval_every=f"{args.steps}it",
    )
    print(
        f"{args.model} (width {args.width:g}) on {args.dataset}, {args.steps} steps per seed, batch 60, 20 % of weights kept; torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads"
    )
    print(f"{'K':>4} {'one after another':>18} {'side by side':>14} {'ratio':>7}")
    compare(2, data, cfg, args)  # warm-up: allocator, kernels
    for k in args.ks:
        alone, together = compare(k, data, cfg, args)
        print(f"{k:>4} {alone:>16.2f} s {together:>12.2f} s {alone / together:>6.2f}x")


if __name__ == "__main__":
    main()
