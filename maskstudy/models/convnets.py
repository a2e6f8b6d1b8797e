"""Plain ReLU nets: conv layers (each optionally max-pooled), then fully connected layers.

Covers LeNet-300-100, LeNet-5 (classic and Han et al.'s Caffe variant) and Frankle & Carbin's
Conv-2/4/6. Parameters are named conv1.., fc1..; the last fc layer is the classifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from maskstudy.models.layers import LayerNames, Network, image_channels, scaled, spatial_size


@dataclass(frozen=True)
class Conv:
    """One conv layer: ``channels`` filters of ``kernel``×``kernel``, ReLU, then 2×2 max-pool if ``pool``."""

    channels: int
    kernel: int = 3
    padding: int = 1
    pool: bool = False


@dataclass(frozen=True)
class Plan:
    convs: tuple[Conv, ...]
    hidden: tuple[int, ...]  # hidden fully connected widths before the classifier


def _pairs(*channels: int) -> tuple[Conv, ...]:
    """Frankle & Carbin's pattern: 3×3 convs (padding 1), a max-pool after every two."""
    return tuple(Conv(c, pool=i % 2 == 1) for i, c in enumerate(channels))


PLANS: dict[str, Plan] = {
    "lenet300_100": Plan(convs=(), hidden=(300, 100)),
    "lenet5": Plan(convs=(Conv(6, 5, 2, pool=True), Conv(16, 5, 0, pool=True)), hidden=(120, 84)),
    "lenet5_caffe": Plan(
        convs=(Conv(20, 5, 0, pool=True), Conv(50, 5, 0, pool=True)), hidden=(500,)
    ),
    "conv2": Plan(convs=_pairs(64, 64), hidden=(256, 256)),
    "conv4": Plan(convs=_pairs(64, 64, 128, 128), hidden=(256, 256)),
    "conv6": Plan(convs=_pairs(64, 64, 128, 128, 256, 256), hidden=(256, 256)),
}


def conv_fc(name: str, input_shape: tuple[int, ...], num_classes: int, width: float) -> Network:
    """The network ``PLANS[name]`` for ``input_shape``, hidden widths scaled by ``width``."""
    plan = PLANS[name]
    net = LayerNames()
    if plan.convs:
        channels = image_channels(name, input_shape)
        for conv in plan.convs:
            out = scaled(conv.channels, width)
            net.add("conv", nn.Conv2d(channels, out, conv.kernel, padding=conv.padding))
            net.add("relu", nn.ReLU())
            if conv.pool:
                net.add("pool", nn.MaxPool2d(2))
            channels = out
        height, width_px = spatial_size(name, input_shape, net.layers.values())
        features = channels * height * width_px
    else:
        features = math.prod(input_shape)
    net.layers["flatten"] = nn.Flatten()
    for hidden in plan.hidden:
        out = scaled(hidden, width)
        net.add("fc", nn.Linear(features, out))
        net.add("relu", nn.ReLU())
        features = out
    output = net.add("fc", nn.Linear(features, num_classes))
    return Network(net.layers, output_layer=f"{output}.weight")
