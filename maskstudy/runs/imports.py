"""Runs made elsewhere, read like maskstudy's own: OpenLTH results and torch-pruned models.

Both kinds offer what the analysis code asks of a run (``RunLike`` in
:mod:`maskstudy.analysis.overlap`): ``run_id``, ``config``, ``levels``, ``mask(level)``,
``weights(level, which)``, ``level_metrics(level)`` and ``metrics()``. Masks keep the tensor
names of the source (OpenLTH's LeNet names its layers ``fc_layers.0`` ... ``fc``), so they compare
with each other, not with maskstudy runs of the same architecture. Every ``.pth`` is read with
``torch.load(weights_only=True)``: a file holding anything but a dict of tensors is refused.
"""

from __future__ import annotations

import pickle
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from maskstudy.errors import ConfigError, StoreError
from maskstudy.masks import Mask
from maskstudy.pruning.interop import from_torch_prune, plain_state_dict
from maskstudy.runs.config import RunConfig
from maskstudy.runs.run import level_metrics
from maskstudy.runs.store import Run

State = dict[str, torch.Tensor]
ConfigLike = RunConfig | Mapping[str, Any] | None

_LOTTERY = re.compile(r"lottery_\w+")
_REPLICATE = re.compile(r"replicate_(\d+)")
_LEVEL = re.compile(r"level_(\d+)")
_CHECKPOINT = re.compile(r"model_ep(\d+)_it(\d+)\.pth")


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


def read_hparams(path: str | Path) -> dict[str, str]:
    """OpenLTH's ``hparams.log`` as ``{field: raw value}``; fields of its 'Pretraining ...'
    sections get the ``pretrain_`` prefix, as on OpenLTH's command line."""
    hparams: dict[str, str] = {}
    prefix = ""
    for line in Path(path).read_text().splitlines():
        if line.strip().startswith("* ") and " => " in line:
            key, _, value = line.strip()[2:].partition(" => ")
            hparams[prefix + key.strip()] = value.strip()
        elif line.strip():
            prefix = "pretrain_" if line.strip().startswith("Pretraining") else ""
    return hparams


# --- hparams → RunConfig --------------------------------------------------------------------
def _model(name: str) -> dict[str, Any]:
    """OpenLTH model name → maskstudy model (and width); unknown names raise ConfigError."""
    if name == "mnist_lenet_300_100":
        return {"model.name": "lenet300_100"}
    if match := re.fullmatch(r"cifar_resnet_(\d+)(?:_(\d+))?", name):
        width = int(match[2] or 16) / 16  # OpenLTH's W: first-stage filters, 16 by default
        return {"model.name": f"resnet{match[1]}", "model.width": width}
    if match := re.fullmatch(r"cifar_vgg_(\d+)", name):
        return {"model.name": f"vgg{match[1]}"}
    raise ConfigError(f"no maskstudy model for OpenLTH model {name!r}")


def _strategy(name: str) -> dict[str, Any]:
    scopes = {"sparse_global": "global", "sparse_layerwise": "layer"}
    if name not in scopes:
        raise ConfigError(f"no maskstudy pruning scope for OpenLTH strategy {name!r}")
    # OpenLTH prunes ceil(fraction × remaining) weights by magnitude.
    return {"prune.criterion": "magnitude", "prune.scope": scopes[name], "prune.rounding": "ceil"}


# hparams.log field → dotted RunConfig overrides, applied in this order.
_HPARAMS: dict[str, Callable[[str], dict[str, Any]]] = {
    "dataset_name": lambda v: {"data.name": v, "data.augment": v.startswith("cifar")},
    "do_not_augment": lambda v: {"data.augment": v != "True"},
    "batch_size": lambda v: {"train.batch_size": int(v)},
    "model_name": _model,
    "model_init": lambda v: {"model.init": v},
    "optimizer_name": lambda v: {"train.optimizer": v},
    "lr": lambda v: {"train.lr": float(v)},
    "momentum": lambda v: {"train.momentum": float(v)},
    "nesterov_momentum": lambda v: {"train.momentum": float(v), "train.nesterov": float(v) > 0},
    "weight_decay": lambda v: {"train.weight_decay": float(v)},
    "training_steps": lambda v: {"train.duration": v},
    "milestone_steps": lambda v: {"train.schedule": "step", "train.milestones": v.split(",")},
    "gamma": lambda v: {"train.gamma": float(v)},
    "warmup_steps": lambda v: {"train.warmup": v},
    "pruning_strategy": _strategy,
    "pruning_fraction": lambda v: {"prune.amount": float(v)},
    "pruning_layers_to_ignore": lambda v: {"prune.exclude": v.split(",")},
    "pretrain_training_steps": lambda v: {"rewind_to": v},  # --rewinding_steps
}


def openlth_config(
    hparams: Mapping[str, str], replicate: int = 0, levels: int = 0
) -> tuple[RunConfig, dict[str, str]]:
    """Best-effort RunConfig of an OpenLTH lottery run, and the hparams it does not reflect.

    Regime 'rewind', seed = the replicate number. A field maskstudy cannot express (an unknown
    model or dataset, an initialiser it lacks) leaves its config field at the default and is
    returned in the second dict with its raw value, so the config never fails to build.
    """
    cfg = RunConfig(regime="rewind", levels=levels, seed=replicate)
    unmapped = dict(hparams)
    for key, overrides in _HPARAMS.items():
        if key not in hparams:
            continue
        try:
            cfg = cfg.replace(overrides(hparams[key]))
        except ValueError:  # a ConfigError, or a number that does not parse
            continue
        del unmapped[key]
    # Rewinding pretrains with the main settings (maskstudy's only way); differing ones stay listed.
    for key in [k for k in unmapped if k.startswith("pretrain_")]:
        main = key.removeprefix("pretrain_")
        if main in hparams and main not in unmapped and hparams[main] == hparams[key]:
            del unmapped[key]
    return cfg, unmapped


# --- runs -----------------------------------------------------------------------------------
class _ForeignRun(ABC):
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


def _metric_name(name: str) -> str:
    """OpenLTH's ``test_accuracy`` is maskstudy's ``test_acc`` (both fractions); others unchanged."""
    return name.removesuffix("_accuracy") + "_acc" if name.endswith("_accuracy") else name


def read_logger(path: Path) -> list[tuple[str, int, float]]:
    """OpenLTH's ``logger``: one ``name,iteration,value`` line per evaluated metric."""
    if not path.is_file():
        raise StoreError(f"missing file {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            name, iteration, value = line.split(",")
            rows.append((_metric_name(name), int(iteration), float(value)))
        except ValueError as e:
            raise StoreError(
                f"{path} line {number} = {line!r} is not 'name,iteration,value'; "
                "the logger file is damaged"
            ) from e
    return rows


class OpenLTHRun(_ForeignRun):
    """One replicate of an OpenLTH lottery experiment: ``lottery_<hash>/replicate_<n>``.

    A level counts once its ``level_<L>/main`` holds ``mask.pth``, ``logger`` and a model
    checkpoint. Weights: ``final`` is the level's latest ``model_ep<E>_it<I>.pth``; ``start``
    its earliest (OpenLTH saves the rewound weights there already masked; level 0's is
    unmasked); ``init`` is ``model_ep0_it0.pth`` of level_pretrain (rewinding runs) or
    level_0; ``rewind`` is level 0's start when it is later than step 0. Metrics come from the
    logger at the level's last iteration (``test_acc``, ``test_loss``, ``step``) and from the
    mask (``kept``, ``total``, ``percent_remaining``, ``layer_density``). ``config`` is built by
    :func:`openlth_config` from level_0's ``hparams.log``; ``hparams`` holds that file raw and
    ``unmapped`` the fields the config does not reflect.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        match = _REPLICATE.fullmatch(self.path.name)
        if match is None or not self.path.is_dir():
            raise StoreError(
                f"{self.path} is not an OpenLTH replicate directory; "
                "pass lottery_<hash>/replicate_<n> or use open_openlth on the results root"
            )
        self.replicate = int(match[1])
        self.run_id = f"{self.path.parent.name}-rep{self.replicate}"
        hparams_path = self._dir(0) / "hparams.log"
        self.hparams = read_hparams(hparams_path) if hparams_path.is_file() else {}
        self.config, self.unmapped = openlth_config(
            self.hparams, self.replicate, max(self.levels, default=0)
        )

    def _dir(self, level: int | str) -> Path:
        return self.path / f"level_{level}" / "main"

    def _checkpoints(self, level: int | str) -> list[Path]:
        """The level's ``model_ep<E>_it<I>.pth`` files, earliest step first."""
        directory = self._dir(level)
        found = [
            (int(m[1]), int(m[2]), p)
            for p in (directory.iterdir() if directory.is_dir() else [])
            if (m := _CHECKPOINT.fullmatch(p.name))
        ]
        return [p for *_, p in sorted(found)]

    @property
    def levels(self) -> list[int]:
        """Levels whose training finished (mask, logger and a checkpoint present), in order."""
        done = []
        for d in self.path.iterdir():
            match = _LEVEL.fullmatch(d.name)
            main = d / "main"
            if match and (main / "mask.pth").is_file() and (main / "logger").is_file():
                if self._checkpoints(int(match[1])):
                    done.append(int(match[1]))
        return sorted(done)

    def mask(self, level: int) -> Mask:
        """The 0/1 mask OpenLTH trained level ``level`` with, as bool tensors (True = kept)."""
        path = self._dir(self._require(level)) / "mask.pth"
        mask = load_tensors(path)
        for name, m in mask.items():
            if ((m != 0) & (m != 1)).any():
                raise StoreError(f"{path} entry {name!r} holds values other than 0 and 1")
        return {name: m != 0 for name, m in mask.items()}

    def weights(self, level: int | None = None, which: str = "final") -> State:
        """Weights of a level (``final``/``start``), or the run's ``init`` / ``rewind`` point."""
        if which in ("final", "start"):
            if level is None:
                raise StoreError(f"weights(which={which!r}) needs a level")
            checkpoints = self._checkpoints(self._require(level))
            return load_tensors(checkpoints[-1 if which == "final" else 0])
        if which == "init":
            pretrain = self._dir("pretrain")
            return load_tensors(
                (pretrain if pretrain.is_dir() else self._dir(0)) / "model_ep0_it0.pth"
            )
        if which == "rewind":
            start = self._checkpoints(self._require(0))[0]
            if start.name == "model_ep0_it0.pth":
                raise StoreError(
                    f"{self.run_id} rewinds to step 0, so the rewind point is the init: "
                    "use which='init'"
                )
            return load_tensors(start)
        raise StoreError(f"which = {which!r}; choose one of: final, start, init, rewind")

    def _log(self, level: int) -> list[tuple[str, int, float]]:
        path = self._dir(self._require(level)) / "logger"
        rows = read_logger(path)
        if not rows:
            raise StoreError(f"{path} holds no evaluations; rerun the level in OpenLTH")
        return rows

    def level_metrics(self, level: int) -> dict[str, Any]:
        """Mask counts plus the logger's metrics at the level's last evaluated iteration."""
        rows = self._log(level)
        end = max(it for _, it, _ in rows)
        final = {"step": end, **{name: value for name, it, value in rows if it == end}}
        return level_metrics(level, self.mask(level), final, min(it for _, it, _ in rows))

    def history(self) -> pd.DataFrame:
        """Every logged evaluation: one row per (level, step), a column per metric."""
        frames = []
        for level in self.levels:
            rows = pd.DataFrame(self._log(level), columns=["name", "step", "value"])
            wide = rows.pivot_table(index="step", columns="name", values="value", aggfunc="last")
            frames.append(wide.reset_index().assign(level=level))
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True)
        frame.columns.name = None
        return frame[["level", *(c for c in frame.columns if c != "level")]]


def open_openlth(path: str | Path) -> list[OpenLTHRun]:
    """Every replicate under ``path``: a results root, one ``lottery_<hash>`` or one replicate."""
    path = Path(path)
    if not path.is_dir():
        raise StoreError(f"{path} is not a directory; pass an OpenLTH results root")
    if _REPLICATE.fullmatch(path.name):
        return [OpenLTHRun(path)]
    lotteries = [path] if _LOTTERY.fullmatch(path.name) else sorted(path.iterdir())
    replicates = [
        replicate
        for lottery in lotteries
        if _LOTTERY.fullmatch(lottery.name) and lottery.is_dir()
        for replicate in sorted(lottery.iterdir(), key=_replicate_number)
        if _REPLICATE.fullmatch(replicate.name) and replicate.is_dir()
    ]
    if not replicates:
        raise StoreError(
            f"{path} holds no OpenLTH runs (no lottery_<hash>/replicate_<n> directories); "
            "pass the OpenLTH results root or one lottery_<hash> directory"
        )
    return [OpenLTHRun(r) for r in replicates]


def _replicate_number(path: Path) -> tuple[int, str]:
    match = _REPLICATE.fullmatch(path.name)
    return (int(match[1]) if match else -1, path.name)


# --- models pruned with torch.nn.utils.prune ------------------------------------------------
_TORCH_CRITERIA = {
    torch_prune.L1Unstructured: "magnitude",
    torch_prune.RandomUnstructured: "random",
    torch_prune.LnStructured: "ln_structured",
    torch_prune.RandomStructured: "random_structured",
}


def _hook_settings(hook: torch_prune.BasePruningMethod) -> dict[str, Any] | None:
    """The prune.* fields of one torch pruning hook, or None when maskstudy has no equivalent."""
    criterion = _TORCH_CRITERIA.get(type(hook))
    amount = getattr(hook, "amount", None)
    if criterion is None or not isinstance(amount, float) or not 0 < amount < 1:
        return None
    settings = {"prune.criterion": criterion, "prune.amount": amount}
    if hasattr(hook, "dim"):
        settings["prune.dim"] = hook.dim
    if hasattr(hook, "n"):
        settings["prune.n"] = hook.n
    return settings


def torch_prune_settings(model: nn.Module) -> dict[str, Any]:
    """Dotted prune.* overrides when every pruned tensor of ``model`` had the same single
    torch method (e.g. l1_unstructured at 0.2); {} when they differ, were pruned repeatedly
    (PruningContainer), by a mask (custom_from_mask) or with a count instead of a fraction."""
    settings = [
        _hook_settings(hook)
        for module in model.modules()
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, torch_prune.BasePruningMethod)
    ]
    if not settings or settings[0] is None or any(s != settings[0] for s in settings):
        return {}
    return settings[0]


class ImportedRun(_ForeignRun):
    """One level (0) of a model pruned with torch.nn.utils.prune, read like a maskstudy run.

    ``weights(0)`` (``final``) is the trained network; ``start`` exists only when the model's
    own weights were the starting point of a later training (``trained`` given). Level
    metrics are the mask counts plus whatever ``metrics`` the caller measured (e.g. test_acc).
    """

    def __init__(
        self,
        run_id: str,
        config: RunConfig,
        mask: Mask,
        weights: Mapping[str, State],
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_id, self.config, self._mask = run_id, config, mask
        self._weights, self._metrics = dict(weights), dict(metrics or {})

    @property
    def levels(self) -> list[int]:
        return [0]

    def mask(self, level: int) -> Mask:
        self._require(level)
        return {name: m.clone() for name, m in self._mask.items()}

    def weights(self, level: int | None = 0, which: str = "final") -> State:
        if level is not None:
            self._require(level)
        if which not in self._weights:
            raise StoreError(
                f"{self.run_id} has no {which!r} weights; it has: {', '.join(self._weights)} "
                "(pass trained= to from_pruned_model to make the model's weights the start)"
            )
        return {name: w.clone() for name, w in self._weights[which].items()}

    def level_metrics(self, level: int) -> dict[str, Any]:
        # The step training started from is unknown for an imported model.
        metrics = level_metrics(self._require(level), self._mask, self._metrics, start_step=0)
        del metrics["start_step"]
        return metrics


def _plain(weights: nn.Module | Mapping[str, torch.Tensor]) -> State:
    if isinstance(weights, nn.Module):
        return plain_state_dict(weights)
    return {name: w.detach().clone() for name, w in weights.items()}


def from_pruned_model(
    model: nn.Module,
    name: str = "imported",
    trained: nn.Module | Mapping[str, torch.Tensor] | None = None,
    config: ConfigLike = None,
    metrics: Mapping[str, Any] | None = None,
) -> ImportedRun:
    """A one-level run from ``model`` pruned with torch.nn.utils.prune (its ``weight_mask`` buffers).

    ``trained``: the network after training under this mask (a module or state dict); then
    ``model``'s own weights are the level's ``start``. Without it ``model``'s weights (orig ×
    mask) are the ``final`` ones. ``config``: a RunConfig, or dotted overrides such as
    ``{"model.name": "lenet5", "seed": 3}`` on top of the prune.* settings read from the
    model's pruning hooks (:func:`torch_prune_settings`) and ``levels = 0``.
    """
    mask = from_torch_prune(model)
    if not mask:
        raise ConfigError(
            f"model {name!r} has no torch.nn.utils.prune masks (no *_mask buffers); prune it "
            "first, e.g. torch.nn.utils.prune.l1_unstructured(layer, 'weight', amount=0.2)"
        )
    own = plain_state_dict(model)
    weights = {"final": own}
    if trained is not None:
        final = _plain(trained)
        if set(final) != set(own):
            raise ConfigError(
                f"trained weights of {name!r} do not match the model (missing: "
                f"{sorted(set(own) - set(final))}, extra: {sorted(set(final) - set(own))}); "
                "pass the same architecture after training"
            )
        weights = {"final": final, "start": own}
    return ImportedRun(name, _imported_config(model, config), mask, weights, metrics)


def _imported_config(model: nn.Module, config: ConfigLike) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    overrides = {**torch_prune_settings(model), **(config or {})}
    return RunConfig(levels=0).replace(overrides)


def runs_from_pruned_models(
    models: Sequence[nn.Module],
    names: Sequence[str] | None = None,
    configs: Sequence[ConfigLike] | None = None,
) -> list[ImportedRun]:
    """One :func:`from_pruned_model` run per model, named ``names`` (default imported-<i>).

    ``overlap_table(runs, along=F)`` pairs runs whose configs differ only in ``F``: models
    pruned by different torch methods differ in ``criterion`` already; for others pass
    ``configs``, e.g. ``[{"seed": 0}, {"seed": 1}]`` to compare ``along="seed"``.
    """
    names = [f"imported-{i}" for i in range(len(models))] if names is None else list(names)
    configs = [None] * len(models) if configs is None else list(configs)
    if not len(models) == len(names) == len(configs):
        raise ConfigError(
            f"got {len(models)} models, {len(names)} names and {len(configs)} configs; "
            "pass one name and one config per model"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"names {names} repeat; give every model its own name")
    return [
        from_pruned_model(model, name, config=config)
        for model, name, config in zip(models, names, configs, strict=True)
    ]
