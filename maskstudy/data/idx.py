"""MNIST and Fashion-MNIST from the four standard IDX ``.gz`` files, checked before use.

Every file is found (dataset folder, then torchvision's ``raw/`` folder, then the root itself),
checked against its published md5, and parsed with its IDX header validated, so a damaged or
misplaced file fails with a DataError naming it rather than training on garbage.

Both are done once per file version: the user cache (:mod:`maskstudy.data.cache`) remembers each
verified md5 and keeps the decoded, standardised splits, so later processes skip the md5 and the
decode. Files that change (size, mtime, ctime or inode) are checked and decoded again.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maskstudy.data import cache, normalise
from maskstudy.data.base import Split
from maskstudy.data.normalise import standardised_splits
from maskstudy.errors import DataError

LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
MAGIC_MEANING = {LABELS_MAGIC: "a labels file", IMAGES_MAGIC: "an images file"}

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
IMAGE_SIZE = (28, 28)
NUM_CLASSES = 10


@dataclass(frozen=True)
class IdxDataset:
    """Where an IDX dataset's files may live (relative to the root) and their published md5s."""

    title: str
    folders: tuple[str, ...]  # searched in order, then the root itself
    md5: dict[str, str]  # file name -> md5 of the original distribution's file

    def search_dirs(self, root: Path) -> list[Path]:
        return [root / folder for folder in self.folders] + [root]


MNIST = IdxDataset(
    "MNIST",
    ("mnist", "MNIST/raw"),
    {
        TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
        TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
        TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
    },
)
FASHION_MNIST = IdxDataset(
    "Fashion-MNIST",
    ("fashion-mnist", "FashionMNIST/raw"),
    {
        TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
        TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
        TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
    },
)
KNOWN = (MNIST, FASHION_MNIST)


def _code_digest() -> str | None:
    """sha256 of the source that computes a cached split (this module and normalise.py), read
    as the module loads: a process keeps the key of the code it runs even if the files change."""
    try:
        source = Path(__file__).read_bytes() + Path(normalise.__file__).read_bytes()
    except (OSError, TypeError):  # no source to read: no way to tell a stale entry, no cache
        return None
    return hashlib.sha256(source).hexdigest()


CODE = _code_digest()


def load_mnist(root: Path, *, verify: bool = True) -> tuple[Split, Split, int]:
    """MNIST: 60000 train / 10000 test 1×28×28 digits; ``verify`` checks the published md5s."""
    return load_idx_dataset(MNIST, root, verify)


def load_fashion_mnist(root: Path, *, verify: bool = True) -> tuple[Split, Split, int]:
    """Fashion-MNIST: 60000 train / 10000 test 1×28×28 clothing images, 10 classes."""
    return load_idx_dataset(FASHION_MNIST, root, verify)


def load_idx_dataset(dataset: IdxDataset, root: Path, verify: bool) -> tuple[Split, Split, int]:
    """Find (and with ``verify`` md5-check) all four files first, then parse both splits (or
    load them from the cache, where this version of the four files was parsed before)."""
    paths = {name: find_file(dataset, Path(root), name) for name in FILES}
    if verify:
        for path in paths.values():
            check_md5(dataset, path)
    kind, key = cache_key(dataset, paths)
    arrays = cache.load_arrays(kind, key) if key is not None else None
    if arrays is not None:
        train = Split(torch.from_numpy(arrays["train_x"]), torch.from_numpy(arrays["train_y"]))
        test = Split(torch.from_numpy(arrays["test_x"]), torch.from_numpy(arrays["test_y"]))
        return train, test, NUM_CLASSES
    train_x, train_y = read_pair(paths[TRAIN_IMAGES], paths[TRAIN_LABELS])
    test_x, test_y = read_pair(paths[TEST_IMAGES], paths[TEST_LABELS])
    train, test = standardised_splits(train_x, train_y, test_x, test_y)
    if key is not None and all(cache.settled(f) for f in key["files"]):  # unchanged, not new
        arrays = {"train_x": train.x, "train_y": train.y, "test_x": test.x, "test_y": test.y}
        cache.save_arrays(kind, key, {name: t.numpy() for name, t in arrays.items()})
    return train, test, NUM_CLASSES


def cache_key(dataset: IdxDataset, paths: dict[str, Path]) -> tuple[str, dict | None]:
    """The cache entry of these four files' decoded splits: its kind and key (None: not cached).

    The key holds each file's identity and what computes the floats (:data:`CODE`, the torch and
    numpy versions), so a cached split is byte for byte what parsing and standardising these
    files would give.
    """
    kind = "idx-" + dataset.title.lower()
    if CODE is None:
        return kind, None
    key = {
        "files": [cache.identity(paths[name]) for name in FILES],
        "code": CODE,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    return kind, key


def find_file(dataset: IdxDataset, root: Path, name: str) -> Path:
    """The first ``name`` in the dataset's search folders; DataError listing them if none has it."""
    dirs = dataset.search_dirs(root)
    for folder in dirs:
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{dataset.title} file {name} not found; searched {', '.join(str(d) for d in dirs)}. "
        f"Copy the four standard {dataset.title} files ({', '.join(FILES)}) from the "
        f"{dataset.title} distribution into {dirs[0]}, or point --data DIR or MASKSTUDY_DATA "
        "at the folder that holds them."
    )


def check_md5(dataset: IdxDataset, path: Path) -> None:
    """DataError unless ``path`` is the published file byte for byte (names it if it is known).

    A file version whose md5 was verified before (the user cache remembers it) is not read again.
    """
    want = dataset.md5[path.name]
    version = cache.identity(path)
    if cache.remembered_md5(version) == want:
        return
    got = file_md5(path)
    if got == want:
        cache.remember_md5(version, got)
        return
    known = [f"{d.title}'s {n}" for d in KNOWN for n, m in d.md5.items() if m == got]
    actually = f" (it is {known[0]})" if known else ""
    raise DataError(
        f"{path}: md5 {got} is not the published {want} of {dataset.title}'s {path.name}"
        f"{actually}; the file is damaged or belongs to another dataset. Replace it with the "
        "original file, or pass verify=False to skip the md5 check."
    )


def file_md5(path: Path) -> str:
    """The md5 of a file's bytes, as hex."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) from one split's two files, checked together."""
    labels = read_idx(labels_path, LABELS_MAGIC)
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(
            f"{labels_path}: label {labels.max()} is outside 0..{NUM_CLASSES - 1}; "
            "replace the file with the original"
        )
    images = read_idx(images_path, IMAGES_MAGIC)
    if images.shape[1:] != IMAGE_SIZE:
        raise DataError(
            f"{images_path}: images are {images.shape[1]}×{images.shape[2]}, expected "
            f"{IMAGE_SIZE[0]}×{IMAGE_SIZE[1]}; replace the file with the original"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; the two files do not belong together"
        )
    return images[:, None], labels


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Decompress and parse one IDX ``.gz`` file; DataError naming it if truncated or malformed."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: cannot decompress ({e}); the gzip file is truncated or damaged. "
            "Replace it with the original file."
        ) from e
    return parse_idx(raw, magic, path)


def parse_idx(raw: bytes, magic: int, source: Path | str) -> np.ndarray:
    """Unsigned-byte IDX contents → array, checking magic, header and data size (big-endian)."""
    got = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 or got != magic:
        meaning = MAGIC_MEANING.get(got, "not an IDX unsigned-byte file")
        raise DataError(
            f"{source}: IDX magic number is 0x{got:08x} ({meaning}), expected 0x{magic:08x} "
            f"({MAGIC_MEANING[magic]}); check that the file is the one its name says"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source}: IDX header is cut short ({len(raw)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) - header != math.prod(dims):
        raise DataError(
            f"{source}: {len(raw) - header} data bytes, but its header's dimensions {dims} need "
            f"{math.prod(dims)}; the file is truncated or damaged"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
