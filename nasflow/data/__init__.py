"""Datasets: the offline digits default and real loaders from --data-dir.

* ``load_digits_split`` / ``digits`` / ``digits-events``: scikit-learn's 8x8 digits (REFERENCE §9), offline.
* ``get_dataset(name, data_dir, split, ...)`` → ``(dataset, spec)`` for every registered name
  (``list_datasets()``); ``dataset_spec`` gives the spec without reading files.
* ``split_train_val``: the stratified 8:2 D_train / D_val split of the searches.
* ``stereo-dots`` (generated, ``nasflow.data.stereo``) and ``mvsec`` (``nasflow.data.mvsec``): event stereo,
  samples ``(x [T, 4, H, W], disparity [H, W])``; the matching head is ``nasflow.snn.stereo``.
* ``make_loaders``: seeded train / val / test DataLoaders with optional augmentation
  (``nasflow.data.transforms``).

torchvision and tonic are imported only when a dataset that needs them is loaded.
"""

from nasflow.data.datasets import (
    ImageTensorDataset,
    LabeledSubset,
    dataset_targets,
    split_train_val,
    stratified_indices,
    to_time_first,
)
from nasflow.data.digits import DigitsSplit, digits_dataset, load_digits_split
from nasflow.data.encoding import rate_encode
from nasflow.data.loaders import AugmentedDataset, Loaders, make_loaders, resolve_augmentation
from nasflow.data.registry import DEFAULT_DATA_DIR, DatasetHandle, dataset_spec, get_dataset, list_datasets
from nasflow.data.spec import DatasetNotFoundError, DatasetSpec
from nasflow.data.transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    Compose,
    Cutout,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    standard_augmentation,
)

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DEFAULT_DATA_DIR",
    "AugmentedDataset",
    "Compose",
    "Cutout",
    "DatasetHandle",
    "DatasetNotFoundError",
    "DatasetSpec",
    "DigitsSplit",
    "ImageTensorDataset",
    "LabeledSubset",
    "Loaders",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "dataset_spec",
    "dataset_targets",
    "digits_dataset",
    "get_dataset",
    "list_datasets",
    "load_digits_split",
    "make_loaders",
    "rate_encode",
    "resolve_augmentation",
    "split_train_val",
    "standard_augmentation",
    "stratified_indices",
    "to_time_first",
]
