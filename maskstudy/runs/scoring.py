"""A run level pruned by a model-based criterion (snip, grasp, synflow, pca): the run-side glue.

Level L scores the weights ``prune.score_weights`` picks (θ0 for the at-init criteria by default,
level L−1's trained weights otherwise) with the mask of level L−1 applied, on
``prune.saliency.samples`` training examples drawn from the run's own "saliency" stream.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from maskstudy.data.base import Split
from maskstudy.masks import Mask
from maskstudy.pruning.saliency import saliency_prune
from maskstudy.runs.config import RunConfig
from maskstudy.seeds import generator


def scoring_batch(split: Split, samples: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """``samples`` examples of ``split`` (all of it if smaller), chosen by ``gen``, unaugmented."""
    index = torch.randperm(len(split), generator=gen)[:samples].to(split.x.device)
    return split.x[index], split.y[index]


def saliency_level(
    cfg: RunConfig,
    model: nn.Module,
    split: Split,
    state: Mapping[str, torch.Tensor],
    previous: Mask,
    layer_amounts: Mapping[str, float],
    level: int,
) -> tuple[Mask, dict]:
    """Level ``level``'s mask by ``cfg.prune.criterion`` from ``previous``, and its level metrics."""
    p = cfg.prune
    net = copy.deepcopy(model)
    net.load_state_dict(state)
    x, y = scoring_batch(split, p.saliency.samples, generator(cfg.seed, "saliency", level))
    return saliency_prune(
        net,
        x,
        y,
        previous,
        p.criterion,
        p.amount,
        scope=p.scope,
        layer_amounts=layer_amounts,
        rounding=p.rounding,
        **p.criterion_options(),
    )
