"""DataLoaders with reproducible shuffling and augmentation."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, get_worker_info

from nasflow.data.datasets import dataset_targets, split_train_val
from nasflow.data.registry import get_dataset
from nasflow.data.spec import DatasetSpec
from nasflow.data.transforms import Transform, standard_augmentation

__all__ = ["AugmentedDataset", "Loaders", "first_samples", "make_loaders", "resolve_augmentation"]

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: derives independent seeds from one


def _derive(seed: int, stream: int) -> int:
    return (seed * _MIX + stream) % (2**63)


class AugmentedDataset(Dataset):
    """Apply ``transform(x, generator)`` to the samples of ``dataset``, with a generator of its own.

    In the main process the generator is seeded with ``seed`` and runs on across epochs; in DataLoader
    workers ``make_loaders`` reseeds it from the worker's torch seed (different per worker and per epoch,
    derived from the loader's seeded generator), so a run is reproducible for any ``num_workers``.
    """

    def __init__(self, dataset: Dataset, transform: Transform, seed: int = 0) -> None:
        self.dataset = dataset
        self.transform = transform
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def targets(self) -> np.ndarray:
        return dataset_targets(self.dataset)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = self.dataset[index]
        return self.transform(x, self.generator), y

    # torch.Generator does not pickle; workers started with "spawn" receive its state instead.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["generator"] = self.generator.get_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        generator = torch.Generator()
        generator.set_state(state["generator"])
        self.__dict__.update({**state, "generator": generator})


def _seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed numpy, ``random`` and the augmentation generator from the worker's torch seed."""
    seed = torch.initial_seed()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, AugmentedDataset):
        info.dataset.generator.manual_seed(_derive(seed, 1))


def resolve_augmentation(augment: bool | str | Transform | None, spec: DatasetSpec) -> Transform | None:
    """``False``/``None``/``"none"``: no augmentation; ``True``/``"standard"``: random crop (+ flip where the
    label allows it); ``"cutout"``: the same plus cutout (AutoSNN's final training); a callable
    ``t(x, generator)`` is used as given (see ``nasflow.data.transforms``)."""
    if augment is None or augment is False or augment == "none":
        return None
    if spec.kind == "stereo":
        raise ValueError(
            f"dataset {spec.name!r} is stereo: a crop or flip of the input would have to move the disparity map "
            f"and swap the cameras too, which no augmentation here does; use augment=False (--augment none), "
            f"got {augment!r}"
        )
    if augment is True or augment == "standard":
        return standard_augmentation(spec)
    if augment == "cutout":
        return standard_augmentation(spec, cutout=True)
    if isinstance(augment, str):
        raise ValueError(f"augment must be a bool, 'none', 'standard', 'cutout' or a transform, got {augment!r}")
    return augment


class Loaders(NamedTuple):
    """The loaders of one dataset; ``val`` is ``None`` unless ``val_split`` was given."""

    train: DataLoader
    val: DataLoader | None
    test: DataLoader
    spec: DatasetSpec


def make_loaders(
    name: str,
    batch_size: int,
    data_dir: str | Path | None = None,
    seed: int = 0,
    augment: bool | str | Transform | None = False,
    num_workers: int = 0,
    val_split: float | None = None,
    *,
    eval_batch_size: int | None = None,
    T: int | None = None,
    size: int | tuple[int, int] | None = None,
    split_by: Literal["number", "time"] = "number",
    binarize: bool = False,
    encoding_seed: int = 0,
    drop_last: bool = False,
) -> Loaders:
    """Train, optional validation, and test DataLoaders of a registered dataset.

    ``val_split`` is the fraction of the training set held out for validation (``0.2`` gives the 8:2
    D_train / D_val split of the searches): a stratified split seeded with ``seed``. The train loader shuffles
    with a ``torch.Generator`` seeded with ``seed`` and augments (training part only) with a generator derived
    from it; val and test loaders keep the dataset order. Every loader has its own generator, so iterating never
    consumes torch's global RNG, and the same arguments give the same batches. The test split never depends on
    ``seed`` (digits: always REFERENCE §9's seed-0 split). ``T``/``size``/``split_by``/``binarize``/
    ``encoding_seed`` are passed to ``get_dataset``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    options: dict[str, Any] = dict(T=T, size=size, split_by=split_by, binarize=binarize, encoding_seed=encoding_seed)
    train_set, spec = get_dataset(name, data_dir, "train", **options)
    test_set, _ = get_dataset(name, data_dir, "test", **options)
    val_set: Dataset | None = None
    if val_split is not None:
        if not 0.0 < val_split < 1.0:
            raise ValueError(f"val_split is the held-out fraction and must lie in (0, 1), got {val_split}")
        train_set, val_set = split_train_val(train_set, ratio=1.0 - val_split, seed=seed)
    transform = resolve_augmentation(augment, spec)
    if transform is not None:
        train_set = AugmentedDataset(train_set, transform, seed=_derive(seed, 2))

    def loader(dataset: Dataset, shuffle: bool, stream: int, bs: int, drop: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=bs,
            shuffle=shuffle,
            num_workers=num_workers,
            drop_last=drop,
            generator=torch.Generator().manual_seed(_derive(seed, stream)),
            worker_init_fn=_seed_worker if num_workers > 0 else None,
        )

    eval_bs = eval_batch_size or batch_size
    return Loaders(
        train=loader(train_set, True, 3, batch_size, drop_last),
        val=None if val_set is None else loader(val_set, False, 4, eval_bs, False),
        test=loader(test_set, False, 5, eval_bs, False),
        spec=spec,
    )


def first_samples(loader: DataLoader, n: int, shuffle: bool, seed: int) -> DataLoader:
    """``loader`` over its first ``n`` samples, with its own seeded generator (so the run stays resumable)."""
    subset = Subset(loader.dataset, range(min(n, len(loader.dataset))))
    return DataLoader(subset, batch_size=loader.batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed))
