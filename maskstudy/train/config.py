"""The ``train`` section of a run's config: optimizer, schedule, batch, duration, threads."""

from __future__ import annotations

from dataclasses import dataclass

from maskstudy.errors import ConfigError
from maskstudy.fields import choice, positive
from maskstudy.steps import Steps, check_some_steps

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
COMPILE_MODES = ("off", "auto", "compile", "graphs")  # train/accel.py
PRECISIONS = ("fp32", "bf16", "tf32")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 128
    duration: str = "10ep"  # training length per level: '<n>ep' or '<n>it'
    schedule: str = "constant"  # constant | step (milestones × gamma) | cosine
    milestones: tuple[str, ...] = ()  # for schedule = 'step', e.g. ('80ep', '120ep')
    gamma: float = 0.1
    warmup: str = "0it"  # linear learning-rate warm-up from 0
    eval_every: str = "1ep"  # evaluation period
    # CPU threads of the run's arithmetic; part of its identity, as a matrix product split over
    # more threads rounds differently. More are faster for one big run; --jobs uses the cores.
    threads: int = 1
    # how the step runs (train/accel.py): off | auto | compile | graphs, and fp32 | bf16 | tf32;
    # the defaults are the eager fp32 arithmetic every device can reproduce
    compile: str = "off"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        choice(self.optimizer, OPTIMIZERS, "train.optimizer")
        choice(self.compile, COMPILE_MODES, "train.compile")
        choice(self.precision, PRECISIONS, "train.precision")
        choice(self.schedule, SCHEDULES, "train.schedule")
        positive(self.lr, "train.lr")
        positive(self.momentum, "train.momentum", zero_ok=True)
        positive(self.weight_decay, "train.weight_decay", zero_ok=True)
        positive(self.gamma, "train.gamma")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"train.batch_size = {self.batch_size!r} must be an integer >= 1")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(
                f"train.threads = {self.threads!r} must be an integer >= 1 (CPU threads per run)"
            )
        if self.nesterov and self.momentum == 0:
            raise ConfigError("train.nesterov = true needs train.momentum > 0")
        for name in ("duration", "warmup", "eval_every"):
            Steps.parse(getattr(self, name), f"train.{name}")
        for name in ("duration", "eval_every"):  # no training, never an evaluation
            check_some_steps(getattr(self, name), f"train.{name}")
        for m in self.milestones:
            Steps.parse(m, "train.milestones")
