"""Loaders: real MNIST / Fashion-MNIST, bad files, safe CIFAR unpickling, digits, synthetic."""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import datasets as sk_datasets

from maskstudy.data import DATASETS, default_root, from_config, load
from maskstudy.data.base import Data
from maskstudy.data.idx import (
    FILES,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    MNIST,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    find_file,
    read_pair,
)
from maskstudy.errors import ConfigError, DataError
from maskstudy.runs.config import DataConfig

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@functools.cache
def real(name: str, root: Path) -> Data:
    """Each real dataset is loaded once for the whole module."""
    return load(name, root)


def channel_moments(x: torch.Tensor) -> tuple[float, float]:
    return x.double().mean().item(), x.double().std().item()


# --- MNIST / Fashion-MNIST, real files ---------------------------------------------------------
def test_mnist_real_files(shared_data):
    data = real("mnist", shared_data)
    assert data.name == "mnist" and data.num_classes == 10 and data.val is None
    assert data.train.x.shape == (60000, 1, 28, 28) and data.test.x.shape == (10000, 1, 28, 28)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert torch.bincount(data.train.y).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(data.test.y).tolist() == MNIST_TEST_COUNTS
    assert data.train.y[:5].tolist() == [5, 0, 4, 1, 9]
    assert data.test.y[:5].tolist() == [7, 2, 1, 0, 4]
    mean, std = channel_moments(data.train.x)
    assert mean == pytest.approx(0, abs=1e-5) and std == pytest.approx(1, abs=1e-4)
    # Published pixel statistics (pixel/255): train mean 0.130660 std 0.308108, test mean 0.132515.
    assert data.train.x.min().item() == pytest.approx(-0.130660 / 0.308108, abs=1e-4)
    test_mean, test_std = channel_moments(data.test.x)
    assert test_mean == pytest.approx((0.132515 - 0.130660) / 0.308108, abs=1e-4)
    assert test_std == pytest.approx(0.310480 / 0.308108, abs=1e-4)


def test_fashion_mnist_real_files(shared_data):
    data = real("fashion_mnist", shared_data)
    assert data.train.x.shape == (60000, 1, 28, 28) and data.test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.train.y).tolist() == [6000] * 10
    assert torch.bincount(data.test.y).tolist() == [1000] * 10
    assert data.train.y[:5].tolist() == [9, 0, 0, 3, 0]
    assert data.test.y[:5].tolist() == [9, 2, 1, 1, 6]
    mean, std = channel_moments(data.train.x)
    assert mean == pytest.approx(0, abs=1e-5) and std == pytest.approx(1, abs=1e-4)
    assert data.train.x.min().item() == pytest.approx(-0.286041 / 0.353024, abs=1e-4)
    test_mean, _ = channel_moments(data.test.x)
    assert test_mean == pytest.approx((0.286849 - 0.286041) / 0.353024, abs=1e-4)


def test_torchvision_layout_is_found(shared_data, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        (raw / name).symlink_to(shared_data / "mnist" / name)
    loaded = load("mnist", tmp_path)
    reference = real("mnist", shared_data)
    assert torch.equal(loaded.train.x, reference.train.x)
    assert torch.equal(loaded.test.y, reference.test.y)


def test_search_order_dataset_folder_then_torchvision_then_root(tmp_path):
    places = [tmp_path / "mnist", tmp_path / "MNIST" / "raw", tmp_path]
    for folder in places:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TRAIN_LABELS).touch()
    for expected in places:
        assert find_file(MNIST, tmp_path, TRAIN_LABELS) == expected / TRAIN_LABELS
        (expected / TRAIN_LABELS).unlink()


# --- MNIST, bad files ----------------------------------------------------------------------
def linked_mnist(shared_data: Path, tmp_path: Path, *, leave_out: str) -> Path:
    """tmp_path/mnist with links to the real files, except ``leave_out`` (for the test to write)."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in FILES:
        if name != leave_out:
            (folder / name).symlink_to(shared_data / "mnist" / name)
    return folder


def test_flipped_byte_fails_md5(shared_data, tmp_path):
    folder = linked_mnist(shared_data, tmp_path, leave_out=TRAIN_LABELS)
    content = bytearray((shared_data / "mnist" / TRAIN_LABELS).read_bytes())
    content[len(content) // 2] ^= 0xFF
    (folder / TRAIN_LABELS).write_bytes(bytes(content))
    with pytest.raises(DataError, match="md5") as err:
        load("mnist", tmp_path)
    assert str(folder / TRAIN_LABELS) in str(err.value)
    assert "d53e105ee54ea40749a09fcbcd1e9432" in str(err.value)  # the published md5


def test_truncated_gzip_fails_without_md5_check(shared_data, tmp_path):
    folder = linked_mnist(shared_data, tmp_path, leave_out=TRAIN_LABELS)
    content = (shared_data / "mnist" / TRAIN_LABELS).read_bytes()
    (folder / TRAIN_LABELS).write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match="cannot decompress") as err:
        load("mnist", tmp_path, verify=False)
    assert str(folder / TRAIN_LABELS) in str(err.value)


def test_wrong_magic_fails_without_md5_check(shared_data, tmp_path):
    folder = linked_mnist(shared_data, tmp_path, leave_out=TRAIN_LABELS)
    raw = bytearray(gzip.decompress((shared_data / "mnist" / TRAIN_LABELS).read_bytes()))
    raw[:4] = IMAGES_MAGIC.to_bytes(4, "big")
    (folder / TRAIN_LABELS).write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="magic number is 0x00000803") as err:
        load("mnist", tmp_path, verify=False)
    assert str(folder / TRAIN_LABELS) in str(err.value)


def test_missing_file_lists_searched_folders(shared_data, tmp_path):
    linked_mnist(shared_data, tmp_path, leave_out=TEST_LABELS)
    with pytest.raises(DataError, match=TEST_LABELS) as err:
        load("mnist", tmp_path)
    for folder in (tmp_path / "mnist", tmp_path / "MNIST" / "raw", tmp_path):
        assert str(folder) in str(err.value)
    assert "MASKSTUDY_DATA" in str(err.value)


def test_other_datasets_file_is_named(shared_data, tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in FILES:
        (folder / name).symlink_to(shared_data / "mnist" / name)
    with pytest.raises(DataError, match=f"it is MNIST's {TRAIN_IMAGES}") as err:
        load("fashion_mnist", tmp_path)
    assert str(folder / TRAIN_IMAGES) in str(err.value)


def write_idx(path: Path, magic: int, array: np.ndarray) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    return path


def test_small_idx_pair_parses_exactly(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    x, y = read_pair(
        write_idx(tmp_path / "i.gz", IMAGES_MAGIC, images),
        write_idx(tmp_path / "l.gz", LABELS_MAGIC, np.array([7, 0, 9])),
    )
    assert x.shape == (3, 1, 28, 28) and np.array_equal(x[:, 0], images)
    assert y.tolist() == [7, 0, 9]


@pytest.mark.parametrize(
    ("images", "labels", "culprit", "message"),
    [
        (np.zeros((3, 27, 28)), np.zeros(3), "i.gz", "images are 27×28"),
        (np.zeros((3, 28, 28)), np.zeros(2), "i.gz", "3 images but .* 2 labels"),
        (np.zeros((2, 28, 28)), np.array([1, 10]), "l.gz", "label 10 is outside"),
    ],
)
def test_bad_idx_shapes_are_named(tmp_path, images, labels, culprit, message):
    images_path = write_idx(tmp_path / "i.gz", IMAGES_MAGIC, images)
    labels_path = write_idx(tmp_path / "l.gz", LABELS_MAGIC, labels)
    with pytest.raises(DataError, match=message) as err:
        read_pair(images_path, labels_path)
    assert str(tmp_path / culprit) in str(err.value)


def test_idx_size_not_matching_header_is_named(tmp_path):
    path = tmp_path / "l.gz"
    path.write_bytes(
        gzip.compress(LABELS_MAGIC.to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\0")
    )
    images_path = write_idx(tmp_path / "i.gz", IMAGES_MAGIC, np.zeros((5, 28, 28)))
    with pytest.raises(DataError, match=r"1 data bytes, but its header's dimensions \(5,\)"):
        read_pair(images_path, path)


# --- CIFAR -------------------------------------------------------------------------------------
class Python2Pickler(pickle._Pickler):
    """Writes bytes with Python 2 ``str`` opcodes, as the original (Python 2) CIFAR batches do."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_batch(path: Path, batch: dict) -> None:
    """A batch in the original files' format: protocol 2, Python 2 strings, numpy<2 module names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        Python2Pickler(f, protocol=2).dump(batch)
    content = path.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in content and b"_codecs" not in content
    path.write_bytes(content)


def images(rng: np.random.Generator, n: int) -> np.ndarray:
    """n CIFAR rows (N, 3072); channel c is shifted by 60·c so the per-channel statistics differ."""
    x = rng.integers(0, 120, (n, 3, 1024)) + 60 * np.arange(3)[:, None]
    return x.reshape(n, 3072).astype(np.uint8)


@pytest.fixture
def cifar10(tmp_path):
    """Five 8-image train batches and a 10-image test batch; returns (root, rows, labels)."""
    rng = np.random.default_rng(0)
    rows = {"train": images(rng, 40), "test": images(rng, 10)}
    labels = {"train": rng.integers(0, 10, 40).tolist(), "test": rng.integers(0, 10, 10).tolist()}
    folder = tmp_path / "cifar-10-batches-py"
    for i in range(5):
        part = slice(8 * i, 8 * (i + 1))
        batch = {b"batch_label": b"training batch", b"labels": labels["train"][part]}
        write_batch(folder / f"data_batch_{i + 1}", {**batch, b"data": rows["train"][part]})
    write_batch(folder / "test_batch", {b"labels": labels["test"], b"data": rows["test"]})
    return tmp_path, rows, labels


def expected_inputs(rows: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    """Independent reference: CHW images standardised with the training set's channel moments."""
    train = train_rows.reshape(-1, 3, 32, 32).astype(np.float64)
    mean, std = train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))
    return (rows.reshape(-1, 3, 32, 32) - mean[:, None, None]) / std[:, None, None]


def test_cifar10_fixture_loads(cifar10):
    root, rows, labels = cifar10
    data = load("cifar10", root)
    assert data.num_classes == 10 and data.input_shape == (3, 32, 32)
    assert data.train.y.tolist() == labels["train"] and data.test.y.tolist() == labels["test"]
    for split, x in (("train", data.train.x), ("test", data.test.x)):
        reference = expected_inputs(rows[split], rows["train"])
        np.testing.assert_allclose(x.numpy(), reference, atol=1e-5)


def test_cifar_batch_repickled_by_python3_and_numpy2_loads(cifar10):
    root, rows, labels = cifar10
    path = root / "cifar-10-batches-py" / "data_batch_1"
    batch = {b"data": rows["train"][:8], b"labels": labels["train"][:8]}
    path.write_bytes(pickle.dumps(batch, protocol=4))
    assert b"numpy._core.multiarray" in path.read_bytes()
    data = load("cifar10", root)
    assert data.train.y.tolist() == labels["train"]


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    fine = {"train": rng.integers(0, 100, 30), "test": rng.integers(0, 100, 6)}
    for split, n in (("train", 30), ("test", 6)):
        batch = {b"data": images(rng, n), b"fine_labels": fine[split].tolist()}
        batch[b"coarse_labels"] = (fine[split] // 5).tolist()
        write_batch(tmp_path / "cifar-100-python" / split, batch)
    data = load("cifar100", tmp_path)
    assert data.num_classes == 100 and data.train.x.shape == (30, 3, 32, 32)
    assert data.train.y.tolist() == fine["train"].tolist()
    assert data.test.y.tolist() == fine["test"].tolist()


class RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_and_not_run(cifar10):
    root, _, _ = cifar10
    marker = root / "pwned"
    path = root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(pickle.dumps({b"data": RunsShell(f"touch {marker}"), b"labels": []}))
    with pytest.raises(DataError, match=r"refusing to unpickle \w+\.system") as err:
        load("cifar10", root)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_cifar_missing_file_names_file_and_folder(cifar10):
    root, _, _ = cifar10
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch") as err:
        load("cifar10", root)
    assert str(root / "cifar-10-batches-py") in str(err.value)


def test_cifar_damaged_files_are_named(cifar10):
    root, rows, _ = cifar10
    path = root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="cannot unpickle") as err:
        load("cifar10", root)
    assert str(path) in str(err.value)
    write_batch(path, {b"data": rows["train"][:8, :1000], b"labels": [0] * 8})
    with pytest.raises(DataError, match=r"shape \(N, 3072\), found uint8 \(8, 1000\)"):
        load("cifar10", root)


# --- digits and synthetic ----------------------------------------------------------------------
def test_digits_is_a_fixed_stratified_split_of_sklearn_digits():
    data = load("digits")
    assert data.train.x.shape == (1437, 1, 8, 8) and data.test.x.shape == (360, 1, 8, 8)
    assert data.num_classes == 10
    counts = np.bincount(sk_datasets.load_digits().target)
    assert np.abs(torch.bincount(data.test.y).numpy() - 0.2 * counts).max() < 1
    # Undo the (affine) standardisation: pixels 0..16 → the split is a partition of sklearn's set.
    x = torch.cat([data.train.x, data.test.x]).double()
    scale = 16 / (data.train.x.max() - data.train.x.min()).item()
    pixels = (x - data.train.x.min().item()) * scale
    assert torch.allclose(pixels, pixels.round(), atol=1e-4)
    ours = sorted(
        (label, *row)
        for label, row in zip(
            torch.cat([data.train.y, data.test.y]).tolist(),
            pixels.round().flatten(1).int().tolist(),
            strict=True,
        )
    )
    digits = sk_datasets.load_digits()
    theirs = sorted(
        (label, *row)
        for label, row in zip(digits.target.tolist(), digits.data.astype(int).tolist(), strict=True)
    )
    assert ours == theirs
    again = load("digits")
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.test.y, data.test.y)


def test_synthetic_shapes_and_balance():
    data = load("synthetic")
    assert data.train.x.shape == (2048, 1, 8, 8) and data.test.x.shape == (512, 1, 8, 8)
    assert torch.bincount(data.train.y).tolist() == [205] * 8 + [204] * 2
    small = load("synthetic", shape=(3, 4, 5), classes=3, size=300)
    assert small.train.x.shape == (300, 3, 4, 5) and small.test.x.shape == (75, 3, 4, 5)
    assert small.num_classes == 3 and set(small.test.y.tolist()) == {0, 1, 2}
    assert load("synthetic", shape=(16,)).input_shape == (16,)


def test_synthetic_is_deterministic_and_seeded():
    a, b = load("synthetic"), load("synthetic")
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    other = load("synthetic", data_seed=1)
    assert not torch.equal(a.train.x, other.train.x)


@pytest.mark.parametrize("shape", [(1, 8, 8), (16,)])
def test_synthetic_is_learnable(shape):
    """A nearest-class-mean classifier fit on train is far above the 10 % chance on test."""
    data = load("synthetic", shape=shape)
    x = data.train.x.flatten(1)
    means = torch.stack([x[data.train.y == c].mean(0) for c in range(10)])
    predicted = torch.cdist(data.test.x.flatten(1), means).argmin(1)
    assert (predicted == data.test.y).float().mean() > 0.9


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shape": (0, 8)}, "shape = \\(0, 8\\)"),
        ({"classes": 1}, "classes = 1"),
        ({"size": 3}, "size = 3"),
        ({"separation": -1.0}, "separation = -1.0"),
    ],
)
def test_synthetic_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        load("synthetic", **options)


# --- load(): validation split, options, config, root ---------------------------------------
def test_val_split_is_a_disjoint_hold_out_of_train():
    full = load("synthetic")
    data = load("synthetic", val_size=200, seed=3)
    assert len(data.train) == 1848 and len(data.val) == 200 and len(data.test) == 512
    joined = torch.cat([data.train.x, data.val.x]).flatten(1)
    assert len(torch.unique(joined, dim=0)) == 2048  # disjoint
    assert torch.equal(torch.unique(joined, dim=0), torch.unique(full.train.x.flatten(1), dim=0))
    assert torch.equal(data.test.x, full.test.x)
    same, other = load("synthetic", val_size=200, seed=3), load("synthetic", val_size=200, seed=4)
    assert torch.equal(same.val.x, data.val.x) and not torch.equal(other.val.x, data.val.x)


@pytest.mark.parametrize("val_size", [2048, -5, 2.5])
def test_bad_val_size(val_size):
    with pytest.raises(ConfigError, match="val_size"):
        load("synthetic", val_size=val_size)


def test_unknown_dataset_lists_valid_names():
    names = ["cifar10", "cifar100", "digits", "fashion_mnist", "mnist", "synthetic"]
    assert DATASETS.names() == names
    with pytest.raises(ConfigError, match="imagenet") as err:
        load("imagenet")
    assert all(name in str(err.value) for name in names)


def test_unknown_option_lists_accepted_ones(tmp_path):
    with pytest.raises(ConfigError, match="no option shape; its options: verify"):
        load("mnist", tmp_path, shape=(1, 28, 28))
    with pytest.raises(ConfigError, match="no option verify; its options: none"):
        load("digits", verify=False)


def test_augment_needs_images():
    assert load("digits", augment=True).augment
    with pytest.raises(ConfigError, match="augment"):
        load("synthetic", shape=(16,), augment=True)


def test_from_config_maps_fields():
    cfg = DataConfig(
        name="synthetic",
        val_size=40,
        augment=True,
        synthetic_shape=(2, 4, 4),
        synthetic_classes=3,
        synthetic_size=400,
    )
    data = from_config(cfg)
    direct = load("synthetic", val_size=40, augment=True, shape=(2, 4, 4), classes=3, size=400)
    assert data.num_classes == 3 and data.augment and data.input_shape == (2, 4, 4)
    assert torch.equal(data.train.x, direct.train.x) and torch.equal(data.val.y, direct.val.y)


def test_default_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MASKSTUDY_DATA", raising=False)
    assert default_root() == Path("data")
    monkeypatch.setenv("MASKSTUDY_DATA", str(tmp_path))
    assert default_root() == tmp_path
    with pytest.raises(DataError) as err:
        load("mnist")
    assert str(tmp_path / "mnist") in str(err.value)
