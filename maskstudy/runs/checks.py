"""Checks a run passes before anything is allocated, written or trained.

What only a run's model or data reveal (the model fits the inputs and the machine's memory, the
tensor names of ``prune.layer_amounts`` / ``prune.exclude`` exist, the durations are whole
iterations) is checked on a model built on PyTorch's meta device, so a config that cannot run
fails at once with a ConfigError, in ``maskstudy run`` and for every run of a sweep alike.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
from torch import nn

from maskstudy.data.base import Data
from maskstudy.errors import ConfigError
from maskstudy.masks import prunable_names
from maskstudy.models import build_meta
from maskstudy.pruning.schedules import GradualSchedule
from maskstudy.runs.config import RunConfig
from maskstudy.steps import Steps
from maskstudy.train import iterations_per_epoch
from maskstudy.train.plan import TrainPlan

DEVICE = re.compile(r"cpu|cuda(:\d+)?")
# float32 copies of every parameter a run holds at once: weights, gradients, optimizer state
# (momentum, or Adam's two moments), θ0, θk and the level's saved copy
COPIES = 6
BYTES = 4  # float32
OUTPUT_ALIAS = "output"


def check_device(device: str | torch.device | None, *, here: bool = True) -> None:
    """ConfigError unless ``device`` is cpu, cuda or cuda:N (None: each command's default)
    and, when it trains ``here`` (not on a cluster's nodes), one this torch can use."""
    if device is None:
        return
    name = str(device)
    if not DEVICE.fullmatch(name):
        raise ConfigError(
            f"device {name!r} is not one maskstudy trains on; use cpu, cuda or cuda:N"
        )
    if not here or name == "cpu":
        return
    if not torch.cuda.is_available():
        lacks = "no CUDA: it is a CPU-only build" if torch.version.cuda is None else "no GPU"
        raise ConfigError(
            f"device {name!r} needs CUDA, but this torch ({torch.__version__}) has {lacks} "
            "(torch.cuda.is_available() is False); use --device cpu, or a machine with CUDA"
        )
    count, index = torch.cuda.device_count(), int(name.partition(":")[2] or 0)
    if index >= count:
        raise ConfigError(
            f"device {name!r} does not exist: this machine has {count} GPU(s), cuda:0 to "
            f"cuda:{count - 1}"
        )


def physical_memory() -> int | None:
    """This machine's memory in bytes; None where the OS does not say (nothing is refused)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def meta_model(cfg: RunConfig, data: Data, here: bool = True) -> nn.Module:
    """The model of ``cfg`` for ``data``, built on the meta device (nothing allocated);
    ConfigError when training it needs more than this machine's memory (``COPIES`` float32
    copies of each parameter; only when it trains ``here``, not on a cluster's nodes), so a
    typo in ``model.width`` fails here, not in the allocator."""
    m, memory = cfg.model, physical_memory() if here else None
    try:
        model = build_meta(m.name, data.input_shape, data.num_classes, width=m.width)
    except RuntimeError as e:  # "Storage size calculation overflowed": no machine holds it
        if "overflow" not in str(e):
            raise
        size = "more than 2^63 parameters in one tensor"
        raise ConfigError(_too_large(cfg, size, memory)) from None
    params = sum(p.numel() for p in model.parameters())
    need = params * BYTES * COPIES
    if memory is not None and need > memory:
        size = (
            f"{params:,} parameters: training needs about {need / 2**30:,.1f} GiB ({COPIES} "
            "float32 copies: weights, gradients, optimizer state, θ0, θk, the saved level)"
        )
        raise ConfigError(_too_large(cfg, size, memory))
    return model


def _too_large(cfg: RunConfig, size: str, memory: int | None) -> str:
    """The error of a model of ``size`` that does not fit ``memory`` (None: unknown)."""
    have = f"this machine's {memory / 2**30:,.1f} GiB" if memory else "any machine's"
    return (
        f"model.width = {cfg.model.width!r} gives {cfg.model.name} {size}, more than {have} of "
        "memory; use a smaller model.width or model"
    )


@dataclass(frozen=True)
class TensorOverrides:
    """Per-tensor pruning overrides with the ``"output"`` alias resolved to the model's classifier."""

    amounts: dict[str, float]
    exclude: tuple[str, ...]


def resolve_overrides(cfg: RunConfig, model: nn.Module) -> TensorOverrides:
    """Resolve and check the tensor names of ``prune.layer_amounts`` and ``prune.exclude``."""
    names = prunable_names(model)

    def resolve(key: str, field: str) -> str:
        name = model.output_layer if key == OUTPUT_ALIAS else key
        if name not in names:
            raise ConfigError(
                f"{field} names {key!r}, which is not a prunable tensor of {cfg.model.name}; "
                f"use {OUTPUT_ALIAS!r} for the classifier or one of: {', '.join(names)}"
            )
        return name

    amounts = {resolve(k, "prune.layer_amounts"): v for k, v in cfg.prune.layer_amounts.items()}
    exclude = tuple(resolve(k, "prune.exclude") for k in cfg.prune.exclude)
    return TensorOverrides(amounts, exclude)


@dataclass(frozen=True)
class RunPlan:
    """A run's durations in iterations of its dataset, resolved once before it trains."""

    train: TrainPlan  # level 0's training; levels may adapt it (runs/scratch.py)
    rewind_at: int  # the rewind point k
    gradual: GradualSchedule | None  # the in-training ramp of prune.schedule = 'gradual'


def run_plan(cfg: RunConfig, data: Data) -> RunPlan:
    """``cfg``'s durations at ``data``'s epoch length; ConfigError unless training and its
    evaluation period are at least one iteration and the rewind point and the gradual ramp's
    end lie inside training."""
    per_epoch = iterations_per_epoch(len(data.train), cfg.train.batch_size)
    train = TrainPlan.of(cfg.train, per_epoch)
    k = Steps.parse(cfg.rewind_to, "rewind_to").at(per_epoch)
    if k >= train.total:
        raise ConfigError(
            f"rewind_to = {cfg.rewind_to!r} ({k} iterations) is not before the end of training "
            f"(train.duration = {cfg.train.duration!r} = {train.total} iterations)"
        )
    gradual = None
    if cfg.prune.schedule == "gradual":
        gradual = cfg.prune.gradual.resolve(per_epoch, train.total, cfg.train.duration)
    return RunPlan(train, k, gradual)


def check_run(cfg: RunConfig, data: Data, here: bool = True) -> tuple[TensorOverrides, RunPlan]:
    """Everything about ``cfg`` that needs its model or ``data`` (its loaded dataset), checked
    on a meta-device model before anything is allocated: the model builds for these inputs and
    fits in memory (when it trains ``here``), the layer names exist, the durations are at least
    one iteration and the rewind point lies before the end. Returns the per-tensor overrides
    and the run's plan."""
    overrides = resolve_overrides(cfg, meta_model(cfg, data, here))
    return overrides, run_plan(cfg, data)
