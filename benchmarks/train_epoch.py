"""Time one epoch of LeNet-300-100 on MNIST with an 80 %-pruned mask, two ways, same process.

maskstudy: ``maskstudy.train.train`` (index slices of in-memory tensors, masked gradients and
weights multiplied by the mask after each step). The usual way: a shuffled torch ``DataLoader``
over a ``TensorDataset`` and ``torch.nn.utils.prune.l1_unstructured`` forward hooks. Both use the
same initial weights, the same mask, Adam at 1.2e-3, batch 60, and end with one test evaluation.

    python benchmarks/train_epoch.py [--data ../shared/data] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
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
    args = parser.parse_args()

    data = load("mnist", args.data)
    initial, source = lenet300_100()
    _, mask = hooked_copy(initial)
    kept = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    print(
        f"model: {source}; kept {kept:.1%} of weights; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; best of {args.repeats}"
    )

    ours_runs, usual_runs = [], []
    for seed in range(args.repeats):  # interleaved, so a busy machine slows both alike
        ours_runs.append(timed(maskstudy_epoch, copy.deepcopy(initial), data, mask, seed))
        usual_runs.append(timed(usual_epoch, hooked_copy(initial)[0], data, seed))
    (ours, ours_acc), (usual, usual_acc) = min(ours_runs), min(usual_runs)
    print(f"maskstudy.train      : {ours:7.3f} s/epoch  (test acc {ours_acc:.4f})")
    print(f"DataLoader+prune hook: {usual:7.3f} s/epoch  (test acc {usual_acc:.4f})")
    print(f"ratio usual/maskstudy: {usual / ours:.2f}x")


if __name__ == "__main__":
    main()
