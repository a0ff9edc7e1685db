"""Small dataset classes shared by every loader, labels of any dataset, and the stratified D_train/D_val split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

__all__ = [
    "ImageTensorDataset",
    "LabeledSubset",
    "dataset_targets",
    "split_train_val",
    "stratified_indices",
    "to_time_first",
]


class ImageTensorDataset(Dataset):
    """Samples held in one tensor ``[N, ...]`` with integer labels.

    ``uint8`` images are scaled to ``[0, 1]`` on access (so a 50,000-image CIFAR set stays 150 MB); float
    images are returned as float32. With ``mean``/``std`` the channel dimension (``-3``) is normalised.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor | Sequence[int] | np.ndarray,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        targets = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
        if images.shape[0] != targets.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {targets.shape[0]} labels")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.images = images
        self.targets = targets
        self._mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = None if std is None else torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if self._mean is not None and self._std is not None:
            x = (x - self._mean) / self._std
        return x, int(self.targets[index])


class LabeledSubset(Subset):
    """``torch.utils.data.Subset`` that also exposes the subset's labels as ``targets``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        super().__init__(dataset, list(indices))
        self.targets = torch.as_tensor(dataset_targets(dataset)[np.asarray(self.indices, dtype=np.int64)])


def dataset_targets(dataset: Dataset) -> np.ndarray:
    """Labels of every sample of ``dataset`` as an int64 array, without loading the samples when possible.

    Understands ``targets`` (nasflow, torchvision, tonic datasets), ``labels`` (torchvision SVHN), ``Subset`` and
    ``TensorDataset``; anything else is iterated once.
    """
    for attr in ("targets", "labels"):
        values = getattr(dataset, attr, None)
        if values is not None:
            return np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, dtype=np.int64)
    if isinstance(dataset, Subset):
        return dataset_targets(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].cpu().numpy().astype(np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)  # type: ignore[arg-type]


def stratified_indices(targets: np.ndarray, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices class by class: ``round(ratio * n_c)`` of each class's ``n_c`` samples go first.

    Classes are shuffled with ``numpy.random.default_rng(seed)``; each part is returned sorted.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must lie strictly between 0 and 1, got {ratio}")
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        members = members[rng.permutation(len(members))]
        cut = int(round(ratio * len(members)))
        first.append(members[:cut])
        second.append(members[cut:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def split_train_val(dataset: Dataset, ratio: float = 0.8, seed: int = 0) -> tuple[LabeledSubset, LabeledSubset]:
    """Stratified split of a training set into D_train (``ratio`` of every class) and D_val (the rest).

    The searches of AutoSNN and SNASNet train on D_train and rank candidates on D_val (8:2, REFERENCE §9).
    The split depends only on the labels and ``seed``; the two parts are disjoint and cover the dataset.
    """
    train_idx, val_idx = stratified_indices(dataset_targets(dataset), ratio, seed)
    return LabeledSubset(dataset, train_idx.tolist()), LabeledSubset(dataset, val_idx.tolist())


def to_time_first(x: torch.Tensor) -> torch.Tensor:
    """``[B, T, ...]`` (how a DataLoader stacks event samples) to the models' time-first ``[T, B, ...]``."""
    if x.dim() < 2:
        raise ValueError(f"expected a batch [B, T, ...], got shape {tuple(x.shape)}")
    return x.transpose(0, 1).contiguous()
