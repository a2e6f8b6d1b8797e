"""The model registry: every architecture by name, built deterministically from a seed."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from maskstudy.masks import prunable_names
from maskstudy.models.convnets import PLANS, conv_fc
from maskstudy.models.init import initialise_
from maskstudy.models.resnet import DEPTHS, cifar_resnet
from maskstudy.models.vgg import VGG_PLANS, cifar_vgg
from maskstudy.registry import Registry

Builder = Callable[[tuple[int, ...], int, float], nn.Module]
MODELS: Registry[Builder] = Registry("model")

for _name in PLANS:
    MODELS.register(_name)(lambda shape, classes, width, n=_name: conv_fc(n, shape, classes, width))
for _name in VGG_PLANS:
    MODELS.register(_name)(
        lambda shape, classes, width, n=_name: cifar_vgg(n, shape, classes, width)
    )
for _name in DEPTHS:
    MODELS.register(_name)(
        lambda shape, classes, width, n=_name: cifar_resnet(n, shape, classes, width)
    )


def build(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    init: str = "kaiming_normal",
    width: float = 1.0,
    seed: int = 0,
) -> nn.Module:
    """Model ``name`` for inputs of ``input_shape``, initialised by ``init`` from ``seed``.

    The same arguments always give bit-identical weights (built on the CPU under a forked RNG,
    so the global random state is untouched). The model has an ``output_layer`` attribute
    naming its classifier weight.
    """
    builder = MODELS.get(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(tuple(input_shape), num_classes, width)
        initialise_(model, init)
    return model


def build_meta(
    name: str, input_shape: tuple[int, ...], num_classes: int, *, width: float = 1.0
) -> nn.Module:
    """Model ``name`` on PyTorch's meta device: its layers, names and shapes with no weight
    allocated (what checks count before the real model is built)."""
    builder = MODELS.get(name)
    with torch.device("meta"):
        return builder(tuple(input_shape), num_classes, width)


def prunable_weight_count(model: nn.Module) -> int:
    """Number of weights in Linear/Conv layers (what the papers count as prunable)."""
    params = dict(model.named_parameters())
    return sum(params[name].numel() for name in prunable_names(model))
