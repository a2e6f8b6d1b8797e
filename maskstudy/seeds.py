"""Independent, named random streams derived from one run seed."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *tags: object) -> int:
    """A stable 63-bit seed for the stream named by ``tags`` (e.g. ``("prune", 3)``)."""
    text = "/".join(str(t) for t in (seed, *tags))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(seed: int, *tags: object) -> torch.Generator:
    """A CPU generator seeded for the stream named by ``tags``."""
    return torch.Generator().manual_seed(derive_seed(seed, *tags))
