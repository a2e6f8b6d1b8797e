"""SNIP, GraSP, SynFlow and Pen-Ultimate PCA against hand computations, and inside runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskstudy.data import from_config
from maskstudy.errors import ConfigError
from maskstudy.models import build
from maskstudy.pruning import full_mask, layer_densities, pca_prune, prune, saliency_prune
from maskstudy.pruning.pca import pca_scores
from maskstudy.pruning.saliency import grasp_scores, snip_scores, synflow_scores
from maskstudy.runs.config import (
    DataConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    SaliencyConfig,
    TrainConfig,
)
from maskstudy.runs.presets import PRESETS
from maskstudy.runs.run import run
from maskstudy.runs.scoring import saliency_level, scoring_batch
from maskstudy.seeds import generator


def linear_problem(n: int = 300, dtype=torch.float32):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).to(dtype)
    x, y = torch.randn(n, 4, dtype=dtype), torch.randint(0, 3, (n,))
    return model, x, y


def test_snip_is_abs_gradient_times_weight_by_hand():
    model, x, y = linear_problem()  # 300 examples: two chunks summed
    before = model[0].weight.detach().clone()
    mask = {"0.weight": torch.rand(3, 4, generator=torch.Generator().manual_seed(1)) > 0.3}
    w = model[0].weight.detach() * mask["0.weight"]
    p = torch.softmax(x @ w.T + model[0].bias.detach(), dim=1)
    grad = (p - F.one_hot(y, 3).float()).T @ x / len(x)  # ∂ mean CE / ∂W for a linear model
    got = snip_scores(model, x, y, mask).scores["0.weight"]
    torch.testing.assert_close(got, (grad * w).abs(), rtol=1e-5, atol=1e-7)
    assert torch.equal(model[0].weight, before)  # scored on a masked copy


@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_grasp_matches_explicit_hessian_gradient_product(temperature):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(300, 3, dtype=torch.float64), torch.randint(0, 2, (300,))
    mask = full_mask(model)
    mask["0.weight"][0, 1] = False
    b1, b2 = model[0].bias.detach(), model[2].bias.detach()
    w1 = model[0].weight.detach() * mask["0.weight"]
    w2 = model[2].weight.detach()

    def loss(flat):
        a, b = flat[:12].view(4, 3), flat[12:].view(2, 4)
        return F.cross_entropy((torch.tanh(x @ a.T + b1) @ b.T + b2) / temperature, y)

    flat = torch.cat([w1.reshape(-1), w2.reshape(-1)])
    alive = torch.cat([mask["0.weight"].reshape(-1), mask["2.weight"].reshape(-1)])
    g = torch.autograd.functional.jacobian(loss, flat) * alive
    hg = torch.autograd.functional.hessian(loss, flat) @ g
    expected = flat * hg  # −(GraSP score): lowest first removes GraSP's highest
    got = grasp_scores(model, x, y, mask, temperature=temperature).scores
    torch.testing.assert_close(
        torch.cat([got["0.weight"].reshape(-1), got["2.weight"].reshape(-1)]), expected
    )

    new, _ = saliency_prune(
        model, x, y, mask, "grasp", 0.25, scope="global", temperature=temperature
    )
    removed = torch.cat([(mask[n] & ~new[n]).reshape(-1) for n in mask])
    grasp = torch.where(alive, -expected, -torch.inf)
    assert torch.equal(
        removed,
        torch.zeros_like(removed).index_fill(
            0, grasp.topk(round(0.25 * int(alive.sum()))).indices, True
        ),
    )


def test_grasp_defaults_to_temperature_200_and_refuses_a_bad_one():
    model, x, y = linear_problem(dtype=torch.float64)
    mask = full_mask(model)
    default = grasp_scores(model, x, y, mask).scores["0.weight"]
    assert torch.equal(default, grasp_scores(model, x, y, mask, temperature=200).scores["0.weight"])
    assert not torch.equal(
        default, grasp_scores(model, x, y, mask, temperature=1).scores["0.weight"]
    )
    with pytest.raises(ConfigError, match="temperature = 0"):
        saliency_prune(model, x, y, mask, "grasp", 0.5, temperature=0)


def test_run_level_passes_the_configured_grasp_temperature():
    cfg = small("grasp", **{"prune.saliency.temperature": 3.0})
    data = from_config(cfg.data)
    model = build("lenet300_100", data.input_shape, data.num_classes, width=0.2, seed=0)
    mask = full_mask(model)
    got, _ = saliency_level(cfg, model, data.train, model.state_dict(), mask, {}, 1)
    x, y = scoring_batch(data.train, 128, generator(cfg.seed, "saliency", 1))
    for temperature, same in ((3.0, True), (200.0, False)):
        want, _ = saliency_prune(
            model, x, y, mask, "grasp", 0.5, scope=cfg.prune.scope, temperature=temperature
        )
        assert all(torch.equal(got[n], want[n]) for n in mask) == same


def chain(*dims: int, bias: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(dims, dims[1:], strict=False):
        layers += [nn.Linear(a, b, bias=bias), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def test_synflow_closed_form_on_a_linear_chain_and_model_untouched():
    torch.manual_seed(0)
    model = chain(4, 5, 3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = synflow_scores(model, torch.randn(7, 4), None, full_mask(model)).scores
    a1, a2, a3 = (model[i].weight.detach().abs().double() for i in (0, 2, 4))
    # R = 1ᵀ|W3||W2||W1|1, so ∂R/∂W2_ij = (1ᵀ|W3|)_i (|W1| 1)_j
    expected = a3.sum(0)[:, None] * a1.sum(1)[None, :] * a2
    torch.testing.assert_close(s["2.weight"], expected)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_synflow_is_data_free_and_leaves_batchnorm_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    model(torch.randn(32, 6))  # non-trivial running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mask = full_mask(model)
    one = synflow_scores(model, torch.randn(5, 6), torch.zeros(5), mask).scores
    other = synflow_scores(model, 100 * torch.rand(9, 6), torch.ones(9), mask).scores
    assert all(torch.equal(one[k], other[k]) for k in one)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_synflow_avoids_the_layer_collapse_of_global_magnitude():
    torch.manual_seed(0)
    model = chain(8, 8, 8, 256, 8, 8, 8, 8, 4, bias=True)  # 256→8 has tiny init weights
    mask, amount = full_mask(model), 0.99
    total = sum(m.numel() for m in mask.values())
    weights = {n: p.detach() for n, p in model.named_parameters() if n in mask}
    magnitude = prune(weights, mask, "magnitude", amount, "global")
    synflow, _ = saliency_prune(model, torch.zeros(1, 8), None, mask, "synflow", amount)
    one_shot, _ = saliency_prune(model, torch.zeros(1, 8), None, mask, "synflow", amount, rounds=1)
    assert min(layer_densities(magnitude).values()) == 0.0
    assert min(layer_densities(one_shot).values()) == 0.0  # iterating is what prevents it
    assert min(layer_densities(synflow).values()) > 0.0
    kept = sum(int(m.sum()) for m in synflow.values())
    assert kept == total - round(amount * total)  # 100 sub-rounds end on the level's target


def test_pca_keeps_exactly_the_rank_of_a_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))
    x = torch.randn(400, 3) @ torch.randn(3, 6)  # inputs of rank 3: fc1's outputs have rank 3
    mask, widths = pca_prune(model, x, variance=1 - 1e-6)
    assert widths == {"0.weight": 3}  # the classifier is never narrowed
    assert int(mask["0.weight"].any(1).sum()) == 3
    assert mask["0.weight"].all(1).sum() == 3 and mask["2.weight"].all()


def test_pca_width_and_kept_units_match_numpy():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 2))
    x = torch.randn(500, 5) * torch.tensor([3.0, 1.0, 0.5, 0.2, 0.05])
    out = (x @ model[0].weight.T + model[0].bias).detach().double().numpy()
    lam, vec = np.linalg.eigh(np.corrcoef(out, rowvar=False))
    lam, vec = lam[::-1].clip(0), vec[:, ::-1]
    n = int(np.searchsorted(np.cumsum(lam) / lam.sum(), 0.95) + 1)
    score = (vec[:, :n] ** 2 * lam[:n]).sum(1)
    result = pca_scores(model, x, full_mask(model), variance=0.95)
    layer = result.layers["0.weight"]
    assert layer.width == n
    assert set(np.flatnonzero(layer.keep.numpy())) == set(np.argsort(score)[-n:])
    np.testing.assert_allclose(layer.spectrum.numpy(), lam / lam.sum(), atol=1e-6)
    assert result.metrics()["pca_width"] == {"0.weight": n}


def test_relative_importance_by_hand():
    model = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]))
    x = torch.tensor([[1.0, 2.0, -4.0], [-3.0, 0.0, 2.0]])  # E|x| = (2, 1, 3)
    r = pca_scores(model, x, full_mask(model)).importance["0.weight"]
    contrib = torch.tensor([[2.0, 2.0, 1.5], [0.0, 3.0, 3.0]])
    torch.testing.assert_close(r, contrib / contrib.sum(1, keepdim=True))

    conv = nn.Sequential(nn.Conv2d(1, 2, 2, padding=1, bias=False), nn.Flatten(), nn.Linear(32, 2))
    img = torch.arange(9.0).view(1, 1, 3, 3) - 4
    r = pca_scores(conv, img, full_mask(conv)).importance["0.weight"]
    padded = F.pad(img[0, 0].abs(), (1, 1, 1, 1))  # 5×5; 4×4 output positions
    reads = torch.tensor(
        [[padded[u : u + 4, v : v + 4].mean() for v in range(2)] for u in range(2)]
    )
    contrib = conv[0].weight.detach().abs()[:, 0] * reads
    torch.testing.assert_close(r[:, 0], contrib / contrib.sum((1, 2), keepdim=True))


def small(criterion: str, **changes) -> RunConfig:
    cfg = RunConfig(
        data=DataConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_size=256),
        model=ModelConfig(name="lenet300_100", width=0.2),
        train=TrainConfig(batch_size=32, lr=0.05, duration="6it", eval_every="6it"),
        prune=PruneConfig(criterion=criterion, amount=0.5, saliency=SaliencyConfig(samples=128)),
        levels=1,
    )
    return cfg.replace(changes) if changes else cfg


def test_snip_run_scores_theta0_and_stores_the_exact_density(tmp_path):
    cfg = small("snip", **{"prune.scope": "global"})
    result = run(cfg, tmp_path, progress=False)
    mask = result.mask(1)
    total = sum(m.numel() for m in mask.values())
    assert sum(int(m.sum()) for m in mask.values()) == total - round(0.5 * total)
    assert result.level_metrics(1)["scored_weights"] == "init"
    data = from_config(cfg.data)
    theta0 = build("lenet300_100", data.input_shape, data.num_classes, width=0.2, seed=0)
    x, y = scoring_batch(data.train, 128, generator(cfg.seed, "saliency", 1))
    expected, _ = saliency_prune(theta0, x, y, result.mask(0), "snip", 0.5, scope="global")
    assert all(torch.equal(mask[n], expected[n]) for n in mask)


def test_score_weights_init_prunes_theta0_by_magnitude(tmp_path):
    cfg = small("magnitude", **{"prune.score_weights": "init"})
    result = run(cfg, tmp_path, progress=False)
    theta0 = result.weights(which="init")
    expected = prune({n: theta0[n] for n in result.mask(0)}, result.mask(0), "magnitude", 0.5)
    assert all(torch.equal(result.mask(1)[n], expected[n]) for n in expected)
    assert not any(
        torch.equal(result.mask(1)[n], m)
        for n, m in prune(
            {n: result.weights(0)[n] for n in expected}, result.mask(0), "magnitude", 0.5
        ).items()
        if n != "fc3.weight"
    )


def test_pca_run_narrows_layers_then_prunes_half_of_the_rest(tmp_path):
    result = run(small("pca", regime="finetune"), tmp_path, progress=False)
    mask, metrics = result.mask(1), result.level_metrics(1)
    assert metrics["scored_weights"] == "trained"
    assert set(metrics["pca_width"]) == {"fc1.weight", "fc2.weight"}
    for name, m in mask.items():
        rows = metrics["pca_width"].get(name, m.shape[0])  # output units all kept
        alive = rows * m.shape[1]
        assert int(m.any(1).sum()) <= rows
        assert int(m.sum()) == alive - round(0.5 * alive)
    assert metrics["pca_units"] == {"fc1.weight": 60, "fc2.weight": 20}  # width 0.2
    assert [len(metrics["pca_spectrum"][n]) for n in ("fc1.weight", "fc2.weight")] == [60, 20]


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"prune.score_weights": "final"}, "score_weights = 'final'"),
        ({"prune.criterion": "pca", "prune.saliency.rounds": 5}, "pca.*one shot"),
        ({"prune.saliency.rounds": 5}, "rounds applies to"),
        ({"prune.saliency.variance": 1.5}, "variance = 1.5"),
        ({"prune.saliency.samples": 0}, "samples = 0"),
    ],
)
def test_bad_saliency_config_names_the_field(changes, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig().replace(changes)


def test_prune_refuses_model_scores_it_was_not_given_and_ids_stay():
    with pytest.raises(ConfigError, match="saliency_prune"):
        prune({"a": torch.randn(3, 3)}, None, "snip", 0.5)
    assert RunConfig().run_id() == "lenet300_100-mnist-magnitude-rewind-s0-44136fa355"
    assert PRESETS["lenet300_mnist_synflow"].config.prune.criterion == "synflow"
    assert PRESETS["lenet300_mnist_snip"].config.levels == 1
