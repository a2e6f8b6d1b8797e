"""How a run trains level L >= 1: the regimes of ordinary runs and the kinds of branches.

A regime prunes the run's own level L-1 and trains the result; a branch kind trains the mask a
parent run stored for level L (docs/methods.md, Regimes and Branches). Each rule says where
training starts and how its schedule runs; the rest of the package asks these fields instead of
comparing names.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where level L >= 1 starts.
REWIND = "rewind"  # the rewind point: θ0, or θk of the dense run for rewind_to = k
PREVIOUS = "previous"  # the trained weights of level L-1 (of the run, or of the parent)
FRESH = "fresh"  # a fresh init θ0' drawn once, from the branch's seed
FRESH_EACH_LEVEL = "fresh each level"  # a fresh init drawn anew at every level
# How its schedule runs.
FROM_K = "from step k"  # the schedule replayed from the rewind step k
FROM_ZERO = "from step 0"  # the whole schedule, as a dense run
FINAL_LR = "final lr"  # the same length, held at the schedule's last learning rate
STRETCHED = "stretched"  # the whole schedule stretched by the FLOPs ratio (Scratch-B)


@dataclass(frozen=True)
class Rule:
    """One way to train level L >= 1."""

    name: str
    mask: str  # what it trains
    start: str  # REWIND | PREVIOUS | FRESH | FRESH_EACH_LEVEL
    schedule: str  # FROM_K | FROM_ZERO | FINAL_LR | STRETCHED
    source: str  # the paper that defines it

    @property
    def continues(self) -> bool:
        """It starts from level L-1's trained weights, so it needs them."""
        return self.start == PREVIOUS

    @property
    def fresh_init(self) -> bool:
        """It trains from a fresh init of its own, drawn once (the branch's θ0')."""
        return self.start == FRESH


OWN = "its own level L-1, pruned"
REGIMES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("rewind", OWN, REWIND, FROM_K, "Frankle & Carbin 2019; Frankle et al. 2020"),
        Rule("finetune", OWN, PREVIOUS, FINAL_LR, "Han et al. 2015; Renda et al. 2020"),
        Rule("lr_rewind", OWN, PREVIOUS, FROM_K, "Renda et al. 2020"),
        Rule("reinit_prune", OWN, FRESH_EACH_LEVEL, FROM_ZERO, "Paganini & Forde 2020"),
    )
}
PARENTS = "the parent's mask of level L"
BRANCH_KINDS: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("reinit", PARENTS, FRESH, FROM_ZERO, "Frankle & Carbin 2019"),
        Rule("random_mask", "a random mask with the parent's counts", REWIND, FROM_K, "Frankle & Carbin 2019"),
        Rule("shuffle", "the parent's mask, permuted per layer", REWIND, FROM_K, "Frankle et al. 2021"),
        Rule("rewind", PARENTS, REWIND, FROM_K, "Frankle & Carbin 2019"),
        Rule("scratch_e", PARENTS, FRESH, FROM_ZERO, "Liu et al. 2019"),
        Rule("scratch_b", PARENTS, FRESH, STRETCHED, "Liu et al. 2019"),
        Rule("finetune", PARENTS, PREVIOUS, FINAL_LR, "Liu et al. 2019"),
        Rule("lr_rewind", PARENTS, PREVIOUS, FROM_K, "Renda et al. 2020"),
    )
}  # fmt: skip
# Values that were regimes before branches existed, and what a user wants instead.
MOVED_REGIMES = {
    "reinit": "the lottery-ticket control (the ticket's mask, a fresh init) is the branch kind "
    "'reinit' (`maskstudy branch RUN --kind reinit` or a [branches] table); Paganini & Forde's "
    "reinitialise-then-prune-again is regime = 'reinit_prune'",
    "random_mask": "a random mask with the parent's per-layer counts is the branch kind "
    "'random_mask' (`maskstudy branch RUN --kind random_mask` or a [branches] table)",
    "scratch_e": "Rethinking's scratch baselines train the parent's masks: branch kind "
    "'scratch_e' (`maskstudy branch RUN --kind scratch_e` or a [branches] table)",
    "scratch_b": "Rethinking's scratch baselines train the parent's masks: branch kind "
    "'scratch_b' (`maskstudy branch RUN --kind scratch_b` or a [branches] table)",
}


def method_name(regime: str, kind: str) -> str:
    """The training a figure or table names: the regime of a run, the kind of a branch (marked
    as a branch where a kind shares a regime's name: a finetune branch is not a finetune run)."""
    if not kind:
        return regime
    return f"{kind} (branch)" if kind in REGIMES else kind


# Every name method_name gives, in legend order: the regimes, then the branch kinds.
METHODS = (*REGIMES, *(method_name("", kind) for kind in BRANCH_KINDS))
