"""Models: the papers' weight counts, seeded determinism, initialiser statistics, bad input."""

import math

import pytest
import torch

from maskstudy.errors import ConfigError
from maskstudy.masks import prunable_names
from maskstudy.models import MODELS, build, prunable_weight_count

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)


@pytest.mark.parametrize(
    ("name", "shape", "count"),
    [
        ("lenet300_100", MNIST, 266_200),  # Frankle & Carbin Table 1
        ("lenet5", MNIST, 61_470),  # 150 + 2400 + 48000 + 10080 + 840
        ("lenet5_caffe", MNIST, 430_500),  # Han et al.: 500 + 25000 + 400000 + 5000
        ("conv2", CIFAR, 4_300_992),  # F&C: 4.3M
        ("conv4", CIFAR, 2_425_024),  # F&C: 2.4M
        ("resnet20", CIFAR, 270_896),  # LMC: 272K
        ("vgg19", CIFAR, 20_024_000),  # LMC: 20.0M
    ],
)
def test_prunable_weight_counts_match_the_papers(name, shape, count):
    assert prunable_weight_count(build(name, shape, 10)) == count


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_runs_and_names_its_classifier(name):
    shape = MNIST if name.startswith("lenet") else CIFAR
    model = build(name, shape, 7, width=0.25 if not name.startswith("lenet") else 1.0)
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    assert model.output_layer in prunable_names(model)
    assert dict(model.named_parameters())[model.output_layer].shape[0] == 7


def test_same_seed_same_weights_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = build("lenet5", MNIST, 10, seed=3).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    b = build("lenet5", MNIST, 10, seed=3).state_dict()
    c = build("lenet5", MNIST, 10, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


@pytest.mark.parametrize(
    ("init", "std"),
    [
        ("kaiming_normal", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
        ("glorot_normal", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))),
        (
            "glorot_uniform",
            lambda fan_in, fan_out: math.sqrt(6 / (fan_in + fan_out)) / math.sqrt(3),
        ),
    ],
)
def test_initialisers_have_the_published_scale(init, std):
    w = build("lenet300_100", MNIST, 10, init=init).state_dict()["fc1.weight"]
    fan_out, fan_in = w.shape
    assert w.std().item() == pytest.approx(std(fan_in, fan_out), rel=0.02)
    assert build("lenet300_100", MNIST, 10, init=init).state_dict()["fc1.bias"].abs().sum() == 0


def test_width_scales_channels():
    model = build("resnet20", CIFAR, 10, width=0.5)
    assert model.conv.weight.shape[0] == 8 and model.fc.weight.shape == (10, 32)


def test_bad_input_names_the_fix():
    with pytest.raises(ConfigError, match="valid models: .*resnet20"):
        build("resnet21", CIFAR, 10)
    with pytest.raises(ConfigError, match="needs image inputs"):
        build("conv2", (64,), 10)
    with pytest.raises(ConfigError, match="at least"):
        build("vgg19", (3, 8, 8), 10)
    with pytest.raises(ConfigError, match="valid inits"):
        build("lenet5", MNIST, 10, init="orthogonal")
