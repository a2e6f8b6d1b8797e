"""The user data cache (maskstudy.data.cache): verified md5s remembered per file version, decoded
IDX splits kept as .npy byte for byte, damaged entries rebuilt, an unwritable cache unused."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from maskstudy.data import cache, idx
from maskstudy.data.idx import FILES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, IdxDataset
from maskstudy.errors import DataError

N_TRAIN, N_TEST = 40, 12


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file's contents (big-endian header)."""
    magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_tiny(root: Path, seed: int = 0) -> IdxDataset:
    """Four small IDX .gz files in root/tiny and the dataset whose published md5s they are."""
    rng = np.random.default_rng(seed)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (N_TRAIN, 28, 28)),
        TRAIN_LABELS: rng.integers(0, 10, N_TRAIN),
        idx.TEST_IMAGES: rng.integers(0, 256, (N_TEST, 28, 28)),
        TEST_LABELS: rng.integers(0, 10, N_TEST),
    }
    folder = root / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for name, array in arrays.items():
        content = gzip.compress(idx_bytes(array), mtime=0)
        (folder / name).write_bytes(content)
        md5[name] = hashlib.md5(content).hexdigest()
    return IdxDataset("Tiny", ("tiny",), md5)


def new_mtime(path: Path) -> None:
    """Give ``path`` another mtime (10 s earlier: later would be in the future, not settled),
    as a change after a timestamp tick would."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10 * 10**9))


@pytest.fixture
def cache_root(monkeypatch, tmp_path) -> Path:
    """A fresh cache in tmp_path; files count as settled at once (no 2 s wait)."""
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    monkeypatch.setattr(cache, "SETTLE_NS", 0)
    return root


@pytest.fixture
def md5_calls(monkeypatch) -> list[Path]:
    """Every file idx hashes, in order."""
    calls: list[Path] = []
    real = idx.file_md5

    def counted(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(idx, "file_md5", counted)
    return calls


@pytest.fixture
def decodes(monkeypatch) -> list[Path]:
    """Every split idx decodes from its files (images path of each read_pair)."""
    calls: list[Path] = []
    real = idx.read_pair

    def counted(images: Path, labels: Path):
        calls.append(images)
        return real(images, labels)

    monkeypatch.setattr(idx, "read_pair", counted)
    return calls


def entries(root: Path) -> list[Path]:
    return sorted((root / cache.ARRAYS_DIR).glob("idx-*"))


def assert_same_bytes(a, b) -> None:
    """Two loads' splits are the same tensors bit for bit (dtype, shape, strides, bytes)."""
    for split_a, split_b in ((a[0], b[0]), (a[1], b[1])):
        for x, y in ((split_a.x, split_b.x), (split_a.y, split_b.y)):
            assert x.dtype == y.dtype and x.shape == y.shape and x.stride() == y.stride()
            bits = f"u{x.element_size()}"  # compared as bit patterns: -0.0 is not 0.0
            assert torch.equal(x, y) and np.array_equal(x.numpy().view(bits), y.numpy().view(bits))
    assert a[2] == b[2]


# --- where the cache is --------------------------------------------------------------------------
def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    assert cache.cache_dir() is None
    monkeypatch.delenv(cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "maskstudy"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "maskstudy"


# --- md5 once per file version -------------------------------------------------------------------
def test_md5_is_computed_once_per_file_version(cache_root, tmp_path, md5_calls):
    dataset = write_tiny(tmp_path)
    idx.load_idx_dataset(dataset, tmp_path, verify=True)
    assert len(md5_calls) == 4
    idx.load_idx_dataset(dataset, tmp_path, verify=True)
    assert len(md5_calls) == 4  # all four remembered
    labels = tmp_path / "tiny" / TRAIN_LABELS
    new_mtime(labels)  # a new version of one file (same bytes): that one is hashed again
    idx.load_idx_dataset(dataset, tmp_path, verify=True)
    assert md5_calls[4:] == [labels]
    idx.load_idx_dataset(dataset, tmp_path, verify=True)
    assert len(md5_calls) == 5


def test_changed_file_fails_although_its_old_version_was_verified(cache_root, tmp_path):
    dataset = write_tiny(tmp_path)
    idx.load_idx_dataset(dataset, tmp_path, verify=True)
    labels = tmp_path / "tiny" / TRAIN_LABELS
    content = bytearray(labels.read_bytes())
    content[-9] ^= 0x01  # same size, inside the gzip stream
    labels.write_bytes(bytes(content))
    new_mtime(labels)
    with pytest.raises(DataError, match=f"{TRAIN_LABELS}: md5"):
        idx.load_idx_dataset(dataset, tmp_path, verify=True)


def test_file_changed_just_now_is_not_remembered(monkeypatch, tmp_path, md5_calls, decodes):
    """A file younger than SETTLE_NS could change again unseen within one timestamp tick."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    dataset = write_tiny(tmp_path)
    idx.load_idx_dataset(dataset, tmp_path, verify=True)
    idx.load_idx_dataset(dataset, tmp_path, verify=True)
    assert len(md5_calls) == 8 and len(decodes) == 4
    assert not entries(tmp_path / "cache")


def test_md5_table_records_the_file_identity(cache_root, tmp_path):
    dataset = write_tiny(tmp_path)
    idx.load_idx_dataset(dataset, tmp_path, verify=True)
    table = json.loads((cache_root / cache.MD5_FILE).read_text())["files"]
    path = tmp_path / "tiny" / TRAIN_IMAGES
    assert table[str(path.resolve())] == {
        **cache.identity(path),
        "md5": dataset.md5[TRAIN_IMAGES],
    }


# --- decoded splits ------------------------------------------------------------------------------
def test_cached_splits_are_byte_identical(cache_root, tmp_path, monkeypatch, md5_calls, decodes):
    dataset = write_tiny(tmp_path)
    listing = sorted((tmp_path / "tiny").iterdir())
    with monkeypatch.context() as off:
        off.setenv(cache.CACHE_ENV, "off")
        reference = idx.load_idx_dataset(dataset, tmp_path, verify=True)
    assert not cache_root.exists()
    filled = idx.load_idx_dataset(dataset, tmp_path, verify=True)
    assert len(decodes) == 4 and len(entries(cache_root)) == 1
    cached = idx.load_idx_dataset(dataset, tmp_path, verify=True)
    assert len(decodes) == 4 and len(md5_calls) == 8  # neither hashed nor decoded again
    assert_same_bytes(reference, filled)
    assert_same_bytes(reference, cached)
    assert sorted((tmp_path / "tiny").iterdir()) == listing  # nothing written beside the data


def test_mnist_cached_splits_are_byte_identical(shared_data, cache_root, md5_calls, decodes):
    computed = idx.load_mnist(shared_data)  # fills the cache
    assert len(decodes) == 2 and len(md5_calls) == 4
    cached = idx.load_mnist(shared_data)
    assert len(decodes) == 2 and len(md5_calls) == 4
    assert_same_bytes(computed, cached)
    assert not list(shared_data.glob("**/*.npy")) and not list(shared_data.glob("**/*.json"))


def test_changed_file_is_decoded_again_and_old_entry_dropped(cache_root, tmp_path, decodes):
    dataset = write_tiny(tmp_path)
    idx.load_idx_dataset(dataset, tmp_path, verify=False)
    first = entries(cache_root)
    labels = np.arange(N_TEST) % 10
    (tmp_path / "tiny" / TEST_LABELS).write_bytes(gzip.compress(idx_bytes(labels)))
    new_mtime(tmp_path / "tiny" / TEST_LABELS)
    _, test, _ = idx.load_idx_dataset(dataset, tmp_path, verify=False)
    assert test.y.tolist() == labels.tolist() and len(decodes) == 4
    assert len(entries(cache_root)) == 1 and entries(cache_root) != first


def damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_flip(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[-1] ^= 0x40  # a data byte: dtype and shape still parse, the crc32 does not match
    path.write_bytes(bytes(content))


def damage_pickle(path: Path) -> None:
    """An object array, which only unpickling could read (and which would run code)."""
    np.save(path, np.array([{"x": 1}] * N_TRAIN, dtype=object), allow_pickle=True)


def damage_shape(path: Path) -> None:
    np.save(path, np.zeros(N_TRAIN + 1, dtype=np.int64))


@pytest.mark.parametrize(
    "name, damage",
    [
        ("train_x.npy", damage_truncate),
        ("train_x.npy", damage_flip),
        ("train_y.npy", damage_pickle),
        ("train_y.npy", damage_shape),
        ("test_x.npy", Path.unlink),
        (cache.MANIFEST, damage_truncate),
    ],
    ids=["truncated", "flipped_byte", "pickle", "wrong_shape", "missing", "bad_manifest"],
)
def test_damaged_cache_entry_is_rebuilt(cache_root, tmp_path, decodes, name, damage):
    dataset = write_tiny(tmp_path)
    reference = idx.load_idx_dataset(dataset, tmp_path, verify=True)
    (entry,) = entries(cache_root)
    sizes = {p.name: p.stat().st_size for p in entry.iterdir()}
    damage(entry / name)
    rebuilt = idx.load_idx_dataset(dataset, tmp_path, verify=True)
    assert len(decodes) == 4  # not trusted: decoded again
    assert_same_bytes(reference, rebuilt)
    assert {p.name: p.stat().st_size for p in entry.iterdir()} == sizes  # and rewritten
    assert_same_bytes(reference, idx.load_idx_dataset(dataset, tmp_path, verify=True))
    assert len(decodes) == 4


def test_interrupted_write_leaves_no_partial_file(cache_root, tmp_path, monkeypatch):
    dataset = write_tiny(tmp_path)
    real_save = np.save

    def dies_halfway(file, array, allow_pickle=True):
        file.write(b"\x93NUMPY half")  # some bytes reach the temporary file, then the writer dies
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", dies_halfway)
    reference = idx.load_idx_dataset(dataset, tmp_path, verify=True)  # the load itself succeeds
    monkeypatch.setattr(np, "save", real_save)
    (entry,) = entries(cache_root)
    assert list(entry.iterdir()) == []  # neither a half-written .npy nor a temporary file
    assert_same_bytes(reference, idx.load_idx_dataset(dataset, tmp_path, verify=True))
    assert len(list(entry.iterdir())) == 5


def test_unwritable_cache_is_not_used(monkeypatch, tmp_path, md5_calls, decodes):
    """A cache folder that cannot be made (here under a file: root ignores permission bits)."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))
    monkeypatch.setattr(cache, "SETTLE_NS", 0)
    dataset = write_tiny(tmp_path)
    first = idx.load_idx_dataset(dataset, tmp_path, verify=True)
    second = idx.load_idx_dataset(dataset, tmp_path, verify=True)
    assert len(md5_calls) == 8 and len(decodes) == 4
    assert_same_bytes(first, second)


def test_files_are_all_still_needed(cache_root, tmp_path):
    """The cache does not hide a missing file: every file is found before the cache is read."""
    dataset = write_tiny(tmp_path)
    idx.load_idx_dataset(dataset, tmp_path, verify=True)
    (tmp_path / "tiny" / FILES[0]).unlink()
    with pytest.raises(DataError, match="not found"):
        idx.load_idx_dataset(dataset, tmp_path, verify=True)


def test_other_code_decodes_again(cache_root, tmp_path, monkeypatch, decodes):
    """Entries are keyed by the source of idx.py and normalise.py: edited code never reads the
    floats the old code computed."""
    dataset = write_tiny(tmp_path)
    idx.load_idx_dataset(dataset, tmp_path, verify=False)
    monkeypatch.setattr(idx, "CODE", "0" * 64)
    idx.load_idx_dataset(dataset, tmp_path, verify=False)
    assert len(decodes) == 4
    monkeypatch.setattr(idx, "CODE", None)  # source unreadable: no cache at all
    idx.load_idx_dataset(dataset, tmp_path, verify=False)
    assert len(decodes) == 6
