"""The ``attack`` section of a run's config: the adversarial evaluation of every level."""

from __future__ import annotations

from dataclasses import dataclass

from maskstudy.eval.robust import check_attack


@dataclass(frozen=True)
class AttackConfig:
    """Adversarial evaluation of every level's final weights on the test split (eval/)."""

    eps: tuple[float, ...] = ()  # L∞ radii in [0, 1] pixel units, e.g. 8/255; () = no attacks
    kinds: tuple[str, ...] = ("fgsm", "pgd")
    pgd_steps: int = 10
    pgd_step: float = 0.25  # PGD step size as a fraction of eps (Campfire: eps/4)
    random_start: bool = False  # PGD starts from a uniform point of the eps-ball
    subset: int = 0  # attack the first n test examples; 0 = the whole test split

    def __post_init__(self) -> None:
        check_attack(self)
