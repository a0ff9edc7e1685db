"""Static image datasets read with torchvision from ``--data-dir`` (never downloaded).

torchvision 0.18 verifies the MD5 of every CIFAR/SVHN file on construction and otherwise raises a bare
"Dataset not found or corrupted". nasflow checks the layout itself first (and raises ``DatasetNotFoundError``
naming the missing file and what to download), then skips the MD5 pass: a truncated file still fails, when it is
unpickled, with an error naming it.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, pil_loader

from nasflow.data.datasets import ImageTensorDataset
from nasflow.data.spec import DatasetNotFoundError, DatasetSpec

__all__ = ["ImageFileDataset", "load_cifar", "load_svhn", "load_tiny_imagenet"]


class _NoMD5:
    """CIFAR without torchvision's MD5 checks (of the batches and of the metadata file)."""

    root: str
    base_folder: str
    meta: dict[str, str]

    def _check_integrity(self) -> bool:
        return True  # layout checked by nasflow; see module docstring

    def _load_meta(self) -> None:
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _CIFAR10(_NoMD5, torchvision.datasets.CIFAR10):
    pass


class _CIFAR100(_NoMD5, torchvision.datasets.CIFAR100):
    pass


class _SVHN(torchvision.datasets.SVHN):
    def _check_integrity(self) -> bool:
        return True


def require_files(spec: DatasetSpec, data_dir: Path, layout: str, paths: list[Path], note: str = "") -> None:
    """Raise ``DatasetNotFoundError`` for the first missing path (its folder, if the folder is missing)."""
    for path in paths:
        if not path.exists():
            missing = path
            while not missing.parent.exists() and missing.parent != data_dir and missing.parent != missing:
                missing = missing.parent
            raise DatasetNotFoundError(spec.name, missing, spec.url, layout, data_dir, note)


def _corrupt(spec: DatasetSpec, path: Path, error: Exception) -> RuntimeError:
    return RuntimeError(f"dataset {spec.name!r}: cannot read {path} ({error}); download it again from {spec.url}")


def load_cifar(spec: DatasetSpec, data_dir: Path, train: bool, layout: str) -> ImageTensorDataset:
    """CIFAR-10 / CIFAR-100 (python pickle batches) as ``[3, 32, 32]`` tensors."""
    cls = _CIFAR10 if spec.name == "cifar10" else _CIFAR100
    folder = data_dir / cls.base_folder
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    require_files(spec, data_dir, layout, [folder] + [folder / n for n in names])
    try:
        ds = cls(str(data_dir), train=train, download=False)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
        raise _corrupt(spec, folder, error) from error
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return ImageTensorDataset(images, ds.targets, spec.mean, spec.std)


def load_svhn(spec: DatasetSpec, data_dir: Path, train: bool, layout: str) -> ImageTensorDataset:
    """SVHN cropped digits (``train_32x32.mat`` / ``test_32x32.mat``; label 10 becomes 0) as ``[3, 32, 32]``."""
    split = "train" if train else "test"
    root = data_dir / spec.folder
    path = root / _SVHN.split_list[split][1]
    require_files(spec, data_dir, layout, [root, path])
    try:
        ds = _SVHN(str(root), split=split, download=False)
    except (ValueError, KeyError, OSError) as error:
        raise _corrupt(spec, path, error) from error
    return ImageTensorDataset(torch.from_numpy(np.ascontiguousarray(ds.data)), ds.labels, spec.mean, spec.std)


class ImageFileDataset(Dataset):
    """Images read from files on access (RGB), as float ``[3, H, W]`` tensors, optionally normalised."""

    def __init__(
        self, samples: list[tuple[str, int]], mean: tuple[float, ...] | None, std: tuple[float, ...] | None
    ) -> None:
        self.samples = samples
        self.targets = torch.tensor([label for _, label in samples], dtype=torch.int64)
        self._mean = None if mean is None else torch.tensor(mean).view(-1, 1, 1)
        self._std = None if std is None else torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = np.asarray(pil_loader(path), dtype=np.uint8)
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(255.0)
        if self._mean is not None and self._std is not None:
            x = (x - self._mean) / self._std
        return x, label


def load_tiny_imagenet(spec: DatasetSpec, data_dir: Path, train: bool, layout: str) -> ImageFileDataset:
    """Tiny-ImageNet-200: ``train/`` through torchvision's ImageFolder, ``val/`` (the test split) labelled by
    ``val/val_annotations.txt``; class indices are the sorted WordNet ids of ``train/`` in both."""
    root = data_dir / spec.folder
    annotations = root / "val" / "val_annotations.txt"
    require_files(spec, data_dir, layout, [root, root / "train", root / "val" / "images", annotations])
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if len(classes) != spec.num_classes:
        raise DatasetNotFoundError(
            spec.name, root / "train", spec.url, layout, data_dir,
            f"found {len(classes)} class folders in {root / 'train'}, expected {spec.num_classes}",
        )
    if train:
        folder = torchvision.datasets.ImageFolder(str(root / "train"))
        if folder.classes != classes:
            raise RuntimeError(f"dataset {spec.name!r}: class folders of {root / 'train'} changed while reading")
        return ImageFileDataset(list(folder.samples), spec.mean, spec.std)
    class_to_idx = {c: i for i, c in enumerate(classes)}
    samples: list[tuple[str, int]] = []
    for line_no, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in class_to_idx:
            raise RuntimeError(f"{annotations}:{line_no}: expected '<file>\\t<wnid>\\t...' with a known wnid")
        image = root / "val" / "images" / fields[0]
        if not image.exists() or not image.name.lower().endswith(IMG_EXTENSIONS):
            raise DatasetNotFoundError(spec.name, image, spec.url, layout, data_dir, f"listed in {annotations}")
        samples.append((str(image), class_to_idx[fields[1]]))
    return ImageFileDataset(samples, spec.mean, spec.std)
