"""scikit-learn's 8×8 handwritten digits: the embedded dataset that needs no files."""

from __future__ import annotations

from pathlib import Path

from maskstudy.data.base import Split
from maskstudy.data.normalise import standardised_splits

TEST_FRACTION = 0.2  # the fixed stratified split is part of the dataset's definition
SPLIT_SEED = 0


def load_digits(root: Path) -> tuple[Split, Split, int]:
    """1797 1×8×8 digits (values 0..16), split 80/20 stratified by class with a fixed seed.

    ``root`` is unused: the data ship with scikit-learn.
    """
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    digits = datasets.load_digits()
    train_x, test_x, train_y, test_y = train_test_split(
        digits.images[:, None],
        digits.target,
        test_size=TEST_FRACTION,
        stratify=digits.target,
        random_state=SPLIT_SEED,
    )
    return (*standardised_splits(train_x, train_y, test_x, test_y), 10)
