"""Pieces every architecture shares: the named-layer network, width scaling and input-size checks."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from itertools import count

from torch import nn

from maskstudy.errors import ConfigError


class Network(nn.Sequential):
    """Layers applied in order under short, stable names; ``output_layer`` is the classifier weight.

    ``output_layer`` is a ``state_dict`` key, so presets can prune the output layer at its own rate.
    """

    def __init__(self, layers: OrderedDict[str, nn.Module], output_layer: str) -> None:
        super().__init__(layers)
        self.output_layer = output_layer


class LayerNames:
    """An ordered layer table that numbers each kind on its own: conv1, relu1, conv2, pool1, ..."""

    def __init__(self) -> None:
        self.layers: OrderedDict[str, nn.Module] = OrderedDict()
        self._counts: Counter[str] = Counter()

    def add(self, kind: str, module: nn.Module) -> str:
        self._counts[kind] += 1
        name = f"{kind}{self._counts[kind]}"
        self.layers[name] = module
        return name


def scaled(size: int, width: float) -> int:
    """A hidden width or channel count times the width multiplier, rounded, at least 1."""
    return max(1, round(size * width))


def image_channels(model: str, input_shape: tuple[int, ...]) -> int:
    """The channel count of an image input (C, H, W); ConfigError for flat inputs."""
    if len(input_shape) != 3:
        raise ConfigError(
            f"model {model!r} needs image inputs (channels, height, width), but the input shape "
            f"is {input_shape}; use lenet300_100 for flat feature vectors"
        )
    return input_shape[0]


def spatial_size(
    model: str, input_shape: tuple[int, ...], layers: Iterable[nn.Module]
) -> tuple[int, int]:
    """(height, width) after the Conv2d / MaxPool2d ``layers``; ConfigError if any reaches zero."""
    image_channels(model, input_shape)
    layers = list(layers)
    _, height, width = input_shape
    out = _side(height, layers, 0), _side(width, layers, 1)
    if min(out) < 1:
        smallest = next(
            n for n in count(1) if _side(n, layers, 0) >= 1 and _side(n, layers, 1) >= 1
        )
        raise ConfigError(
            f"model {model!r} needs inputs of at least {smallest}×{smallest} pixels, but the input "
            f"shape is {input_shape} (its pooling shrinks that to nothing); use inputs of at least "
            f"{(input_shape[0], smallest, smallest)} or a model with fewer pooling stages"
        )
    return out


def _side(size: int, layers: list[nn.Module], axis: int) -> int:
    """One spatial side after ``layers`` (0 once it has vanished); other layer types keep it."""
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            kernel, stride, padding = (
                _pair(getattr(layer, a))[axis] for a in ("kernel_size", "stride", "padding")
            )
            size = (size + 2 * padding - kernel) // stride + 1
            if size < 1:
                return 0
    return size


def _pair(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value, value)
