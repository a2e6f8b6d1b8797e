"""CIFAR VGG-11/16/19 with BatchNorm: 3×3 convs, max-pools between stages, a linear classifier.

The CIFAR variant of Frankle et al. (LMC) and OpenLTH: global average pooling, then one
linear layer from the last 512 channels to the classes (VGG-19: 20.0M prunable weights).
"""

from __future__ import annotations

from torch import nn

from maskstudy.models.layers import LayerNames, Network, image_channels, scaled, spatial_size

POOL = "M"
VGG_PLANS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512),
    "vgg16": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512),
    "vgg19": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512),
}  # fmt: skip


def cifar_vgg(name: str, input_shape: tuple[int, ...], num_classes: int, width: float) -> Network:
    """VGG ``name`` (conv → BN → ReLU blocks) with channel counts scaled by ``width``."""
    channels = image_channels(name, input_shape)
    net = LayerNames()
    for step in VGG_PLANS[name]:
        if step == POOL:
            net.add("pool", nn.MaxPool2d(2))
            continue
        out = scaled(int(step), width)
        net.add("conv", nn.Conv2d(channels, out, 3, padding=1, bias=False))
        net.add("bn", nn.BatchNorm2d(out))
        net.add("relu", nn.ReLU())
        channels = out
    spatial_size(name, input_shape, net.layers.values())
    net.layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
    net.layers["flatten"] = nn.Flatten()
    net.layers["fc"] = nn.Linear(channels, num_classes)
    return Network(net.layers, output_layer="fc.weight")
