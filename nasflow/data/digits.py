"""The offline default dataset (REFERENCE §9): scikit-learn's 8x8 digits, static and as rate-coded events.

No download: ``sklearn.datasets.load_digits`` ships the 1,797 images inside scikit-learn.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

from nasflow.data.datasets import ImageTensorDataset
from nasflow.data.encoding import rate_encode

__all__ = ["DIGITS_TEST_SIZE", "DigitsSplit", "digits_dataset", "load_digits_split"]

DIGITS_TEST_SIZE = 0.2
"""Fraction of the 1,797 digits held out as the test set (stratified, seed 0: 1,437 train / 360 test)."""


class DigitsSplit(NamedTuple):
    """Train and test parts of the digits: images ``[N, 1, 8, 8]`` float32 in ``[0, 1]``, labels int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@lru_cache(maxsize=4)
def _digits_arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All images ``[1797, 1, 8, 8]`` in ``[0, 1]``, labels, and the train/test indices (read-only arrays)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=seed
    )
    arrays = (images, labels, np.sort(train_idx), np.sort(test_idx))
    for a in arrays:
        a.flags.writeable = False
    return arrays


def load_digits_split(seed: int = 0) -> DigitsSplit:
    """scikit-learn ``load_digits`` as tensors, pixel/16 in ``[0, 1]``, stratified 80/20 train/test split.

    ``seed`` is the ``random_state`` of the split. REFERENCE §9 fixes it to 0, and every nasflow loader
    (``get_dataset``, ``make_loaders``) uses 0 whatever the training seed, so that the test set is the same for
    every run; other values exist for studies of split variance only. Returns fresh tensors on every call.
    """
    images, labels, train_idx, test_idx = _digits_arrays(seed)
    return DigitsSplit(
        torch.from_numpy(images[train_idx].copy()),
        torch.from_numpy(labels[train_idx].copy()),
        torch.from_numpy(images[test_idx].copy()),
        torch.from_numpy(labels[test_idx].copy()),
    )


def digits_dataset(train: bool = True, events: bool = False, T: int = 8, encoding_seed: int = 0) -> ImageTensorDataset:
    """The digits train or test set as a Dataset, static (``[1, 8, 8]``) or rate-coded (``[T, 1, 8, 8]``).

    Event samples are fixed spike trains, not redrawn per epoch: all 1,797 images are encoded once with a
    ``torch.Generator`` seeded with ``encoding_seed`` (in ``load_digits`` order, so a sample's spikes do not depend
    on the split), then the split's samples are taken. Values are 0/1 and a pixel's mean rate is its intensity.
    """
    images, labels, train_idx, test_idx = _digits_arrays(0)
    idx = train_idx if train else test_idx
    x = torch.from_numpy(images.copy())
    if events:
        generator = torch.Generator().manual_seed(encoding_seed)
        spikes = rate_encode(x, T, generator=generator, time_dim=1).to(torch.bool)  # [1797, T, 1, 8, 8]
        data = spikes[torch.as_tensor(idx.copy())]
    else:
        data = x[torch.as_tensor(idx.copy())].clone()
    return ImageTensorDataset(data, labels[idx])
