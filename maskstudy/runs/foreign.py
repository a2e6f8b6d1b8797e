"""What runs made elsewhere share, so the analyses read them like maskstudy's own
(``RunLike``): the level check, maskstudy's ``metrics()`` frame, and a safe ``.pth`` reader.

Every ``.pth`` is read with ``torch.load(weights_only=True)``: a file holding anything but a
dict of tensors is refused, never unpickled.
"""

from __future__ import annotations

import pickle
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from maskstudy.errors import StoreError
from maskstudy.runs.store import Run

State = dict[str, torch.Tensor]


def load_tensors(path: str | Path) -> State:
    """A ``.pth`` holding a dict of tensors, loaded with ``weights_only=True`` (never a full unpickle)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"missing file {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(e))
        what = f" ({found[1]})" if found else ""
        raise StoreError(
            f"{path} holds pickled Python objects{what}, which are never loaded (only "
            "torch.load(weights_only=True)); re-save it as torch.save(model.state_dict(), path)"
        ) from e
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        first = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise StoreError(f"{path} is not a readable torch file ({first}); it is damaged") from e
    if not isinstance(obj, dict):
        raise StoreError(
            f"{path} holds a {type(obj).__name__}, not a dict of name → tensor; "
            "re-save it as torch.save(model.state_dict(), path)"
        )
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise StoreError(
                f"{path} entry {key!r} is a {type(value).__name__}, not a tensor named by a "
                "string; re-save it as torch.save(model.state_dict(), path)"
            )
    return dict(obj)


class ForeignRun(ABC):
    """What both imported kinds share: the level check and maskstudy's ``metrics()`` frame."""

    run_id: str
    metrics = Run.metrics

    @property
    @abstractmethod
    def levels(self) -> list[int]: ...

    @abstractmethod
    def level_metrics(self, level: int) -> dict[str, Any]: ...

    def _require(self, level: int) -> int:
        if level not in self.levels:
            raise StoreError(f"{self.run_id} has no level {level}; its levels: {self.levels}")
        return level

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.run_id!r}, levels={self.levels})"
