"""K networks of one architecture behind one interface, so a single loop trains them side by side.

``Single`` is an ordinary ``nn.Module`` (K = 1, the plain path). ``Stacked`` holds K replicas'
parameters and buffers as tensors with a leading replica dimension and runs them with
``vmap(functional_call)``: one batched matmul / grouped convolution per layer instead of K
small ones. Every optimizer we use is elementwise, so one optimizer over the stacked tensors
updates each replica exactly as its own optimizer would. BatchNorm running statistics are
stacked buffers updated in place per replica.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from maskstudy.errors import ConfigError
from maskstudy.pruning.masks import Mask, apply_mask_, check_mask

Tensor = torch.Tensor
State = dict[str, Tensor]


class Single:
    """One ordinary module seen as a group of one: inputs (1, B, ...) → logits (1, B, classes)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.size = 1

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def parameters(self) -> list[Tensor]:
        return list(self.model.parameters())

    def __call__(self, x: Tensor) -> Tensor:
        return self.model(x[0]).unsqueeze(0)

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    @property
    def training(self) -> bool:
        return self.model.training

    def masked(self, masks: Sequence[Mask]) -> tuple[list[Tensor], list[Tensor]]:
        """(parameters, 0/1 factors) to multiply, for the pruned tensors of ``masks[0]``."""
        params = dict(self.model.named_parameters())
        check_mask(masks[0], params)
        apply_mask_(self.model, masks[0])
        names = list(masks[0])
        return [params[n] for n in names], [masks[0][n].to(params[n]) for n in names]

    def states(self) -> list[State]:
        return [{name: t.detach().clone() for name, t in self.model.state_dict().items()}]

    def tensors(self) -> State:
        """Every parameter and buffer, live, by name (what a checkpoint saves and restores)."""
        return {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}


class Stacked:
    """K replicas of ``template``'s architecture with the given state dicts, called through vmap."""

    def __init__(self, template: nn.Module, states: Sequence[Mapping[str, Tensor]]) -> None:
        if not states:
            raise ConfigError("a replica group needs at least one state dict")
        device = next(template.parameters()).device
        self.size = len(states)
        self.base = copy.deepcopy(template).to("meta")
        self.params = {
            name: _stack([s[name] for s in states], device).requires_grad_()
            for name, _ in template.named_parameters()
        }
        self.buffers = {
            name: torch.stack([s[name] for s in states]).to(device)
            for name, _ in template.named_buffers()
        }
        self._keys = list(template.state_dict())
        self._call = vmap(self._one, in_dims=(0, 0, 0))

    def _one(self, params: State, buffers: State, x: Tensor) -> Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def __call__(self, x: Tensor) -> Tensor:
        return self._call(self.params, self.buffers, x)

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)

    @property
    def training(self) -> bool:
        return self.base.training

    @torch.no_grad()
    def masked(self, masks: Sequence[Mask]) -> tuple[list[Tensor], list[Tensor]]:
        """Stacked (parameters, factors) for the masked tensors; pruned weights are zeroed now."""
        if len(masks) != self.size or any(m.keys() != masks[0].keys() for m in masks):
            raise ConfigError("every replica needs a mask over the same tensors")
        names = list(masks[0])
        for k, m in enumerate(masks):
            check_mask(m, {n: self.params[n][k] for n in names})
        params = [self.params[n] for n in names]
        factors = [
            torch.empty_like(self.params[n]).copy_(torch.stack([m[n] for m in masks]))
            for n in names
        ]  # laid out like the parameters, as their gradients are
        if params:
            torch._foreach_mul_(params, factors)
        return params, factors

    def tensors(self) -> State:
        """Every stacked parameter and buffer, live, by name (what a checkpoint saves)."""
        return {**self.params, **self.buffers}

    def states(self) -> list[State]:
        tensors = {**self.params, **self.buffers}
        return [
            {
                name: tensors[name][k].detach().clone(memory_format=torch.contiguous_format)
                for name in self._keys
            }
            for k in range(self.size)
        ]


def _stack(tensors: Sequence[Tensor], device: torch.device) -> Tensor:
    """Stack replicas' tensors; matrices are kept transposed in memory (each replica's ``W.T``
    contiguous), the layout in which vmap's batched matmul returns the weight gradient, so
    autograd stores it without a transposing copy (the slowest op of a stacked MLP step)."""
    stacked = torch.stack(list(tensors)).to(device)
    return stacked.mT.contiguous().mT if stacked.dim() == 3 else stacked


Net = Single | Stacked


def replica_net(template: nn.Module, states: Sequence[Mapping[str, Tensor]]) -> Net:
    """``template`` itself loaded with the one state (the plain, exact path), or ``Stacked``."""
    if len(states) == 1:
        template.load_state_dict(states[0])
        return Single(template)
    return Stacked(template, states)
