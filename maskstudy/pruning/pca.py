"""Pen-Ultimate pruning (Riera, Arnau & González 2019; docs/methods.md#model-based-criteria-snip-grasp-synflow-pca): PCA widths + connection importance.

For every masked Linear/Conv2d layer the outputs (pre-activation: FC rows are samples, conv rows
are samples·H·W positions) are standardised per unit and their correlation matrix is
eigen-decomposed. The layer keeps n = min{k : Σ_{i≤k} λ_i / Σλ ≥ τ} units, the top n by the
loading-weighted variance score_j = Σ_{i≤n} λ_i·V_ji² ("keep units", not "keep width only");
a dropped unit loses all its incoming weights (its row / filter), so it outputs a constant that
the next layer absorbs. The classifier's output units are never dropped. Within the kept units a
connection's relative importance is r_ij = E|w_ij·x_i| / Σ_k E|w_kj·x_k| (conv: per weight,
with E|x| averaged over the positions each kernel offset reads, padding included).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskstudy.errors import ConfigError
from maskstudy.masks import Mask, apply_mask_, full_mask, prunable_names
from maskstudy.pruning.criteria import drop_lowest, prune

Tensor = torch.Tensor
CHUNK = 256  # at most this many examples per forward pass


def even_chunks(*tensors: Tensor) -> list[tuple[Tensor, ...]]:
    """The tensors split along dim 0 into near-equal chunks of at most CHUNK (no tiny last one)."""
    parts = -(-len(tensors[0]) // CHUNK)
    return list(zip(*(t.tensor_split(parts) for t in tensors), strict=True))


@dataclass
class _Stats:
    """Running sums over one layer's output rows and its mean input magnitude."""

    rows: int = 0
    total: Tensor | None = None  # Σ x (units,)
    outer: Tensor | None = None  # Σ x xᵀ (units, units)
    inputs: int = 0
    abs_in: Tensor | None = None  # Σ |input| over examples: (in,) or (C, H, W)

    def add(self, x: Tensor, out: Tensor) -> None:
        rows = (out.movedim(1, -1) if out.dim() > 2 else out).reshape(-1, out.shape[1]).double()
        self.rows += len(rows)
        self.total = _plus(self.total, rows.sum(0))
        self.outer = _plus(self.outer, rows.T @ rows)
        self.inputs += len(x)
        self.abs_in = _plus(self.abs_in, x.abs().double().sum(0))


def _plus(acc: Tensor | None, value: Tensor) -> Tensor:
    return value if acc is None else acc + value


@dataclass(frozen=True)
class LayerPCA:
    """One layer's PCA: chosen width, kept units, explained-variance spectrum."""

    width: int
    keep: Tensor  # bool (units,)
    spectrum: Tensor  # explained-variance ratios, descending


@dataclass(frozen=True)
class PCAResult:
    """Unit-pruned start mask, relative importances and per-layer PCA of one Pen-Ultimate step."""

    mask: Mask
    importance: dict[str, Tensor]
    layers: dict[str, LayerPCA]

    def metrics(self) -> dict:
        """Level metrics: PCA width, unit count and spectrum per layer (output layer excluded)."""
        return {
            "pca_width": {n: p.width for n, p in self.layers.items()},
            "pca_units": {n: len(p.keep) for n, p in self.layers.items()},
            "pca_spectrum": {
                n: [round(float(v), 8) for v in p.spectrum] for n, p in self.layers.items()
            },
        }


def _module(model: nn.Module, name: str) -> nn.Module:
    module = model.get_submodule(name.rsplit(".", 1)[0] if "." in name else "")
    if isinstance(module, nn.Linear):
        return module
    if isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros":
        return module
    raise ConfigError(
        f"pca scores Linear and plain Conv2d layers only; {name} is a {type(module).__name__}: "
        "exclude it with prune.exclude"
    )


@torch.no_grad()
def layer_statistics(model: nn.Module, x: Tensor, mask: Mapping[str, Tensor]) -> dict[str, _Stats]:
    """Output-covariance sums and input magnitudes of every masked layer over the sample ``x``."""
    net = copy.deepcopy(model).eval()
    apply_mask_(net, {n: m.to(x.device) for n, m in mask.items()})
    stats = {name: _Stats() for name in mask}
    hooks = [
        _module(net, name).register_forward_hook(
            lambda _m, inp, out, s=stats[name]: s.add(inp[0], out)
        )
        for name in mask
    ]
    try:
        for (xb,) in even_chunks(x):
            net(xb)
    finally:
        for hook in hooks:
            hook.remove()
    return stats


def pca_width(stats: _Stats, variance: float) -> LayerPCA:
    """Width n = min{k: cumulative explained variance ≥ τ} and the top-n units by loading score."""
    n = stats.rows
    mean = stats.total / n
    cov = stats.outer / n - torch.outer(mean, mean)
    second = torch.diagonal(stats.outer) / n
    var = torch.diagonal(cov).clamp(min=0)
    live = var > 1e-10 * second  # constant units (dead or fully pruned) carry no variance
    std = torch.where(live, var.sqrt(), torch.ones_like(var))
    corr = cov / torch.outer(std, std) * torch.outer(live, live)
    eigval, eigvec = torch.linalg.eigh(corr)
    eigval, eigvec = eigval.flip(0).clamp(min=0), eigvec.flip(1)
    units = len(var)
    if eigval.sum() <= 0:
        keep = torch.zeros(units, dtype=torch.bool)
        keep[0] = True  # no variance at all: keep one unit rather than collapse the layer
        return LayerPCA(1, keep, torch.zeros(units))
    spectrum = eigval / eigval.sum()
    width = int((spectrum.cumsum(0) < variance - 1e-9).sum()) + 1
    width = min(width, units)
    score = (eigvec[:, :width] ** 2 * eigval[:width]).sum(1)
    keep = drop_lowest(score, units - width)  # the top-``width`` units by score
    return LayerPCA(width, keep.cpu(), spectrum.float().cpu())


def relative_importance(module: nn.Module, w: Tensor, stats: _Stats) -> Tensor:
    """r_ij = E|w_ij x_i| / Σ_k E|w_kj x_k| for every weight of ``w`` (rows: output units)."""
    mean_abs = stats.abs_in / stats.inputs
    if isinstance(module, nn.Conv2d):  # E|x| read by each kernel offset, averaged over positions
        cols = F.unfold(
            mean_abs[None],
            module.kernel_size,
            dilation=module.dilation,
            padding=module.padding,
            stride=module.stride,
        )
        mean_abs = cols[0].mean(1).view(w.shape[1:])
    contrib = w.abs().double() * mean_abs.to(w.device)
    total = contrib.sum(dim=tuple(range(1, w.dim())), keepdim=True)
    return torch.where(total > 0, contrib / total.clamp(min=1e-300), 0.0).float()


def pca_scores(
    model: nn.Module, x: Tensor, mask: Mapping[str, Tensor], variance: float = 0.99
) -> PCAResult:
    """PCA unit selection (all masked layers but the classifier) and connection importances."""
    if not 0 < variance <= 1:
        raise ConfigError(f"variance = {variance!r} must be a fraction in (0, 1] (e.g. 0.99)")
    output = getattr(model, "output_layer", None) or prunable_names(model)[-1]
    stats = layer_statistics(model, x, mask)
    params = dict(model.named_parameters())
    start, importance, layers = {}, {}, {}
    for name, m in mask.items():
        w = params[name].detach() * m.to(params[name].device)
        importance[name] = relative_importance(_module(model, name), w, stats[name])
        if name == output:
            start[name] = m.clone()
            continue
        layers[name] = pca_width(stats[name], variance)
        rows = layers[name].keep.to(m.device).view(-1, *[1] * (m.dim() - 1))
        start[name] = m & rows
    return PCAResult(start, importance, layers)


def pca_prune(
    model: nn.Module,
    x: Tensor,
    mask: Mapping[str, Tensor] | None = None,
    *,
    variance: float = 0.99,
    amount: float | None = None,
    threshold: float | None = None,
) -> tuple[Mask, dict[str, int]]:
    """One-shot Pen-Ultimate: (mask, PCA width per layer) for ``model`` on the sample ``x``.

    Units outside each layer's PCA width lose their incoming weights; then, per layer, either
    the connections of kept units with relative importance below ``threshold`` are removed, or
    ``amount`` of them (the lowest r first). Give at most one of ``amount`` and ``threshold``.
    """
    if amount is not None and threshold is not None:
        raise ConfigError("give pca_prune either amount= or threshold=, not both")
    if mask is None:
        mask = full_mask(model)
    result = pca_scores(model, x, mask, variance)
    widths = {n: p.width for n, p in result.layers.items()}
    if threshold is not None:
        kept = {
            n: m & (result.importance[n].to(m.device) >= threshold) for n, m in result.mask.items()
        }
        return kept, widths
    if not amount:
        return result.mask, widths
    weights = {n: p.detach() for n, p in model.named_parameters() if n in mask}
    return prune(weights, result.mask, "pca", amount, "layer", scores=result.importance), widths
