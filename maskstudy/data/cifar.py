"""CIFAR-10 / CIFAR-100 from the standard python-version batches, unpickled safely.

The batch files are pickles; a pickle can run any code when loaded. They are read with an
unpickler that rebuilds numpy arrays and nothing else, refusing every other global.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from maskstudy.data.base import Split
from maskstudy.data.normalise import standardised_splits
from maskstudy.errors import DataError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
IMAGE_SHAPE = (3, 32, 32)
SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html"

_reconstruct = np.ndarray.__reduce__(np.zeros(0))[
    0
]  # numpy's array rebuilder, in any numpy version
SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy < 2 (the original files)
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy >= 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds numpy arrays: any other global raises DataError."""

    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return SAFE_GLOBALS[(module, name)]
        raise DataError(
            f"refusing to unpickle {module}.{name} from {self.source}: a CIFAR batch holds only "
            f"numpy arrays and lists, so this file is not a genuine one. Replace it with the "
            f"original from {SOURCE}."
        )


def load_cifar10(root: Path) -> tuple[Split, Split, int]:
    """CIFAR-10: 50000 train / 10000 test 3×32×32 images in 10 classes."""
    folder = Path(root) / CIFAR10_DIR
    train = [read_batch(folder, name, b"labels", 10) for name in CIFAR10_TRAIN]
    test = read_batch(folder, "test_batch", b"labels", 10)
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return (*standardised_splits(train_x, train_y, *test), 10)


def load_cifar100(root: Path) -> tuple[Split, Split, int]:
    """CIFAR-100: 50000 train / 10000 test 3×32×32 images in 100 (fine-label) classes."""
    folder = Path(root) / CIFAR100_DIR
    train = read_batch(folder, "train", b"fine_labels", 100)
    test = read_batch(folder, "test", b"fine_labels", 100)
    return (*standardised_splits(*train, *test), 100)


def read_batch(
    folder: Path, name: str, label_key: bytes, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) from one batch file, contents checked."""
    path = folder / name
    if not path.is_file():
        raise DataError(
            f"CIFAR file {name} not found in {folder}. Download the python version from {SOURCE} "
            f"and extract it into {folder.parent}, or point --data DIR or MASKSTUDY_DATA at the "
            f"folder that holds {folder.name}/."
        )
    batch = unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: expected a dict with b'data' and {label_key!r}, found {keys}")
    data, labels = batch[b"data"], np.asarray(batch[label_key])
    width = math.prod(IMAGE_SHAPE)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (width,):
        found = (
            f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        )
        raise DataError(f"{path}: b'data' must be uint8 of shape (N, {width}), found {found}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(
            f"{path}: {label_key!r} must be {len(data)} integer labels, found {labels.dtype} "
            f"{labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in 0..{num_classes - 1}")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def unpickle(path: Path) -> Any:
    """Load one batch with :class:`ArrayUnpickler`; a damaged file becomes a DataError naming it."""
    with open(path, "rb") as f:
        try:
            return ArrayUnpickler(f, path).load()
        except DataError:
            raise
        except Exception as e:  # a damaged pickle can fail in many ways
            raise DataError(
                f"{path}: cannot unpickle ({type(e).__name__}: {e}); the file is damaged. "
                f"Replace it with the original from {SOURCE}."
            ) from e
