"""K networks of one architecture behind one interface, so a single loop trains them side by side.

``Replicas`` holds K ordinary modules and calls them one after another on their own slices of
the batch; one optimizer steps all of their parameters. Each replica therefore does exactly the
arithmetic its module would do alone (the same kernels on tensors of the same shapes and memory
layout), so a seed's weights are bit for bit the same whichever seeds share its group, alone
included. Batching the replicas into one matmul or grouped convolution (``vmap``) was faster on
some shapes but rounded differently with the group size, and a run id must mean one result.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from maskstudy.errors import ConfigError
from maskstudy.masks import Mask, apply_mask_, check_mask

Tensor = torch.Tensor
State = dict[str, Tensor]


class Replicas:
    """K modules trained in lockstep: inputs (K, B, ...) → logits (K, B, classes)."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        if not modules:
            raise ConfigError("a replica group needs at least one model")
        self.modules = list(modules)
        self.size = len(self.modules)

    @property
    def device(self) -> torch.device:
        return next(self.modules[0].parameters()).device

    def parameters(self) -> list[Tensor]:
        """Every replica's parameters, replica after replica (the optimizer's order)."""
        return [p for m in self.modules for p in m.parameters()]

    def __call__(self, x: Tensor) -> Tensor:
        return torch.stack([m(x[k]) for k, m in enumerate(self.modules)])

    def train(self, mode: bool = True) -> None:
        for m in self.modules:
            m.train(mode)

    @property
    def training(self) -> bool:
        return self.modules[0].training

    @torch.no_grad()
    def masked(self, masks: Sequence[Mask]) -> tuple[list[Tensor], list[Tensor]]:
        """(parameters, 0/1 factors) of the pruned tensors, replica after replica, with the
        pruned weights zeroed now; every replica's mask names the same tensors."""
        if len(masks) != self.size or any(m.keys() != masks[0].keys() for m in masks):
            raise ConfigError("every replica needs a mask over the same tensors")
        params, factors = [], []
        for module, mask in zip(self.modules, masks, strict=True):
            named = dict(module.named_parameters())
            check_mask(mask, named)
            apply_mask_(module, mask)
            params += [named[n] for n in mask]
            factors += [mask[n].to(named[n]) for n in mask]
        return params, factors

    def tensors(self) -> State:
        """Every parameter and buffer, live, by name (what a checkpoint saves and restores);
        replica k's names carry the prefix ``k/`` when there are several."""
        return {
            (f"{k}/{name}" if self.size > 1 else name): t
            for k, m in enumerate(self.modules)
            for name, t in [*m.named_parameters(), *m.named_buffers()]
        }

    def states(self) -> list[State]:
        return [{n: t.detach().clone() for n, t in m.state_dict().items()} for m in self.modules]


def replica_net(template: nn.Module, states: Sequence[Mapping[str, Tensor]]) -> Replicas:
    """``template`` loaded with ``states[0]`` and, for the others, copies of it loaded with
    theirs: every replica's tensors are laid out as in a lone run's module."""
    if not states:
        raise ConfigError("a replica group needs at least one state dict")
    models = [template] + [copy.deepcopy(template) for _ in states[1:]]
    for model, state in zip(models, states, strict=True):
        model.load_state_dict(state)
    return Replicas(models)
