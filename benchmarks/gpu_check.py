"""The device check: maskstudy's training against an OpenLTH-style loop, side by side in one process.

Prints one table (sized for under 8 minutes on one GPU):
1. LeNet-300-100 / MNIST, one epoch at batch 128, SGD 0.1, 80 %-pruned masks: maskstudy's loop vs
   an OpenLTH-style loop written here (a DataLoader over OpenLTH's per-example pipeline: raw
   bytes → PIL image → tensor → normalised; the masks multiplied into the weights in every
   forward by torch.nn.utils.prune hooks) → ratio;
2. 32 LeNet-300-100 seeds side by side: s per replica-epoch → ratio to the OpenLTH-style epoch;
3. ResNet-20 on CIFAR-shaped synthetic data, images/s: one run eager, one run captured
   (train.compile = graphs; where that cannot run the row says why), 8 replicas side by side,
   and several processes at once (aggregate);
4. correctness: a short run on the device gives the CPU run's masks, its pruned weights exactly 0.

    python benchmarks/gpu_check.py --data ../shared/data [--device cuda] [--processes 4]
    python benchmarks/gpu_check.py --dry      # tiny sizes on the CPU: every line, in seconds

``--dry`` uses synthetic MNIST-shaped data and a few steps (the suite runs it); it measures
nothing worth quoting.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import DataLoader, Dataset

from maskstudy.data import load
from maskstudy.data.base import Data
from maskstudy.models import build
from maskstudy.pruning import full_mask, prune
from maskstudy.runs.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from maskstudy.runs.run import run
from maskstudy.train import replica_net, train_replicas

REPO = Path(__file__).resolve().parents[1]
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # OpenLTH's Normalize


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work) -> float:
    sync(device)
    began = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - began


class PerSample(Dataset):
    """OpenLTH's input pipeline (datasets/base.py ImageDataset, datasets/mnist.py): the raw
    uint8 images kept on the CPU, and each example made a PIL image, turned into a tensor
    (ToTensor: bytes → float / 255) and normalised (MNIST's mean and std) when it is fetched."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.images, self.y = raw_bytes(x.cpu()), y.cpu()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.fromarray(self.images[i].numpy(), mode="L")
        pixels = torch.from_numpy(np.array(image, np.uint8)).view(1, image.height, image.width)
        return (pixels.float().div(255) - MNIST_MEAN) / MNIST_STD, self.y[i]


def raw_bytes(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W) uint8 images from normalised (N, 1, H, W) ones: the affine map that sends the
    smallest value to 0 and the largest to 255 (for MNIST, its raw pixels back)."""
    low, high = x.min(), x.max()
    return ((x[:, 0] - low) / (high - low) * 255).round().to(torch.uint8)


def openlth_epoch(model: nn.Module, mask: dict, data: Data, batch: int, device) -> float:
    """One epoch the OpenLTH way: DataLoader batches moved to the device, masks in forward."""
    net = copy.deepcopy(model).to(device)
    modules = dict(net.named_modules())
    for name, m in mask.items():
        module_name, _, tensor = name.rpartition(".")
        torch_prune.custom_from_mask(modules[module_name], tensor, m.to(device))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loader = DataLoader(PerSample(data.train.x, data.train.y), batch_size=batch, shuffle=True)

    def epoch() -> None:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()

    return timed(device, epoch)


def maskstudy_epoch(models: list[nn.Module], masks: list[dict], data: Data, batch: int, **cfg):
    """One epoch of maskstudy's loop for len(models) replicas side by side; seconds."""
    net = replica_net(models[0], [m.state_dict() for m in models])
    train_cfg = TrainConfig(lr=0.1, batch_size=batch, duration="1ep", eval_every="1ep", **cfg)
    seeds = list(range(len(models)))
    return timed(net.device, lambda: train_replicas(net, data, train_cfg, masks=masks, seeds=seeds))


def pruned_lenets(count: int, data: Data, device) -> tuple[list[nn.Module], list[dict]]:
    models, masks = [], []
    for seed in range(count):
        model = build("lenet300_100", data.input_shape, data.num_classes, seed=seed).to(device)
        weights = {n: t.detach() for n, t in model.named_parameters()}
        masks.append(prune(weights, full_mask(model), "magnitude", 0.8))
        models.append(model)
    return models, masks


def mnist(args, device) -> Data:
    if args.dry:
        return load("synthetic", device=device, shape=(1, 28, 28), size=512)
    return load("mnist", args.data, device=device)


def resnet_throughput(
    device, replicas: int, steps: int, batch: int, **cfg
) -> tuple[float, str, float, float]:
    """Images/s of ResNet-20 training on CIFAR-shaped synthetic data, the step's mode, and the
    wall-clock start and end of the timed part (to add processes up)."""
    data = load("synthetic", device=device, shape=(3, 32, 32), size=batch * 4, classes=10)
    models = [build("resnet20", (3, 32, 32), 10, seed=s).to(device) for s in range(replicas)]
    net = replica_net(models[0], [m.state_dict() for m in models])
    masks = [full_mask(m) for m in models]
    train_cfg = TrainConfig(
        lr=0.1,
        momentum=0.9,
        batch_size=batch,
        duration=f"{steps}it",
        eval_every=f"{steps}it",
        **cfg,
    )
    seeds = list(range(replicas))
    train_replicas(net, data, train_cfg, masks=masks, seeds=seeds)  # warm-up, capture
    results = []
    began = time.time()
    seconds = timed(
        device,
        lambda: results.extend(train_replicas(net, data, train_cfg, masks=masks, seeds=seeds)),
    )
    mode = results[0].final.get("step_mode", "eager, fp32")
    return replicas * steps * batch / seconds, mode, began, began + seconds


def _process(args: tuple[str, int, int]) -> tuple[float, float, float]:
    """One process's ResNet-20 run: (images, timed start, timed end)."""
    device, steps, batch = args
    torch.set_num_threads(1)
    rate, _, start, end = resnet_throughput(torch.device(device), 1, steps, batch)
    return rate * (end - start), start, end


def correctness(args, device) -> str:
    """A short run on the device and on the CPU: same masks, pruned weights exactly zero."""
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 28, 28), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.25),
        train=TrainConfig(lr=0.1, batch_size=64, duration="8it", eval_every="8it"),
        levels=2,
    )
    with tempfile.TemporaryDirectory() as tmp:
        here = run(cfg, Path(tmp) / "device", device=str(device), progress=False)
        cpu = run(cfg, Path(tmp) / "cpu", device="cpu", progress=False)
        same = all(
            torch.equal(here.mask(lv)[n], cpu.mask(lv)[n])
            for lv in cpu.levels
            for n in cpu.mask(lv)
        )
        zero = all(
            not here.weights(lv)[n][~m].any()
            for lv in here.levels
            for n, m in here.mask(lv).items()
        )
    return f"masks equal to the CPU run's: {same}; pruned weights exactly 0: {zero}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--dry", action="store_true", help="tiny sizes, to check the script")
    args = parser.parse_args()
    device = torch.device(args.device)
    steps, batch = (2, 8) if args.dry else (50, 128)
    rows: list[tuple[str, str]] = []

    data = mnist(args, device)
    models, masks = pruned_lenets(1, data, device)
    openlth = openlth_epoch(models[0], masks[0], data, 128, device)
    maskstudy_epoch(models, masks, data, 128)  # warm-up
    ours = maskstudy_epoch(models, masks, data, 128)
    rows.append(("LeNet-300-100 epoch, OpenLTH-style loop", f"{openlth:.3f} s"))
    rows.append(("LeNet-300-100 epoch, maskstudy", f"{ours:.3f} s  ({openlth / ours:.1f}×)"))
    many, many_masks = pruned_lenets(2 if args.dry else 32, data, device)
    stacked = maskstudy_epoch(many, many_masks, data, 128) / len(many)
    rows.append(
        (f"{len(many)} LeNet-300-100 seeds side by side", f"{stacked:.4f} s per replica-epoch  "
         f"({openlth / stacked:.0f}× the OpenLTH-style epoch)")
    )  # fmt: skip

    for label, replicas, cfg in (
        ("ResNet-20, one run, eager", 1, {}),
        ("ResNet-20, one run, captured", 1, {"compile": "graphs"}),
        (f"ResNet-20, {2 if args.dry else 8} replicas side by side", 2 if args.dry else 8, {}),
    ):
        rate, mode, _, _ = resnet_throughput(device, replicas, steps, batch, **cfg)
        rows.append((label, f"{rate:,.0f} img/s  [{mode}]"))
    processes = 2 if args.dry else args.processes
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        done = pool.map(_process, [(str(device), steps, batch)] * processes)
    images, start, end = sum(d[0] for d in done), min(d[1] for d in done), max(d[2] for d in done)
    rows.append(
        (f"ResNet-20, {processes} processes at once", f"{images / (end - start):,.0f} img/s "
         "aggregate (all images / first start to last end of the timed parts)")
    )  # fmt: skip
    rows.append(("correctness", correctness(args, device)))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device check on {name} (torch {torch.__version__}){' — DRY RUN' if args.dry else ''}")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
