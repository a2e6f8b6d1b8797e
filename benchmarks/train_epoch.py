"""Time one epoch of LeNet-300-100 on MNIST with an 80 %-pruned mask, three ways, same process.

maskstudy: ``maskstudy.train.train`` (index slices of in-memory tensors, masked gradients, one
test evaluation at the end). Against:
1. an OpenLTH-style loop (``gpu_check.openlth_epoch``: a shuffled ``DataLoader`` over a dataset
   whose ``__getitem__`` transforms one example at a time on the CPU, the mask multiplied into
   the weights in every forward), both with SGD at 0.1, batch 128: the headline ratio, with
   the floor beside it: the same SGD steps on index slices with nothing else (no mask, no
   evaluation), the arithmetic every loop pays;
2. the usual way: a shuffled torch ``DataLoader`` over a ``TensorDataset`` and
   ``torch.nn.utils.prune.l1_unstructured`` forward hooks, both with Adam at 1.2e-3, batch 60,
   each ending with one test evaluation.
All use the same initial weights and mask; the loops run interleaved (a busy machine slows each
alike) and the best of ``--repeats`` counts.

    python benchmarks/train_epoch.py [--data ../shared/data] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from gpu_check import openlth_epoch  # benchmarks/ is this script's directory
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, TensorDataset

from maskstudy.data import load
from maskstudy.data.base import Data
from maskstudy.errors import ConfigError
from maskstudy.runs.config import TrainConfig
from maskstudy.train import train

REPO = Path(__file__).resolve().parents[1]
LR, BATCH, AMOUNT = 1.2e-3, 60, 0.8
SGD_LR, SGD_BATCH = 0.1, 128  # the OpenLTH-style comparison


def lenet300_100() -> tuple[nn.Module, str]:
    """LeNet-300-100 from the model registry, or an equivalent nn.Sequential if not there yet."""
    try:
        from maskstudy.models import build

        return build("lenet300_100", (1, 28, 28), 10), "maskstudy.models.build"
    except (ImportError, ConfigError):
        model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 300),
            nn.ReLU(),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
        )
        return model, "fallback nn.Sequential (maskstudy.models.build not available)"


def hooked_copy(model: nn.Module) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy pruned by L1 magnitude per layer with prune's forward hooks, and its bool mask."""
    hooked = copy.deepcopy(model)
    mask = {}
    for name, module in hooked.named_modules():
        if isinstance(module, nn.Linear):
            prune.l1_unstructured(module, "weight", amount=AMOUNT)
            mask[f"{name}.weight" if name else "weight"] = module.weight_mask.bool()
    return hooked, mask


def maskstudy_epoch(
    model: nn.Module, data: Data, mask: dict[str, torch.Tensor], seed: int
) -> float:
    cfg = TrainConfig(optimizer="adam", lr=LR, batch_size=BATCH, duration="1ep", eval_every="1ep")
    return train(model, data, cfg, mask=mask, seed=seed).final["test_acc"]


def maskstudy_sgd_epoch(
    model: nn.Module, data: Data, mask: dict[str, torch.Tensor], seed: int
) -> float:
    cfg = TrainConfig(lr=SGD_LR, batch_size=SGD_BATCH, duration="1ep", eval_every="1ep")
    return train(model, data, cfg, mask=mask, seed=seed).final["test_acc"]


def openlth_style_epoch(model: nn.Module, data: Data, mask: dict[str, torch.Tensor]) -> float:
    """gpu_check's OpenLTH-style epoch (SGD at 0.1, batch 128, masks in forward) on the CPU."""
    openlth_epoch(model, mask, data, SGD_BATCH, torch.device("cpu"))
    return float("nan")  # it does not evaluate


def floor_epoch(model: nn.Module, data: Data, seed: int) -> float:
    """A bare epoch: SGD steps on index slices of the tensors, no mask, no evaluation."""
    optimizer = torch.optim.SGD(model.parameters(), lr=SGD_LR)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))
    for batch in order.split(SGD_BATCH):
        optimizer.zero_grad()
        F.cross_entropy(model(data.train.x[batch]), data.train.y[batch]).backward()
        optimizer.step()
    return float("nan")


def usual_epoch(model: nn.Module, data: Data, seed: int) -> float:
    """The textbook loop: DataLoader with shuffle, prune hooks in the forward pass."""
    loader = DataLoader(
        TensorDataset(data.train.x, data.train.y),
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(TensorDataset(data.test.x, data.test.y), batch_size=1000):
            correct += int((model(x).argmax(1) == y).sum())
    return correct / len(data.test)


def timed(epoch, *args) -> tuple[float, float]:
    """(wall time, test accuracy) of one call ``epoch(*args)``."""
    began = time.perf_counter()
    acc = epoch(*args)
    return time.perf_counter() - began, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (as train.threads, default 1)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load("mnist", args.data)
    initial, source = lenet300_100()
    _, mask = hooked_copy(initial)
    kept = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    print(
        f"model: {source}; kept {kept:.1%} of weights; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; best of {args.repeats}"
    )

    sgd_runs, openlth_runs, floor_runs, ours_runs, usual_runs = [], [], [], [], []
    for seed in range(args.repeats):  # interleaved, so a busy machine slows each alike
        sgd_runs.append(timed(maskstudy_sgd_epoch, copy.deepcopy(initial), data, mask, seed))
        openlth_runs.append(timed(openlth_style_epoch, initial, data, mask))
        floor_runs.append(timed(floor_epoch, copy.deepcopy(initial), data, seed))
        ours_runs.append(timed(maskstudy_epoch, copy.deepcopy(initial), data, mask, seed))
        usual_runs.append(timed(usual_epoch, hooked_copy(initial)[0], data, seed))
    (sgd, sgd_acc), (openlth, _), (floor, _) = min(sgd_runs), min(openlth_runs), min(floor_runs)
    (ours, ours_acc), (usual, usual_acc) = min(ours_runs), min(usual_runs)
    print(f"SGD {SGD_LR}, batch {SGD_BATCH}:")
    print(f"  maskstudy.train      : {sgd:7.3f} s/epoch  (test acc {sgd_acc:.4f})")
    print(f"  OpenLTH-style loop   : {openlth:7.3f} s/epoch  (no evaluation)")
    print(f"  bare SGD steps (floor): {floor:7.3f} s/epoch  (no mask, no evaluation)")
    print(
        f"  ratio OpenLTH-style/maskstudy: {openlth / sgd:.2f}x  "
        f"(OpenLTH-style/floor: {openlth / floor:.2f}x)"
    )
    print(f"Adam {LR}, batch {BATCH}:")
    print(f"  maskstudy.train      : {ours:7.3f} s/epoch  (test acc {ours_acc:.4f})")
    print(f"  DataLoader+prune hook: {usual:7.3f} s/epoch  (test acc {usual_acc:.4f})")
    print(f"  ratio usual/maskstudy: {usual / ours:.2f}x")

    fixed_cost(args.data)


def fixed_cost(data: Path) -> None:
    """Print the fixed per-process cost of a maskstudy command: ``maskstudy run`` for one
    iteration (import, data md5 and decode, model, store) in a fresh process, timed twice with
    a fresh data cache: cold (it fills the cache) and warm (it reads it)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MASKSTUDY_CACHE": str(Path(tmp) / "cache")}
        times = []
        for attempt in ("cold", "warm"):
            command = [
                sys.executable, "-m", "maskstudy.cli", "run", "--preset", "lenet300_mnist_lth",
                "--levels", "0", "--set", "train.duration=1it", "train.eval_every=1it",
                "--data", str(data), "--out", str(Path(tmp) / attempt), "--quiet",
            ]  # fmt: skip
            began = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - began)
    print(
        f"fixed cost of `maskstudy run ... train.duration=1it` in a fresh process: "
        f"{times[0]:.2f} s cold cache, {times[1]:.2f} s warm"
    )


if __name__ == "__main__":
    main()
