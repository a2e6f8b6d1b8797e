"""Exact ties: every criterion removes the lowest scores, equal scores lowest flat index first."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maskstudy.pruning import (
    drop_lowest,
    drop_step,
    full_mask,
    pca_prune,
    prune,
    saliency_prune,
)
from maskstudy.pruning.saliency import grasp_scores, snip_scores


def removed(mask: torch.Tensor) -> list[int]:
    """Flat indices a mask removes."""
    return torch.nonzero(~mask.reshape(-1)).flatten().tolist()


def rule(scores: list[float], alive: list[bool], count: int) -> list[int]:
    """The documented rule in plain Python: among alive entries, (score, flat index) ascending."""
    order = sorted((s, i) for i, (s, a) in enumerate(zip(scores, alive, strict=True)) if a)
    return sorted(i for _, i in order[:count])


@pytest.mark.parametrize("shape", [(10,), (2, 5), (5, 2, 1)])
def test_all_equal_weights_lose_the_lowest_flat_indices(shape):
    mask = prune({"w": torch.ones(shape)}, None, "magnitude", 0.3)["w"]
    assert removed(mask) == [0, 1, 2]


def test_all_equal_in_a_large_tensor_loses_the_first_half():
    mask = prune({"w": torch.full((100, 100), -0.5)}, None, "magnitude", 0.5)["w"]
    assert removed(mask) == list(range(5000))


def test_partially_equal_scores_by_hand():
    w = {"w": torch.tensor([3.0, 1.0, -2.0, -1.0, 0.5, 1.0, 2.0, -3.0])}
    assert removed(prune(w, None, "magnitude", 0.375)["w"]) == [1, 3, 4]
    first = prune(w, None, "magnitude", 0.25)  # 0.5, then the first |1|
    assert removed(first["w"]) == [1, 4]
    # level 2 removes 3 of the 6 alive: |1| at 3 and 5, then the first |2| (at 2)
    assert removed(prune(w, first, "magnitude", 0.5)["w"]) == [1, 2, 3, 4, 5]


def test_global_ties_follow_the_concatenation_in_mask_order():
    a = torch.tensor([[2.0, 1.0, 1.0], [1.0, 2.0, 2.0]])
    b = torch.tensor([1.0, 0.5, 1.0, 2.0])
    ab = prune({"a": a, "b": b}, None, "magnitude", 0.4, "global")
    assert (removed(ab["a"]), removed(ab["b"])) == ([1, 2, 3], [1])
    ba = prune({"a": a, "b": b}, {"b": b > 0, "a": a > 0}, "magnitude", 0.4, "global")
    assert (removed(ba["a"]), removed(ba["b"])) == ([1], [0, 1, 2])


def test_random_tie_heavy_tensors_match_the_plain_python_rule():
    gen = torch.Generator().manual_seed(0)
    weights = {
        "a": torch.randint(-3, 4, (6, 5), generator=gen).float(),
        "b": torch.randint(-3, 4, (17,), generator=gen).float(),
    }
    flat = torch.cat([w.reshape(-1) for w in weights.values()]).abs().tolist()
    mask = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    for _ in range(3):
        new = prune(weights, mask, "magnitude", 0.3, "global")
        alive = torch.cat([m.reshape(-1) for m in mask.values()])
        expected = alive.clone()
        expected[rule(flat, alive.tolist(), round(0.3 * int(alive.sum())))] = False
        assert torch.equal(torch.cat([m.reshape(-1) for m in new.values()]), expected)
        mask = new


def test_same_mask_for_float64_and_non_contiguous_copies():
    w = torch.tensor([[1.0, 2.0, 1.0], [2.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 2.0, 1.0]])
    base = prune({"w": w}, None, "magnitude", 0.5)["w"]
    assert removed(base) == [0, 2, 4, 6, 7, 8]
    strided = w.t().contiguous().t()  # same values, column-major memory
    assert not strided.is_contiguous()
    for copy in (w.double(), strided):
        assert torch.equal(prune({"w": copy}, None, "magnitude", 0.5)["w"], base)


def test_ln_structured_equal_norm_channels_by_hand():
    w = torch.tensor([[1.0, 2.0, 2.0], [2.0, 2.0, 1.0], [0.0, 3.0, 4.0], [2.0, 1.0, 2.0]])
    for n in (1, 2):  # L1 5, 5, 7, 5 and L2 3, 3, 5, 3: rows 0, 1 go
        mask = prune({"w": w}, None, "ln_structured", 0.5, n=n, dim=0)["w"]
        assert mask.all(1).tolist() == [False, False, True, True]
        assert mask.any(1).tolist() == mask.all(1).tolist()
    permuted = w[[3, 2, 1, 0]]  # norms 5, 7, 5, 5: the rule now removes rows 0 and 2
    mask = prune({"w": permuted}, None, "ln_structured", 0.5, n=2, dim=0)["w"]
    assert mask.all(1).tolist() == [False, True, False, True]
    cols = prune({"w": w.t()}, None, "ln_structured", 0.5, n=1, dim=1)["w"]  # channels
    assert cols.all(0).tolist() == [False, False, True, True]


def test_kernel_window_and_combined_ties_by_hand():
    w = {"c": torch.ones(2, 2, 2, 2)}
    kernel = prune(w, None, "kernel", 0.5)["c"]
    assert kernel.flatten(2).all(2).tolist() == [[False, False], [True, True]]
    window = prune(w, None, "window", 0.5)["c"]
    assert window.flatten(2).tolist() == [[[False, False, True, True]] * 2] * 2
    combined = prune(w, None, "combined", 0.75)["c"]
    assert combined.flatten(2).tolist() == [
        [[False] * 4, [False] * 4],
        [[False, False, True, True]] * 2,
    ]


def test_drop_candidates_follow_the_rule():
    mask = drop_step({"w": torch.ones(10)}, None, 0.3, away=1.0, back=0.0)["w"]
    assert removed(mask) == [0, 1, 2]


def test_random_criteria_go_through_the_same_selection():
    gen = torch.Generator().manual_seed(3)
    mask = prune({"w": torch.ones(4, 5)}, None, "random", 0.3, generator=gen)
    scores = torch.rand(4, 5, generator=gen.manual_seed(3)).reshape(-1)
    assert torch.equal(mask["w"].reshape(-1), drop_lowest(scores, 6))


def test_drop_lowest_rows_counts_and_signed_zeros():
    scores = torch.tensor([[0.0, -0.0, 0.0, -1.0], [2.0, 2.0, 2.0, 2.0]])
    keep = drop_lowest(scores, torch.tensor([[2], [3]]))
    assert keep.tolist() == [[False, True, True, False], [False, False, False, True]]
    assert drop_lowest(torch.empty(0), 0).shape == (0,)


def zero_feature_problem(columns: list[int]) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Linear(4, 3) on inputs whose ``columns`` are always 0: those weights score exactly 0."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    x[:, columns] = 0
    return model, x, y


def test_snip_exact_zero_scores_by_hand_and_when_permuted():
    model, x, y = zero_feature_problem([0, 2])  # zero scores at flat 0, 2, 4, 6, 8, 10
    mask = {"weight": torch.ones(3, 4, dtype=torch.bool)}
    scores = snip_scores(model, x, y, mask).scores["weight"]
    assert removed(scores != 0) == [0, 2, 4, 6, 8, 10]
    first, _ = saliency_prune(model, x, y, mask, "snip", 0.25)
    again, _ = saliency_prune(model, x, y, mask, "snip", 0.25)
    assert removed(first["weight"]) == removed(again["weight"]) == [0, 2, 4]
    perm = [3, 0, 1, 2]  # old columns 0, 2 move to 1, 3: zero scores at flat 1, 3, 5, 7, 9, 11
    with torch.no_grad():
        model.weight.copy_(model.weight[:, perm])
    moved, _ = saliency_prune(model, x[:, perm], y, mask, "snip", 0.25)
    assert removed(moved["weight"]) == [1, 3, 5]


def test_grasp_signed_zero_scores_lose_the_lowest_flat_indices():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.zero_()
        model[2].weight.zero_()
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    mask = full_mask(model)
    scores = grasp_scores(model, x, y, mask).scores
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    assert (flat == 0).all() and torch.signbit(flat).any() and not torch.signbit(flat).all()
    for _ in range(2):
        new, _ = saliency_prune(model, x, y, mask, "grasp", 0.75)
        assert removed(new["0.weight"]) == list(range(12))
        assert removed(new["2.weight"]) == [0, 1, 2]


def test_pca_equal_importances_lose_the_lowest_flat_indices():
    model = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    x = torch.randint(0, 2, (40, 4), generator=torch.Generator().manual_seed(0)).float() * 2 - 1
    mask, _ = pca_prune(model, x, amount=0.5)  # every importance is exactly 1/4
    assert removed(mask["0.weight"]) == [0, 1, 2, 3, 4, 5]


def no_topk(*_: object, **__: object) -> None:
    raise AssertionError("topk / kthvalue leave the order of ties unspecified")


@pytest.mark.parametrize(
    "criterion,options",
    [
        ("magnitude", {}),
        ("magnitude", {"scope": "global"}),
        ("random", {"generator": torch.Generator()}),
        ("ln_structured", {"n": 2}),
        ("random_structured", {"generator": torch.Generator()}),
        ("kernel", {}),
        ("window", {}),
        ("combined", {}),
        ("drop", {"away": 1.0, "target": 0.1}),
    ],
)
def test_no_criterion_uses_topk_or_kthvalue(monkeypatch, criterion, options):
    for owner in (torch, torch.Tensor):
        monkeypatch.setattr(owner, "topk", no_topk)
        monkeypatch.setattr(owner, "kthvalue", no_topk)
    w = {"c": torch.ones(4, 2, 3, 3), "l": torch.ones(5, 6)}
    prune(w, None, criterion, 0.5, **options)


@pytest.mark.parametrize("criterion", ["snip", "grasp", "synflow", "pca"])
def test_no_saliency_criterion_uses_topk_or_kthvalue(monkeypatch, criterion):
    for owner in (torch, torch.Tensor):
        monkeypatch.setattr(owner, "topk", no_topk)
        monkeypatch.setattr(owner, "kthvalue", no_topk)
    model, x, y = zero_feature_problem([1])
    saliency_prune(model, x, y, full_mask(model), criterion, 0.5, rounds=1)
