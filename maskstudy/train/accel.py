"""How the training step runs on the device: captured or eager, in which precision, which layout.

``train.compile``:
- ``off`` (default): eager PyTorch, the arithmetic a run id stands for on every device.
- ``compile``: ``torch.compile`` of each replica's forward (backward through AOTAutograd).
- ``graphs``: ``torch.compile(mode="reduce-overhead")``: the step captured in CUDA graphs.
- ``auto``: ``graphs`` on a CUDA device, eager elsewhere.
Where capture cannot run (CUDA graphs without CUDA, a compiler that fails) the step runs eager
and the level's metrics say why (``step_mode``); evaluation always runs eager.

``train.precision``: ``fp32`` (default); ``bf16``: the forward and loss under bfloat16 autocast,
while weights, gradients, masks and optimizer state stay fp32, so pruned weights stay exactly
+0.0; ``tf32``: TensorFloat-32 matmuls and convolutions on CUDA (CPU has none: fp32 there).
Convnets on CUDA train in ``channels_last`` (weights, and each replica's batch in the step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import nn

from maskstudy.train.replicas import Replicas

Forward = Callable[[torch.Tensor], torch.Tensor]


def training_forward(net: Replicas, mode: str) -> tuple[list[Forward], str]:
    """Each replica's forward for training steps (its batch (B, ...) → logits (B, classes)), and
    what they are (``eager``, ``compile``, ``graphs``, or ``eager (why)`` when the requested
    capture cannot run here)."""
    cuda, eager = net.device.type == "cuda", list(net.modules)
    if mode == "auto":
        mode = "graphs" if cuda else "off"
    if mode == "off":
        return eager, "eager"
    if mode == "graphs" and not cuda:
        return eager, f"eager (CUDA graphs need a CUDA device, this is {net.device.type})"
    options = {"mode": "reduce-overhead"} if mode == "graphs" else {}
    try:
        compiled = [torch.compile(m, **options) for m in net.modules]
    except RuntimeError as e:  # no compiler backend for this platform
        return eager, f"eager (torch.compile failed: {e})"
    return compiled, mode


class _TF32:
    """TensorFloat-32 matmuls and convolutions inside the block, the previous setting after."""

    def __enter__(self) -> None:
        self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def precision(kind: str, device: torch.device) -> tuple[AbstractContextManager, str]:
    """A reusable context that runs the forward and loss in ``kind`` on ``device`` (entered at
    every step), and what that precision is here."""
    if kind == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), "bf16"
    if kind == "tf32":
        if device.type == "cuda":
            return _TF32(), "tf32"
        return contextlib.nullcontext(), "fp32 (TF32 exists on CUDA only)"
    return contextlib.nullcontext(), "fp32"


def channels_last_(net: Replicas) -> bool:
    """Convnets on CUDA: every replica's 4-D weights in channels_last (inputs follow in the
    step). Returns whether it applies."""
    convnet = any(isinstance(m, nn.Conv2d) for m in net.modules[0].modules())
    if net.device.type != "cuda" or not convnet:
        return False
    for m in net.modules:
        m.to(memory_format=torch.channels_last)
    return True
