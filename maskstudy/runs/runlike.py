"""What the analyses ask of a run: maskstudy's ``Run``, an OpenLTH replicate or a torch-pruned
model all offer it (``foreign.py``)."""

from __future__ import annotations

from typing import Protocol

import torch

from maskstudy.runs.config import RunConfig


class RunLike(Protocol):
    """What the analyses need of a run (``maskstudy.runs.store.Run`` has it)."""

    config: RunConfig

    @property
    def levels(self) -> list[int]: ...

    def mask(self, level: int) -> dict[str, torch.Tensor]: ...
