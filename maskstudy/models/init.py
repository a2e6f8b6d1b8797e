"""Weight initialisers the papers use: He (Kaiming) and Glorot (Xavier), normal or uniform."""

from __future__ import annotations

from torch import nn

from maskstudy.errors import ConfigError

INITIALISERS = {
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "glorot_normal": nn.init.xavier_normal_,
    "glorot_uniform": nn.init.xavier_uniform_,
}


def initialise_(model: nn.Module, init: str) -> None:
    """Re-draw every Linear/Conv weight with ``init``; biases 0, BatchNorm scale 1 and shift 0."""
    if init not in INITIALISERS:
        raise ConfigError(f"unknown init {init!r}; valid inits: {', '.join(INITIALISERS)}")
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            INITIALISERS[init](module.weight.data)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
