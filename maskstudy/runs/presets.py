"""Named configurations reproducing the papers' setups (docs/methods.md names each method and source)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from maskstudy.errors import ConfigError, did_you_mean
from maskstudy.runs.config import (
    AttackConfig,
    DataConfig,
    DropConfig,
    GradualConfig,
    ModelConfig,
    PruneConfig,
    RunConfig,
    TrainConfig,
)


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


def _lenet300_mnist(prune: PruneConfig, regime: str = "rewind") -> RunConfig:
    """Frankle & Carbin's LeNet-300-100 recipe with one pruning level by ``prune`` (one shot)."""
    return RunConfig(
        data=DataConfig(name="mnist", val_size=5000),
        model=ModelConfig(name="lenet300_100", init="glorot_normal"),
        train=TrainConfig(
            optimizer="adam", lr=1.2e-3, batch_size=60, duration="50000it", eval_every="1ep"
        ),
        prune=prune,
        regime=regime,
        levels=1,
    )


_AT_INIT = (
    "one shot at initialization: level 1 scores θ0 (score_weights auto = init) "
    "on 1024 training examples, prunes 98 % of all weights globally (SNIP's LeNet-300-100 "
    "sparsity) and trains the mask from θ0; level 0 is the dense reference. LTH recipe (Adam "
    "1.2e-3, batch 60, 50K it, Glorot) so the masks compare with lenet300_mnist_lth. Set levels "
    "and amount for the iterative variant"
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
        "Paganini & Forde-style LeNet-5 grid point: 20 % of remaining per level, "
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
    "lenet5_mnist_drop": Preset(
        RunConfig(
            data=DataConfig(name="mnist", val_size=5000),
            model=ModelConfig(name="lenet5_caffe"),
            train=TrainConfig(
                lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=64, duration="10ep"
            ),
            prune=PruneConfig(
                criterion="drop", amount=0.3, scope="global", drop=DropConfig(away=0.8, target=0.07)
            ),
            regime="finetune",
            levels=20,
        ),
        "Drop Pruning (Jia et al. 2018): prune-retrain from the dense LeNet-5 "
        "(Han et al.'s Caffe variant, the net of the 12× / 14.3× comparison); candidates = lowest "
        "|w| 30 % of the alive weights (global), drop-away 0.8, drop-back set so the density flows "
        "to 7 % (14.3×, §3.4): 7.2 % at level 20. Probabilities are not from the paper. SGD 0.01 "
        "mom 0.9 wd 5e-4, batch 64 (Caffe's LeNet solver), 10 epochs per level",
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
    "lenet300_mnist_snip": Preset(
        _lenet300_mnist(PruneConfig(criterion="snip", amount=0.98, scope="global")),
        f"SNIP (Lee et al. 2019), {_AT_INIT}",
    ),
    "lenet300_mnist_grasp": Preset(
        _lenet300_mnist(PruneConfig(criterion="grasp", amount=0.98, scope="global")),
        f"GraSP (Wang et al. 2020), {_AT_INIT}",
    ),
    "lenet300_mnist_synflow": Preset(
        _lenet300_mnist(PruneConfig(criterion="synflow", amount=0.98, scope="global")),
        f"SynFlow (Tanaka et al. 2020), data-free, 100 sub-rounds on an exponential schedule, "
        f"{_AT_INIT}",
    ),
    "lenet300_mnist_pca": Preset(
        _lenet300_mnist(PruneConfig(criterion="pca", amount=0.5), regime="finetune"),
        "Pen-Ultimate (Riera et al. 2019), one shot on the trained dense net: "
        "PCA widths at 99 % explained variance on 1024 training examples (output units kept), "
        "then 50 % of the remaining connections per layer by relative importance (our choice: "
        "the paper's threshold is not known), retrained once from the trained weights",
    ),
    "vgg16_cifar10_rethinking": Preset(
        dataclasses.replace(_cifar_rewind("vgg16", 64, "0it"), regime="finetune", levels=13),
        "Liu et al. 2019 (Rethinking) CIFAR: the prune-fine-tune pipeline (SGD 0.1 mom 0.9 wd "
        "1e-4, batch 64, 160 ep, ×0.1 at 80/120 ep; unstructured magnitude, one global threshold "
        "over the convs, classifier kept, 20 % per level to 5.5 % left; fine-tuning continues at "
        "the final LR 0.001). Its scratch baselines are branches: `maskstudy branch RUN --kind "
        "scratch_e|scratch_b` (Scratch-B: int(160 · FLOPs ratio) epochs). VGG-16-BN, pooled head",
    ),
    "lenet300_mnist_scratch": Preset(
        RunConfig(
            data=DataConfig(name="mnist", val_size=5000),
            model=ModelConfig(name="lenet300_100"),
            train=TrainConfig(
                lr=0.05,
                momentum=0.9,
                weight_decay=1e-4,
                batch_size=64,
                duration="6ep",
                schedule="step",
                milestones=("3ep", "4.5ep"),
            ),
            prune=PruneConfig(amount=0.5, scope="global"),
            regime="finetune",
            levels=3,
        ),
        "Rethinking's prune-fine-tune pipeline at CPU size on MNIST: SGD 0.05 mom 0.9 wd 1e-4, "
        "batch 64, 6 ep, ×0.1 at 50 % / 75 %, global magnitude 50 % per level, fine-tuning at "
        "the final LR 5e-4; its scratch_e / scratch_b branches train its masks from a fresh init "
        "(Scratch-B stretches epochs and milestones by the FLOPs ratio, 2^level here)",
    ),
    "lenet5_mnist_campfire": Preset(
        RunConfig(
            data=DataConfig(name="mnist", val_size=5000),
            model=ModelConfig(name="lenet5", init="kaiming_normal"),
            train=TrainConfig(optimizer="adam", lr=1e-3, batch_size=60, duration="20ep"),
            prune=PruneConfig(
                criterion="kernel",
                exclude=("output",),
                schedule="gradual",
                gradual=GradualConfig(start="1ep", end="7ep", every="100it", target=0.3),
            ),
            attack=AttackConfig(eps=tuple(e / 255 for e in (1, 2, 4, 8))),
            levels=0,
        ),
        "Campfire at CPU size (Gamboa et al. 2020): one 20-epoch Adam run; whole 5×5 kernels "
        "pruned on the cubic AGP ramp every 100 it from epoch 1 to 7 down to 30 % density (70 % "
        "sparsity; fc layers by magnitude, output dense), then frozen; FGSM and PGD-10 (step "
        "eps/4) at eps = 1, 2, 4, 8 /255 on the test set",
    ),
    "conv4_cifar10_campfire": Preset(
        RunConfig(
            data=DataConfig(name="cifar10", val_size=5000),
            model=ModelConfig(name="conv4", init="glorot_normal"),
            train=TrainConfig(optimizer="adam", lr=3e-4, batch_size=60, duration="25000it"),
            prune=PruneConfig(
                criterion="kernel",
                exclude=("output",),
                schedule="gradual",
                gradual=GradualConfig(start="0it", end="8000it", every="250it", target=0.3),
            ),
            attack=AttackConfig(eps=tuple(e / 255 for e in (1, 2, 4, 8))),
            levels=0,
        ),
        "Campfire on Frankle & Carbin's Conv-4 recipe (Adam 3e-4, batch 60, 25K it): 3×3 kernels "
        "pruned on the cubic AGP ramp every 250 it over the first third of training to 30 % "
        "density, then frozen; FGSM and PGD-10 at eps = 1, 2, 4, 8 /255",
    ),
}


def get_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}{did_you_mean(name, PRESETS)}; "
            f"presets: {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[name].config
