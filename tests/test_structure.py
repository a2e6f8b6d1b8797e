"""Structure metrics on hand-built masks, chance columns against exact counts and Monte-Carlo,
effective sparsity against an iterative fixpoint, and the structure table on a real store."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy.stats import hypergeom
from torch import nn

from maskstudy.analysis import chance
from maskstudy.analysis.structure import (
    conv_structure,
    effective_mask,
    effective_sparsity,
    kernel_histogram,
    layer_structure,
    linear_structure,
    structure_table,
)
from maskstudy.errors import ConfigError
from maskstudy.masks import full_mask
from maskstudy.models import build
from maskstudy.pruning import CRITERIA
from maskstudy.runs.config import RunConfig
from maskstudy.runs.store import create_run, save_level

DRAWS = 10_000


def exact_all_pruned(n: int, k: int, g: int) -> float:
    return math.comb(n - g, k) / math.comb(n, k)


def random_masks(rng: np.random.Generator, shape: tuple[int, ...], k: int) -> np.ndarray:
    """DRAWS uniform masks of ``shape`` keeping exactly ``k`` weights each."""
    flat = np.zeros((DRAWS, math.prod(shape)), bool)
    flat[:, :k] = True
    return rng.permuted(flat, axis=1).reshape(DRAWS, *shape)


def assert_mean(fractions: np.ndarray, expected: float) -> None:
    """Expected within 4 standard errors of the mean fraction; the per-draw variance is floored
    at p(1−p), its bound for a fraction of groups, so rare events with no hits still count."""
    var = max(fractions.var(), expected * (1 - expected))
    assert abs(fractions.mean() - expected) < 4 * math.sqrt(var / len(fractions))


# --- dead groups ------------------------------------------------------------------------------
def test_conv_structure_counts_hand_built_dead_groups():
    mask = np.ones((4, 3, 3, 3), bool)
    mask[1] = False  # filter 1: its 3 kernels die too
    mask[:, 2] = False  # input channel 2: 4 kernels, one shared with filter 1
    mask[0, 0] = False  # one more kernel
    mask[3, 1, 0, 0] = False  # a partly pruned kernel is not dead
    frame = conv_structure(torch.from_numpy(mask)).set_index("unit")
    assert frame.loc[["filter", "channel", "kernel"], "dead"].tolist() == [1, 1, 7]
    assert frame.loc[["filter", "channel", "kernel"], "groups"].tolist() == [4, 3, 12]
    assert frame.loc[["filter", "channel", "kernel"], "group_size"].tolist() == [27, 36, 9]
    n, k = mask.size, int(mask.sum())
    for unit, g in [("filter", 27), ("channel", 36), ("kernel", 9)]:
        row = frame.loc[unit]
        assert row.expected == pytest.approx(exact_all_pruned(n, k, g), rel=1e-9)
        assert row.structure_index == pytest.approx(row.fraction / row.expected, rel=1e-12)
        assert 10**row.log10_expected == pytest.approx(row.expected, rel=1e-9)
    assert frame.loc["kernel", "fraction"] == 7 / 12
    assert frame.loc["filter", "density"] == k / n


def test_linear_structure_counts_dead_units_and_inputs():
    mask = np.ones((5, 6), bool)
    mask[[0, 3]] = False  # two dead units (rows)
    mask[:, 4] = False  # one dead input (column)
    frame = linear_structure(mask).set_index("unit")
    assert frame.loc["unit", "dead"] == 2 and frame.loc["input", "dead"] == 1
    assert frame.loc["unit", "expected"] == pytest.approx(exact_all_pruned(30, 15, 6), rel=1e-9)
    assert frame.loc["input", "expected"] == pytest.approx(exact_all_pruned(30, 15, 5), rel=1e-9)
    assert layer_structure(mask).equals(linear_structure(mask))


def test_chance_columns_match_monte_carlo():
    rng = np.random.default_rng(0)
    shape, k = (3, 2, 2, 2), 6
    masks = random_masks(rng, shape, k)
    expected = conv_structure(masks[0]).set_index("unit").expected
    for unit, axes in [("filter", (2, 3, 4)), ("channel", (1, 3, 4)), ("kernel", (3, 4))]:
        dead = ~masks.any(axis=axes)
        assert_mean(dead.reshape(DRAWS, -1).mean(axis=1), expected[unit])
    linear = random_masks(rng, (6, 5), 8)
    expected = linear_structure(linear[0]).set_index("unit").expected
    assert_mean((~linear.any(axis=2)).mean(axis=1), expected["unit"])
    assert_mean((~linear.any(axis=1)).mean(axis=1), expected["input"])


def all_masks(shape: tuple[int, ...], k: int) -> np.ndarray:
    """Every mask of ``shape`` keeping exactly ``k`` weights (equally likely by chance)."""
    n = math.prod(shape)
    flat = np.zeros((math.comb(n, k), n), bool)
    for row, kept in zip(flat, combinations(range(n), k), strict=True):
        row[list(kept)] = True
    return flat.reshape(-1, *shape)


@pytest.mark.parametrize("shape, k", [((2, 2, 1, 2), 3), ((3, 2, 1, 1), 2), ((2, 3, 2, 2), 5)])
def test_conv_chance_equals_exact_enumeration(shape, k):
    """Expected fractions and kernel histogram = their average over every possible mask."""
    masks = all_masks(shape, k)
    expected = conv_structure(masks[0]).set_index("unit").expected
    for unit, axes in [("filter", (2, 3, 4)), ("channel", (1, 3, 4)), ("kernel", (3, 4))]:
        dead = ~masks.any(axis=axes)
        assert expected[unit] == pytest.approx(dead.mean(), abs=1e-12)
    size = shape[2] * shape[3]
    alive = masks.reshape(len(masks), -1, size).sum(axis=2)
    exact = [(alive == a).mean() for a in range(size + 1)]
    assert np.allclose(kernel_histogram(masks[0]).expected_fraction, exact, rtol=0, atol=1e-12)


def test_linear_chance_equals_exact_enumeration():
    masks = all_masks((3, 4), 5)
    expected = linear_structure(masks[0]).set_index("unit").expected
    assert expected["unit"] == pytest.approx((~masks.any(axis=2)).mean(), abs=1e-12)
    assert expected["input"] == pytest.approx((~masks.any(axis=1)).mean(), abs=1e-12)


def test_log_chance_matches_scipy_hypergeom():
    """P(all g pruned) = Hypergeometric(N, K, g) pmf at 0, also where it underflows float64."""
    for n, k, g in [(30, 15, 6), (2304, 1000, 9), (10**7, 3 * 10**6, 4608), (2**21, 2**20, 36864)]:
        reference = hypergeom.logpmf(0, n, k, g)
        assert chance.log_prob_all_pruned(n, k, g) == pytest.approx(reference, rel=1e-9)
    log_p = chance.log_prob_all_pruned(10, 6, [4, 5])  # C(6, 6)/C(10, 6); 5 > 10 − 6: impossible
    assert log_p[0] == pytest.approx(-math.log(210), rel=1e-12) and log_p[1] == -math.inf


def test_kernel_histogram_against_hand_counts_and_monte_carlo():
    mask = np.zeros((2, 2, 2, 2), bool)
    mask[0, 0] = True  # 4 alive
    mask[0, 1, 0, 0] = True  # 1 alive
    mask[1, 1, :, 0] = True  # 2 alive; kernel (1, 0) has 0
    hist = kernel_histogram(mask)
    assert hist.kernels.tolist() == [1, 1, 1, 0, 1]
    n, k = 16, 7
    exact = [math.comb(k, a) * math.comb(n - k, 4 - a) / math.comb(n, 4) for a in range(5)]
    assert np.allclose(hist.expected_fraction, exact, rtol=1e-12)
    assert np.allclose(hist.expected, 4 * np.array(exact), rtol=1e-12)
    rng = np.random.default_rng(1)
    masks = random_masks(rng, (3, 2, 3, 3), 20)
    alive = masks.reshape(DRAWS, 6, 9).sum(axis=2)
    chance_pmf = kernel_histogram(masks[0]).expected_fraction
    for a in range(10):
        assert_mean((alive == a).mean(axis=1), chance_pmf[a])


def test_large_layers_are_stable():
    rng = np.random.default_rng(2)
    mask = rng.random((256, 256, 3, 3)) < 0.1
    frame = conv_structure(mask).set_index("unit")
    d = mask.mean()
    assert frame.loc["kernel", "expected"] == pytest.approx((1 - d) ** 9, rel=1e-4)
    n, k, g = 10**7, 3 * 10**6, 4608
    exact_log = np.log1p(-k / (n - np.arange(g))).sum()  # Π (n−k−j)/(n−j), j < g
    assert chance.log_prob_all_pruned(n, k, g) == pytest.approx(exact_log, rel=1e-9)


def test_index_for_impossible_and_underflowing_chance():
    dense = np.ones((2, 3, 3, 3), bool)  # K = N: nothing can be dead, nothing is
    assert conv_structure(dense).structure_index.isna().all()
    structured = np.ones((512, 64, 3, 3), bool)
    structured[:256] = False  # half the filters: chance of one dead filter ≈ 0.5^576
    row = conv_structure(structured).set_index("unit").loc["filter"]
    assert row.expected > 0 and row.structure_index > 1e100
    structured = np.ones((64, 4096, 3, 3), bool)
    structured[:32] = False  # chance ≈ 0.5^36864 underflows float64
    row = conv_structure(structured).set_index("unit").loc["filter"]
    assert row.expected == 0 and row.structure_index == math.inf
    n, g = structured.size, 4096 * 9
    exact_log = np.log1p(-(n // 2) / (n - np.arange(g))).sum()  # Π (n−k−j)/(n−j), j < g
    assert row.log10_expected == pytest.approx(exact_log / math.log(10), rel=1e-9)


def test_structure_rejects_bad_masks():
    with pytest.raises(ConfigError, match="linear_structure"):
        conv_structure(np.ones((3, 4), bool))
    with pytest.raises(ConfigError, match="conv_structure"):
        linear_structure(np.ones((3, 4, 3, 3), bool))
    with pytest.raises(ConfigError, match="dtype float"):
        conv_structure(torch.ones(3, 4, 3, 3))


# --- effective sparsity -----------------------------------------------------------------------
def test_effective_sparsity_of_a_hand_built_chain():
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(4, 3))
    model.add_module("relu1", nn.ReLU())
    model.add_module("fc2", nn.Linear(3, 2))
    fc1, fc2 = torch.ones(3, 4, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)
    fc1[2] = False  # hidden unit 2 gets no input ...
    fc2[:, 1] = False  # ... and hidden unit 1 feeds nothing
    eff = effective_mask({"fc1.weight": fc1, "fc2.weight": fc2}, model)
    assert eff["fc1.weight"].tolist() == [[True] * 4, [False] * 4, [False] * 4]
    assert eff["fc2.weight"].tolist() == [[True, False, False]] * 2
    frame = effective_sparsity({"fc1.weight": fc1, "fc2.weight": fc2}, model).set_index("layer")
    assert frame.loc["all", ["weights", "kept", "effective_kept"]].tolist() == [18, 12, 6]
    assert frame.loc["fc1.weight", "effective_density"] == 4 / 12
    assert frame.loc["fc2.weight", "density"] == 4 / 6


def conv_flatten_fc() -> nn.Sequential:
    """conv1 (2 channels of 4×4) → pool (2×2) → flatten: fc1 inputs 0–3 are channel 0, 4–7 are 1."""
    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(1, 2, 3, padding=1))
    model.add_module("pool1", nn.MaxPool2d(2))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc1", nn.Linear(2 * 4, 3))
    return model


def test_flattened_channel_is_dead_when_its_feature_columns_are():
    model = conv_flatten_fc()
    fc1 = torch.ones(3, 8, dtype=torch.bool)
    fc1[:, :4] = False  # every feature of channel 0
    fc1[:, 5] = False  # one feature of channel 1: the channel still feeds fc1
    conv = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    conv[1, 0, 0] = False  # channel 1 has no dead input: stays
    eff = effective_mask({"conv1.weight": conv, "fc1.weight": fc1}, model)
    assert not eff["conv1.weight"][0].any()
    assert torch.equal(eff["conv1.weight"][1], conv[1])
    assert torch.equal(eff["fc1.weight"], fc1)
    fc_only = effective_mask({"fc1.weight": fc1}, model)  # conv1 unmasked: dense
    assert list(fc_only) == ["fc1.weight"] and torch.equal(fc_only["fc1.weight"], fc1)


def test_dead_filter_disconnects_its_flattened_features():
    conv = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    conv[0] = False  # filter 0 gets no input: its 4 features carry nothing into fc1
    fc1 = torch.ones(3, 8, dtype=torch.bool)
    eff = effective_mask({"conv1.weight": conv, "fc1.weight": fc1}, conv_flatten_fc())
    assert torch.equal(eff["conv1.weight"], conv)
    assert not eff["fc1.weight"][:, :4].any() and eff["fc1.weight"][:, 4:].all()


def iterative_fixpoint(masks: list[np.ndarray], flat_before: list[bool]) -> list[np.ndarray]:
    """Remove kept weights whose input unit has no kept incoming weight or whose output unit
    has no kept outgoing weight, one weight at a time, until nothing changes."""
    masks = [m.copy() for m in masks]
    last = len(masks) - 1

    def width(layer: int) -> int:  # features per unit of layer's output in the next layer
        return masks[layer + 1].shape[1] // masks[layer].shape[0] if flat_before[layer + 1] else 1

    changed = True
    while changed:
        changed = False
        for layer, m in enumerate(masks):
            for o in range(m.shape[0]):
                for i in range(m.shape[1]):
                    if not m[o, i].any():
                        continue
                    fed = layer == 0 or masks[layer - 1][i // width(layer - 1)].any()
                    s = width(layer) if layer < last else 1
                    feeds = layer == last or masks[layer + 1][:, o * s : (o + 1) * s].any()
                    if not (fed and feeds):
                        m[o, i] = False
                        changed = True
    return masks


def small_chain(pool: str) -> nn.Sequential:
    tail = nn.AdaptiveAvgPool2d(1) if pool == "adaptive" else nn.Identity()
    features = 5 if pool == "adaptive" else 5 * 4
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=1), tail, nn.Flatten(), nn.Linear(features, 6), nn.ReLU(),
        nn.Dropout(), nn.Linear(6, 3),
    )  # fmt: skip


@pytest.mark.parametrize(
    "model",
    [small_chain("adaptive"), small_chain("flat"), build("conv2", (1, 8, 8), 10, width=0.125)],
    ids=["adaptive-pool", "flatten", "conv2"],
)
def test_effective_mask_equals_iterative_fixpoint(model):
    names = [n for n, _ in model.named_parameters() if n.endswith("weight") and _.ndim > 1]
    flat_before, seen = [], False
    for module in model:
        if isinstance(module, nn.Flatten):
            seen = True
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            flat_before.append(seen)
            seen = False
    shapes = {n: p.shape for n, p in model.named_parameters()}
    removed = 0
    for seed in range(15):
        gen = torch.Generator().manual_seed(seed)
        density = 0.1 + 0.03 * seed
        mask = {n: torch.rand(shapes[n], generator=gen) < density for n in names}
        eff = effective_mask(mask, model)
        reference = iterative_fixpoint([mask[n].numpy() for n in names], flat_before)
        for name, ref in zip(names, reference, strict=True):
            assert np.array_equal(eff[name].numpy(), ref), (seed, name)
            removed += int(mask[name].sum() - eff[name].sum())
    assert removed > 0  # the random masks did disconnect weights


def test_effective_sparsity_rejects_unsupported_models():
    resnet = build("resnet20", (3, 8, 8), 10, width=0.25)
    with pytest.raises(ConfigError, match="ResNets are not supported"):
        effective_sparsity(full_mask(resnet), resnet)
    odd = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="LayerNorm"):
        effective_sparsity(full_mask(odd), odd)
    broken = nn.Sequential(nn.Linear(4, 3), nn.Linear(5, 2))
    with pytest.raises(ConfigError, match="do not form a chain"):
        effective_sparsity(full_mask(broken), broken)


# --- table over a stored run -------------------------------------------------------------------
@pytest.fixture
def criteria(monkeypatch):
    """Make 'magnitude' a valid criterion even before the pruning module registers it
    (RunConfig validates names against the registry); restored after the test."""
    if "magnitude" not in CRITERIA:
        monkeypatch.setitem(CRITERIA._entries, "magnitude", object())


def test_structure_table_over_a_store(tmp_path, criteria):
    model = build("lenet5", (1, 28, 28), 10)
    cfg = RunConfig.from_dict({"model": {"name": "lenet5"}, "seed": 3, "regime": "reinit_prune"})
    run = create_run(tmp_path / "run", cfg)
    gen = torch.Generator().manual_seed(0)
    masks = {}
    for level in range(2):
        masks[level] = {n: torch.rand(m.shape, generator=gen) < 0.5**level
                        for n, m in full_mask(model).items()}  # fmt: skip
        save_level(run, level, masks[level], model.state_dict(), {"level": level}, [])
    table = structure_table([run], levels=[1])
    assert set(table.level) == {1}
    assert len(table) == 2 * 3 + 3 * 2  # 2 conv layers × 3 units + 3 linear layers × 2 units
    assert (table.run_id == run.run_id).all() and (table.regime == "reinit_prune").all()
    assert (table.seed == 3).all() and (table.model == "lenet5").all()
    got = table.query("layer == 'conv2.weight'").drop(columns=["run_id", "level", "layer"])
    expected = conv_structure(masks[1]["conv2.weight"])
    assert np.allclose(got[expected.columns[1:]].to_numpy(float),
                       expected[expected.columns[1:]].to_numpy(float), equal_nan=True)  # fmt: skip
    assert len(structure_table([run])) == 2 * len(table)
