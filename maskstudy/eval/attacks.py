"""FGSM and PGD (L∞) on inputs in the data's normalised space, with eps in [0, 1] pixel units.

maskstudy's datasets standardise each channel with training statistics, x = (raw − mean_c)/std_c
(data/normalise.py). A perturbation of eps pixel units (the raw range R mapped to [0, 1]) is
eps·R/std_c in normalised units. ``PixelBox.of(split)`` reads where pixel space lies in each
channel from the normalised training inputs themselves: lo_c and hi_c are their minimum and
maximum, the images of raw 0 and raw R. That is exact when the training set holds the darkest
and the brightest value in every channel (MNIST, CIFAR-10/100, digits: it does); for other data
the scale is the observed range. Attacks step eps·(hi_c − lo_c)·sign(∇ₓ loss) and clip to
[lo_c, hi_c]; without a box, eps is in the inputs' own units and nothing is clipped.

``model`` is any callable from inputs to logits whose leading dims match the labels: an
``nn.Module`` (x: (B, ...), y: (B,)) or stacked replicas (x: (K, B, ...), y: (K, B)). Put it
in eval mode first; ``robust_accuracy`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from maskstudy.data.base import Split
from maskstudy.errors import ConfigError

Tensor = torch.Tensor
Model = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class PixelBox:
    """Per-channel bounds of pixel space in normalised units, shaped (C, 1, …) like one input."""

    lo: Tensor
    hi: Tensor

    @property
    def scale(self) -> Tensor:
        """Normalised units per pixel unit, per channel."""
        return self.hi - self.lo

    @classmethod
    def of(cls, split: Split) -> PixelBox:
        """The box spanned by ``split``'s inputs per channel (dim 1): use the training split."""
        x = split.x
        dims = [0, *range(2, x.dim())]
        return cls(x.amin(dim=dims, keepdim=True)[0], x.amax(dim=dims, keepdim=True)[0])

    def to_pixels(self, delta: Tensor) -> Tensor:
        """A normalised-space perturbation in pixel units."""
        return delta / self.scale


def _check_eps(eps: float) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ConfigError(f"eps = {eps!r} must be a number >= 0 (pixel units, e.g. 8/255)")


def _scale(box: PixelBox | None, x: Tensor) -> Tensor | float:
    return 1.0 if box is None else box.scale.to(x.device)


def _clip(adv: Tensor, box: PixelBox | None) -> Tensor:
    if box is None:
        return adv
    return torch.clamp(adv, box.lo.to(adv.device), box.hi.to(adv.device))


def input_gradient(model: Model, x: Tensor, y: Tensor) -> Tensor:
    """∇ₓ of the summed cross-entropy of ``model(x)`` against ``y`` (parameters untouched)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        return torch.autograd.grad(loss, x)[0]


def fgsm(model: Model, x: Tensor, y: Tensor, eps: float, box: PixelBox | None = None) -> Tensor:
    """Fast gradient sign method: x + eps·sign(∇ₓ loss) (eps in pixel units), clipped to ``box``."""
    _check_eps(eps)
    step = eps * _scale(box, x) * input_gradient(model, x, y).sign()
    return _clip(x.detach() + step, box)


def uniform_start(x: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
    """A uniform random perturbation in [−eps, eps]^n, in pixel units (PGD's random start)."""
    noise = torch.rand(x.shape, generator=generator).to(x.device)
    return (2 * noise - 1) * eps


def pgd(
    model: Model,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    *,
    box: PixelBox | None = None,
    start: Tensor | None = None,
) -> Tensor:
    """Projected gradient descent on the loss: ``steps`` signed steps of ``step_size`` (pixel
    units, default eps/4), each projected onto the eps-ball around ``x`` and into ``box``.

    ``start`` is the initial perturbation in pixel units (``uniform_start`` for a random start);
    None starts at ``x``.
    """
    _check_eps(eps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps = {steps!r} must be an integer >= 0")
    step_size = eps / 4 if step_size is None else step_size
    scale, x = _scale(box, x), x.detach()
    radius = eps * scale
    adv = x if start is None else _clip(x + torch.clamp(start, -eps, eps) * scale, box)
    for _ in range(steps):
        adv = adv + step_size * scale * input_gradient(model, adv, y).sign()
        adv = _clip(torch.minimum(torch.maximum(adv, x - radius), x + radius), box)
    return adv
