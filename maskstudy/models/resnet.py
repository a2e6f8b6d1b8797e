"""CIFAR ResNet-20/32/56 (He et al. 2016, §4.2): three stages of basic blocks at 16/32/64 channels.

Shortcuts that change shape are 1×1 convolutions with BatchNorm (option B), as in OpenLTH.
Parameter names: ``conv.weight`` (stem), ``stage{s}.{b}.conv1.weight``, ``...shortcut.0.weight``,
``fc.weight`` (classifier).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskstudy.models.layers import image_channels, scaled

DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet56": 56}


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual connection (projected when the shape changes)."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv → 3 stages of ``blocks`` basic blocks (strides 1, 2, 2) → global pool → linear."""

    output_layer = "fc.weight"

    def __init__(self, channels: int, blocks: int, widths: tuple[int, int, int], classes: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        stages, inputs = [], widths[0]
        for s, outputs in enumerate(widths):
            stride = 1 if s == 0 else 2
            stage = [
                BasicBlock(inputs if b == 0 else outputs, outputs, stride if b == 0 else 1)
                for b in range(blocks)
            ]
            stages.append(nn.Sequential(*stage))
            inputs = outputs
        self.stage1, self.stage2, self.stage3 = stages
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.conv(x)))
        out = self.stage3(self.stage2(self.stage1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def cifar_resnet(
    name: str, input_shape: tuple[int, ...], num_classes: int, width: float
) -> CifarResNet:
    """ResNet ``name`` (depth 6n + 2) with stage widths 16/32/64 scaled by ``width``."""
    channels = image_channels(name, input_shape)
    blocks = (DEPTHS[name] - 2) // 6
    widths = tuple(scaled(w, width) for w in (16, 32, 64))
    return CifarResNet(channels, blocks, widths, num_classes)
