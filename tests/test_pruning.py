"""prune() against torch.nn.utils.prune iterated on the same weights, and interop both ways."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as tp

from maskstudy.errors import ConfigError
from maskstudy.models import build
from maskstudy.pruning import (
    CRITERIA,
    from_torch_prune,
    full_mask,
    plain_state_dict,
    prune,
    prune_count,
    remove_torch_prune,
    to_torch_prune,
)


def small_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 20), nn.Linear(20, 5)
    )


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: p.detach().clone() for name, p in model.named_parameters() if name.endswith("weight")
    }


def torch_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.bool() for name, m in from_torch_prune(model).items()}


def assert_same(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


@pytest.mark.parametrize("amount", [0.2, 0.5, 0.37])
def test_layerwise_magnitude_equals_iterated_l1_unstructured(amount):
    model = small_net()
    w = weights_of(model)
    mask = None
    for _ in range(4):
        mask = prune(w, mask, "magnitude", amount)
        for module in (model[0], model[3], model[4]):
            tp.l1_unstructured(module, "weight", amount=amount)
        assert_same(mask, torch_masks(model))


def test_global_magnitude_equals_iterated_global_unstructured():
    model = small_net(1)
    w = weights_of(model)
    params = [(model[0], "weight"), (model[3], "weight"), (model[4], "weight")]
    mask = None
    for _ in range(5):
        mask = prune(w, mask, "magnitude", 0.2, "global")
        tp.global_unstructured(params, pruning_method=tp.L1Unstructured, amount=0.2)
        assert_same(mask, torch_masks(model))


@pytest.mark.parametrize("n,dim", [(1, 0), (2, 0), (1, 1), (2, 1)])
def test_ln_structured_equals_iterated_torch(n, dim):
    model = small_net(2)
    w = weights_of(model)
    mask = None
    for _ in range(3):
        mask = prune(w, mask, "ln_structured", 0.3, n=n, dim=dim)
        for module in (model[0], model[3], model[4]):
            tp.ln_structured(module, "weight", amount=0.3, n=n, dim=dim)
        assert_same(mask, torch_masks(model))


def test_structured_after_unstructured_keeps_partial_slices_like_torch_container():
    model = small_net(3)
    w = weights_of(model)
    mask = prune(w, None, "magnitude", 0.6)
    for module in (model[0], model[3], model[4]):
        tp.l1_unstructured(module, "weight", amount=0.6)
    mask = prune(w, mask, "ln_structured", 0.25, n=2, dim=0)
    for module in (model[0], model[3], model[4]):
        tp.ln_structured(module, "weight", amount=0.25, n=2, dim=0)
    assert_same(mask, torch_masks(model))


def test_iterative_counts_are_round_of_amount_times_alive():
    w = {"w": torch.randn(1000)}
    mask, alive = None, 1000
    for _ in range(10):
        mask = prune(w, mask, "magnitude", 0.2)
        alive -= round(0.2 * alive)
        assert int(mask["w"].sum()) == alive
    assert alive == 107  # 1000 → 800 → 640 → 512 → 410 → 328 → 262 → 210 → 168 → 134 → 107


def test_rounding_modes():
    assert prune_count(0.2, 12) == 2  # 2.4
    assert prune_count(0.2, 12, "ceil") == 3
    assert prune_count(0.5, 5, "floor") == 2
    assert prune_count(0.5, 5) == 2  # Python rounds half to even, as torch does
    with pytest.raises(ConfigError, match="rounding"):
        prune_count(0.5, 5, "nearest")


def test_magnitude_prunes_exactly_the_smallest_alive_weights():
    w = {"w": torch.tensor([0.5, -0.1, 3.0, -2.0, 0.05, 1.0])}
    mask = prune(w, None, "magnitude", 0.5)  # removes 3 of 6: 0.05, -0.1, 0.5
    assert mask["w"].tolist() == [False, False, True, True, False, True]
    mask = prune(w, mask, "magnitude", 0.34)  # round(1.02) = 1 of the 3 alive: 1.0
    assert mask["w"].tolist() == [False, False, True, True, False, False]


def test_masks_are_nested_and_never_resurrect():
    w = {"a": torch.randn(50, 40), "b": torch.randn(30)}
    previous = None
    for crit in ["magnitude", "random", "magnitude", "random"]:
        mask = prune(w, previous, crit, 0.3, generator=torch.Generator().manual_seed(0))
        if previous is not None:
            for name in w:
                assert not (mask[name] & ~previous[name]).any()
        previous = mask


def test_layer_amounts_override_global_scope_layerwise():
    w = {"a": torch.randn(100), "b": torch.randn(200), "out": torch.randn(40) * 10}
    mask = prune(w, None, "magnitude", 0.2, "global", layer_amounts={"out": 0.1})
    assert int(mask["out"].sum()) == 36
    assert int(mask["a"].sum()) + int(mask["b"].sum()) == 300 - 60
    pooled = prune({"a": w["a"], "b": w["b"]}, None, "magnitude", 0.2, "global")
    assert_same({k: mask[k] for k in "ab"}, pooled)


def test_excluded_tensors_pass_through_unchanged():
    w = {"a": torch.randn(100), "out": torch.randn(10)}
    start = {"a": torch.ones(100, dtype=torch.bool), "out": torch.rand(10) > 0.5}
    mask = prune(w, start, "magnitude", 0.5, exclude=["out"])
    assert torch.equal(mask["out"], start["out"])
    assert int(mask["a"].sum()) == 50


def test_random_is_reproducible_with_generator_and_keeps_counts():
    w = {"a": torch.randn(20, 20)}
    m1 = prune(w, None, "random", 0.4, generator=torch.Generator().manual_seed(7))
    m2 = prune(w, None, "random", 0.4, generator=torch.Generator().manual_seed(7))
    m3 = prune(w, None, "random", 0.4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(m1["a"], m2["a"]) and not torch.equal(m1["a"], m3["a"])
    assert int(m1["a"].sum()) == 240


def test_random_structured_prunes_whole_filters():
    w = {"conv": torch.randn(10, 3, 3, 3)}
    mask = prune(
        w, None, "random_structured", 0.3, dim=0, generator=torch.Generator().manual_seed(0)
    )
    per_filter = mask["conv"].flatten(1).sum(1)
    assert sorted(per_filter.tolist()) == [0] * 3 + [27] * 7
    mask = prune(
        w, mask, "random_structured", 0.5, dim=0, generator=torch.Generator().manual_seed(1)
    )
    assert (
        int((mask["conv"].flatten(1).sum(1) > 0).sum()) == 3
    )  # round(3.5) = 4 of 7 removed (half to even)


def test_scores_replace_weights_as_ranked_quantity():
    w = {"w": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    scores = {"w": torch.tensor([4.0, 3.0, 2.0, 1.0])}
    mask = prune(w, None, "magnitude", 0.5, scores=scores)
    assert mask["w"].tolist() == [True, True, False, False]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            dict(criterion="saliency", amount=0.2),
            "unknown criterion 'saliency'; valid criterions: .*ln_structured",
        ),
        (dict(criterion="magnitude", amount=1.5), "amount = 1.5 must be a fraction"),
        (dict(criterion="magnitude", amount=0.2, scope="net"), "scope = 'net'"),
        (dict(criterion="ln_structured", amount=0.2, scope="global"), "use scope='layer'"),
        (dict(criterion="magnitude", amount=0.2, exclude=["fc9"]), "'fc9' is not a masked tensor"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        prune({"a": torch.randn(4, 4)}, None, **kwargs)


def test_mask_of_another_model_is_refused():
    with pytest.raises(ConfigError, match="belongs to another model"):
        prune({"a": torch.randn(4, 4)}, {"a": torch.ones(3, 4, dtype=torch.bool)}, "magnitude", 0.2)


def test_registry_names_every_criterion():
    base = {"ln_structured", "magnitude", "random", "random_structured"}
    assert base | {"kernel", "window", "combined"} <= set(CRITERIA.names())


def test_to_torch_prune_masks_the_forward_pass_and_reads_back():
    model = build("lenet5", (1, 28, 28), 10, seed=0)
    mask = prune(weights_of(model), full_mask(model), "magnitude", 0.7, "global")
    reference = build("lenet5", (1, 28, 28), 10, seed=0)
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if name in mask:
                p.mul_(mask[name])
    to_torch_prune(model, mask)
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(model(x), reference(x))
    assert_same(from_torch_prune(model), mask)
    state = plain_state_dict(model)
    assert state.keys() == reference.state_dict().keys()
    for name, value in reference.state_dict().items():
        assert torch.equal(state[name], value), name


def test_to_torch_prune_replaces_an_existing_torch_mask():
    model = small_net()
    tp.l1_unstructured(model[3], "weight", amount=0.9)
    ours = {"3.weight": torch.rand(20, 128) > 0.5}
    to_torch_prune(model, ours)
    assert torch.equal(from_torch_prune(model)["3.weight"], ours["3.weight"])
    assert torch.equal(model[3].weight != 0, ours["3.weight"] & (model[3].weight_orig != 0))


def test_remove_torch_prune_leaves_plain_zeroed_parameters():
    model = small_net()
    tp.random_unstructured(model[0], "weight", amount=0.5)
    mask = remove_torch_prune(model)
    assert "0.weight" in dict(model.named_parameters())
    assert not hasattr(model[0], "weight_mask")
    assert torch.equal(model[0].weight != 0, mask["0.weight"])
    assert from_torch_prune(model) == {}


def test_unknown_tensor_in_mask_is_refused_by_interop():
    with pytest.raises(ConfigError, match="names no tensor"):
        to_torch_prune(small_net(), {"9.weight": torch.ones(3, dtype=torch.bool)})


def test_a_misspelt_criterion_option_is_refused_with_the_valid_ones():
    w = {"w": torch.randn(4, 5)}
    with pytest.raises(
        ConfigError, match=r"'magnitude' takes no option 'dims'; its options: dim, init, n"
    ):
        prune(w, None, "magnitude", 0.5, dims=1)
    with pytest.raises(
        ConfigError,
        match="takes no option 'taget'; its options: away, dim, init, n, revive, target",
    ):
        prune(w, None, "drop", 0.5, away=0.5, taget=0.1)
