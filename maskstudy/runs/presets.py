"""Named configurations reproducing the papers' setups (see shared docs: papers.md §2, §1.4)."""

from __future__ import annotations

from dataclasses import dataclass

from maskstudy.errors import ConfigError
from maskstudy.runs.config import DataConfig, ModelConfig, PruneConfig, RunConfig, TrainConfig


@dataclass(frozen=True)
class Preset:
    config: RunConfig
    source: str  # where the hyperparameters come from


def _lth_conv(model: str, lr: float, iterations: str, conv_rate: float, convs: int) -> RunConfig:
    """Frankle & Carbin's Conv-2/4/6 on CIFAR-10: Adam, batch 60, layer-wise, conv/fc/output rates."""
    return RunConfig(
        data=DataConfig(name="cifar10", val_size=5000),
        model=ModelConfig(name=model, init="glorot_normal"),
        train=TrainConfig(
            optimizer="adam", lr=lr, batch_size=60, duration=iterations, eval_every="1ep"
        ),
        prune=PruneConfig(
            amount=0.2,
            layer_amounts={
                **{f"conv{i}.weight": conv_rate for i in range(1, convs + 1)},
                "output": 0.1,
            },
        ),
        regime="rewind",
        levels=20,
    )


def _cifar_rewind(model: str, batch: int, rewind_to: str) -> RunConfig:
    """Late rewinding on CIFAR-10 (Frankle et al. LMC): SGD 0.1, 160 epochs, global 20 %."""
    return RunConfig(
        data=DataConfig(name="cifar10", augment=True),
        model=ModelConfig(name=model, init="kaiming_normal"),
        train=TrainConfig(
            optimizer="sgd",
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-4,
            batch_size=batch,
            duration="160ep",
            schedule="step",
            milestones=("80ep", "120ep"),
            gamma=0.1,
        ),
        prune=PruneConfig(amount=0.2, scope="global", exclude=("output",)),
        regime="rewind",
        rewind_to=rewind_to,
        levels=20,
    )


PRESETS: dict[str, Preset] = {
    "lenet300_mnist_lth": Preset(
        RunConfig(
            data=DataConfig(name="mnist", val_size=5000),
            model=ModelConfig(name="lenet300_100", init="glorot_normal"),
            train=TrainConfig(
                optimizer="adam", lr=1.2e-3, batch_size=60, duration="50000it", eval_every="1ep"
            ),
            prune=PruneConfig(amount=0.2, layer_amounts={"output": 0.1}),
            regime="rewind",
            levels=20,
        ),
        "Frankle & Carbin 2019, Fig. 2: Adam 1.2e-3, batch 60, 50K iterations, 20 % per level "
        "(output layer 10 %), layer-wise, Glorot init, 5K validation examples",
    ),
    "lenet5_mnist": Preset(
        RunConfig(
            data=DataConfig(name="mnist", val_size=5000),
            model=ModelConfig(name="lenet5", init="kaiming_normal"),
            train=TrainConfig(optimizer="adam", lr=1e-3, batch_size=60, duration="20ep"),
            prune=PruneConfig(amount=0.2, layer_amounts={"output": 0.1}),
            regime="rewind",
            levels=20,
        ),
        "Paganini & Forde-style LeNet-5 grid point (papers.md §1.4.1): 20 % of remaining per level, "
        "output 10 %, Adam 1e-3, 20 epochs",
    ),
    "conv2_cifar10_lth": Preset(
        _lth_conv("conv2", 2e-4, "20000it", 0.1, 2),
        "Frankle & Carbin 2019, Fig. 2: Adam 2e-4, batch 60, 20K it, conv 10 % / fc 20 % / output 10 %",
    ),
    "conv4_cifar10_lth": Preset(
        _lth_conv("conv4", 3e-4, "25000it", 0.1, 4),
        "Frankle & Carbin 2019, Fig. 2: Adam 3e-4, batch 60, 25K it, conv 10 % / fc 20 % / output 10 %",
    ),
    "conv6_cifar10_lth": Preset(
        _lth_conv("conv6", 3e-4, "30000it", 0.15, 6),
        "Frankle & Carbin 2019, Fig. 2: Adam 3e-4, batch 60, 30K it, conv 15 % / fc 20 % / output 10 %",
    ),
    "resnet20_cifar10_rewind": Preset(
        _cifar_rewind("resnet20", 128, "500it"),
        "Frankle et al. 2020 (LMC), ResNet-20 standard: SGD 0.1 mom 0.9 wd 1e-4, batch 128, 160 ep, "
        "×0.1 at 80/120 ep, global 20 % per level (fc not pruned), rewind to iteration 500",
    ),
    "vgg19_cifar10_rewind": Preset(
        _cifar_rewind("vgg19", 64, "1000it"),
        "Frankle & Carbin 2019 / Liu et al. VGG-19: SGD 0.1 mom 0.9 wd 1e-4, batch 64, 160 ep, "
        "×0.1 at 80/120 ep, global 20 % (output not pruned); late rewind to iteration 1000",
    ),
    "lenet300_digits": Preset(
        RunConfig(
            data=DataConfig(name="digits"),
            model=ModelConfig(name="lenet300_100", init="glorot_normal"),
            train=TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, duration="15ep"),
            prune=PruneConfig(amount=0.3, layer_amounts={"output": 0.15}),
            regime="rewind",
            levels=6,
        ),
        "Embedded default (scikit-learn digits, no files needed): LTH recipe scaled down",
    ),
}


def get_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].config
