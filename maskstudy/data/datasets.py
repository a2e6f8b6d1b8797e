"""The dataset registry: every dataset by name, as a loader of normalised CPU splits.

A loader is ``(root: Path, **options) -> (train, test, num_classes)``; ``maskstudy.data.load``
adds the validation hold-out, the device and augmentation.
"""

from __future__ import annotations

from collections.abc import Callable

from maskstudy.data.base import Split
from maskstudy.data.cifar import load_cifar10, load_cifar100
from maskstudy.data.digits import load_digits
from maskstudy.data.idx import load_fashion_mnist, load_mnist
from maskstudy.data.synthetic import load_synthetic
from maskstudy.registry import Registry

Loader = Callable[..., tuple[Split, Split, int]]

DATASETS: Registry[Loader] = Registry("dataset")
DATASETS.register("mnist")(load_mnist)
DATASETS.register("fashion_mnist")(load_fashion_mnist)
DATASETS.register("cifar10")(load_cifar10)
DATASETS.register("cifar100")(load_cifar100)
DATASETS.register("digits")(load_digits)
DATASETS.register("synthetic")(load_synthetic)
