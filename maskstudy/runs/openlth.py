"""OpenLTH results read like maskstudy runs: ``lottery_<hash>/replicate_<n>`` directories.

For the architectures both have, masks and weights are renamed to maskstudy's tensor names
(LeNet-300-100's ``fc_layers.0`` / ``fc_layers.1`` / ``fc`` → ``fc1`` / ``fc2`` / ``fc3``; VGG's
``layers.<i>.conv`` / ``.bn`` → ``conv<k>`` / ``bn<k>``; ResNet's ``blocks.<i>`` →
``stage<s>.<b>``), so an OpenLTH mask compares directly with a maskstudy run's; other models
keep OpenLTH's names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from maskstudy.errors import ConfigError, StoreError
from maskstudy.masks import Mask
from maskstudy.runs.config import RunConfig
from maskstudy.runs.foreign import ForeignRun, State, load_tensors
from maskstudy.runs.run import level_metrics

_LOTTERY = re.compile(r"lottery_\w+")
_REPLICATE = re.compile(r"replicate_(\d+)")
_LEVEL = re.compile(r"level_(\d+)")
_CHECKPOINT = re.compile(r"model_ep(\d+)_it(\d+)\.pth")


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


def maskstudy_names(model_name: str, names: Iterable[str]) -> dict[str, str]:
    """OpenLTH tensor name → maskstudy's, for the OpenLTH model ``model_name``; names of a model
    maskstudy does not have map to themselves."""
    names = list(names)
    if model_name == "mnist_lenet_300_100":
        rules = [
            (r"fc_layers\.(\d+)\.", lambda m: f"fc{int(m[1]) + 1}."),
            (r"fc\.", lambda m: "fc3."),
        ]
    elif re.fullmatch(r"cifar_vgg_(\d+)", model_name):
        convs = sorted({int(m[1]) for n in names if (m := re.match(r"layers\.(\d+)\.conv\.", n))})
        rank = {index: k for k, index in enumerate(convs, start=1)}
        rules = [(r"layers\.(\d+)\.(conv|bn)\.", lambda m: f"{m[2]}{rank[int(m[1])]}.")]
    elif match := re.fullmatch(r"cifar_resnet_(\d+)(?:_\d+)?", model_name):
        per_stage = (int(match[1]) - 2) // 6
        rules = [
            (
                r"blocks\.(\d+)\.",
                lambda m: f"stage{int(m[1]) // per_stage + 1}.{int(m[1]) % per_stage}.",
            )
        ]
    else:
        rules = []
    renamed = {}
    for name in names:
        new = name
        for pattern, replace in rules:
            if m := re.match(pattern, name):
                new = replace(m) + name[m.end() :]
                break
        renamed[name] = new
    return renamed


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
    if cfg.prune.exclude:  # OpenLTH's names of the layers it leaves whole, in maskstudy's
        names = maskstudy_names(hparams.get("model_name", ""), cfg.prune.exclude)
        cfg = cfg.replace({"prune.exclude": [names[n] for n in cfg.prune.exclude]})
    # Rewinding pretrains with the main settings (maskstudy's only way); differing ones stay listed.
    for key in [k for k in unmapped if k.startswith("pretrain_")]:
        main = key.removeprefix("pretrain_")
        if main in hparams and main not in unmapped and hparams[main] == hparams[key]:
            del unmapped[key]
    return cfg, unmapped


# --- runs -----------------------------------------------------------------------------------
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


class OpenLTHRun(ForeignRun):
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
        return {name: m != 0 for name, m in self._renamed(mask).items()}

    def weights(self, level: int | None = None, which: str = "final") -> State:
        """Weights of a level (``final``/``start``), or the run's ``init`` / ``rewind`` point."""
        return self._renamed(load_tensors(self._weights_file(level, which)))

    def _weights_file(self, level: int | None, which: str) -> Path:
        if which in ("final", "start"):
            if level is None:
                raise StoreError(f"weights(which={which!r}) needs a level")
            checkpoints = self._checkpoints(self._require(level))
            return checkpoints[-1 if which == "final" else 0]
        if which == "init":
            pretrain = self._dir("pretrain")
            return (pretrain if pretrain.is_dir() else self._dir(0)) / "model_ep0_it0.pth"
        if which == "rewind":
            start = self._checkpoints(self._require(0))[0]
            if start.name == "model_ep0_it0.pth":
                raise StoreError(
                    f"{self.run_id} rewinds to step 0, so the rewind point is the init: "
                    "use which='init'"
                )
            return start
        raise StoreError(f"which = {which!r}; choose one of: final, start, init, rewind")

    def _renamed(self, tensors: dict) -> dict:
        """``tensors`` under maskstudy's names (for the models both have)."""
        names = maskstudy_names(self.hparams.get("model_name", ""), tensors)
        return {names[name]: value for name, value in tensors.items()}

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
