"""A user's own model and dataset, registered by name."""

import math
from collections import OrderedDict

import torch
from torch import nn

from maskstudy.data.base import Split
from maskstudy.data.datasets import DATASETS
from maskstudy.models import MODELS
from maskstudy.models.layers import Network


@MODELS.register("tiny_mlp")
def tiny_mlp(input_shape, num_classes, width):
    hidden = max(1, round(32 * width))
    layers = OrderedDict(
        flat=nn.Flatten(),
        fc1=nn.Linear(math.prod(input_shape), hidden),
        relu=nn.ReLU(),
        fc2=nn.Linear(hidden, num_classes),
    )
    return Network(layers, output_layer="fc2.weight")


@DATASETS.register("two_blobs")
def two_blobs(root, *, size: int = 200):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(size) % 2
    x = torch.randn(size, 2, generator=g) + 3 * y[:, None].float()
    return Split(x[: size // 2], y[: size // 2]), Split(x[size // 2 :], y[size // 2 :]), 2
