"""The ``model`` section of a run's config: architecture, initialisation and width."""

from __future__ import annotations

from dataclasses import dataclass

from maskstudy.fields import choice, positive, registered
from maskstudy.models.init import INITIALISERS
from maskstudy.models.zoo import MODELS


@dataclass(frozen=True)
class ModelConfig:
    name: str = "lenet300_100"
    init: str = "kaiming_normal"
    width: float = 1.0  # channel / unit multiplier (Rethinking's smaller target architectures)

    def __post_init__(self) -> None:
        registered(MODELS, self.name, "model.name")
        choice(self.init, tuple(INITIALISERS), "model.init")
        positive(self.width, "model.width")
