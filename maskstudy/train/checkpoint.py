"""In-level checkpoints: the whole training state at a step, so a killed level resumes there.

Everything random in training is a function of (seed, absolute step) (``train.loop``), so the
state is only tensors and counters: the network's parameters and buffers, the optimizer state,
the evaluation rows so far, the running training loss and the rewind snapshot if taken. Restored
exactly, the rest of the level trains to the same bytes as an uninterrupted run (on CPU).
Where the state is kept is the caller's business (``Checkpoints``: runs/store.py keeps it in the
level directories and removes it when the level is saved).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from maskstudy.train.replicas import Replicas

Tensor = torch.Tensor


class Checkpoints(Protocol):
    """Where a level's training state goes: saved every ``every`` seconds, loaded on resume."""

    every: float

    def load(self) -> tuple[dict[str, Tensor], dict[str, Any]] | None: ...

    def save(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None: ...


@dataclass
class Progress:
    """The training loop's own state besides the network and optimizer."""

    step: int  # iterations done (absolute)
    histories: list[list[dict[str, float]]]
    loss_sum: Tensor  # float64, one per replica, since the last evaluation
    loss_count: int
    snapshots: list[dict[str, Tensor]] | None


def pack(
    net: Replicas, optimizer: torch.optim.Optimizer, progress: Progress, call: dict[str, Any]
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, JSON-able meta) of the state; ``call`` identifies the training call (seeds,
    start and end step) so a checkpoint of another call is never restored."""
    tensors = {f"net/{name}": t.detach() for name, t in net.tensors().items()}
    scalars: dict[str, dict[str, Any]] = {}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"opt/{i}/{key}"] = value
            else:
                scalars.setdefault(str(i), {})[key] = value
    tensors["loss_sum"] = progress.loss_sum
    for k, snapshot in enumerate(progress.snapshots or []):
        tensors.update({f"snap/{k}/{name}": t for name, t in snapshot.items()})
    meta = {
        "call": call,
        "step": progress.step,
        "histories": progress.histories,
        "loss_count": progress.loss_count,
        "snapshots": progress.snapshots is not None,
        "optimizer_scalars": scalars,
        "param_groups": optimizer.state_dict()["param_groups"],
    }
    return tensors, meta


@torch.no_grad()
def restore(
    checkpoints: Checkpoints | None,
    net: Replicas,
    optimizer: torch.optim.Optimizer,
    call: dict[str, Any],
) -> Progress | None:
    """Load the latest checkpoint of this very call into ``net`` and ``optimizer`` and return
    the loop's state; None (nothing changed) when there is none or it belongs to another call."""
    loaded = checkpoints.load() if checkpoints is not None else None
    if loaded is None or loaded[1].get("call") != call:
        return None
    tensors, meta = loaded
    live = net.tensors()
    if {f"net/{name}" for name in live} - tensors.keys():
        return None  # another architecture: not ours
    for name, t in live.items():
        t.copy_(tensors[f"net/{name}"])
    params = net.parameters()
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            _, i, name = key.split("/", 2)
            state.setdefault(int(i), {})[name] = value
    for i, values in meta["optimizer_scalars"].items():
        state.setdefault(int(i), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    for p in params:  # each moment laid out as its parameter, as a fresh optimizer has it
        for key, value in optimizer.state.get(p, {}).items():
            if torch.is_tensor(value) and value.shape == p.shape:
                optimizer.state[p][key] = torch.empty_like(p).copy_(value)
    snapshots = None
    if meta["snapshots"]:
        snapshots = [
            {
                name[len(f"snap/{k}/") :]: t
                for name, t in tensors.items()
                if name.startswith(f"snap/{k}/")
            }
            for k in range(net.size)
        ]
    return Progress(
        step=meta["step"],
        histories=meta["histories"],
        loss_sum=tensors["loss_sum"].clone(),
        loss_count=meta["loss_count"],
        snapshots=snapshots,
    )
