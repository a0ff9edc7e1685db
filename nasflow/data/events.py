"""Neuromorphic (event camera) datasets read with tonic from ``--data-dir`` and binned into T frames.

tonic 1.7's dataset classes download whenever their check fails, and the check also wants the downloaded
archive next to the extracted files. The subclasses here keep tonic's folder names and file readers but never
download: nasflow checks the extracted layout itself and raises ``DatasetNotFoundError`` with instructions.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tonic
import tonic.transforms as tt
import torch
from torch.utils.data import Dataset

from nasflow.data.spec import DatasetNotFoundError, DatasetSpec
from nasflow.data.vision import require_files

__all__ = ["EventFrameDataset", "load_cifar10_dvs", "load_dvs_gesture", "load_nmnist"]

CIFAR10_DVS_TRAIN_FRACTION = 0.9
"""CIFAR10-DVS has no official split: the first 90% of each class (900 of 1,000, files in sorted order) train,
the rest test, as AutoSNN (9,000 / 1,000) and SpikingJelly's ``split_to_train_test_set`` do."""


class _Offline:
    """Mixin: the layout was checked by nasflow, and nothing is ever downloaded."""

    def _check_exists(self) -> bool:
        return True

    def download(self) -> None:
        raise RuntimeError(f"nasflow never downloads datasets ({type(self).__name__})")


# Class names must stay tonic's: tonic stores every dataset under <save_to>/<class name>/.
class DVSGesture(_Offline, tonic.datasets.DVSGesture):
    """tonic's DVSGesture (preprocessed ``.npy`` version) without download."""


class NMNIST(_Offline, tonic.datasets.NMNIST):
    """tonic's NMNIST without download."""


class CIFAR10DVS(_Offline, tonic.datasets.CIFAR10DVS):
    """tonic's CIFAR10DVS (``.aedat4`` files) without download."""


class EventFrameDataset(Dataset):
    """Events of a tonic dataset binned into frames: float32 ``[T, 2, H, W]`` (event counts, or 0/1).

    Frames are made by tonic (``Downsample`` to ``size`` when it differs from the sensor, then ``ToFrame``
    with ``T`` bins of equal event count (``split_by="number"``, SpikingJelly's choice) or equal duration).
    """

    def __init__(
        self,
        base: Any,
        indices: list[int] | None,
        T: int,
        size: tuple[int, int],
        split_by: Literal["number", "time"] = "number",
        binarize: bool = False,
    ) -> None:
        self.base = base
        # tonic lists files in os.walk order, which differs between file systems: sort by path for reproducibility
        self.indices = sorted(range(len(base)), key=lambda i: str(base.data[i])) if indices is None else list(indices)
        self.targets = torch.tensor([int(base.targets[i]) for i in self.indices], dtype=torch.int64)
        w_in, h_in, polarities = base.sensor_size
        h, w = size
        steps: list[Any] = []
        if (h, w) != (h_in, w_in):
            steps.append(tt.Downsample(sensor_size=(w_in, h_in, polarities), target_size=(w, h)))
        if split_by == "number":
            steps.append(tt.ToFrame(sensor_size=(w, h, polarities), n_event_bins=T))
        elif split_by == "time":
            steps.append(tt.ToFrame(sensor_size=(w, h, polarities), n_time_bins=T))
        else:
            raise ValueError(f"split_by must be 'number' or 'time', got {split_by!r}")
        self.to_frames = tt.Compose(steps)
        self.T = T
        self.size = (h, w)
        self.binarize = binarize

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        events, label = self.base[self.indices[index]]
        frames = np.asarray(self.to_frames(events), dtype=np.float32)
        if frames.shape[0] != self.T:  # too few events for T bins: pad with empty frames
            padded = np.zeros((self.T, *frames.shape[1:]), dtype=np.float32)
            padded[: min(self.T, frames.shape[0])] = frames[: self.T]
            frames = padded
        x = torch.from_numpy(frames)
        if self.binarize:
            x.clamp_(max=1.0)
        return x, int(label)


def _require_class_files(spec: DatasetSpec, data_dir: Path, layout: str, folder: Path, suffix: str) -> None:
    require_files(spec, data_dir, layout, [folder])
    for _, _, files in os.walk(folder):
        if any(f.endswith(suffix) for f in files):
            return
    note = f"{folder} has no {suffix} files"
    raise DatasetNotFoundError(spec.name, folder / f"*/*{suffix}", spec.url, layout, data_dir, note)


def _tonic_frames(
    spec: DatasetSpec, data_dir: Path, train: bool, layout: str, split_by: Literal["number", "time"], binarize: bool,
    tonic_cls: type, split_folder: str, suffix: str,
) -> EventFrameDataset:
    """Check the class folders of one split exist, then read them with ``tonic_cls`` as T frames."""
    _require_class_files(spec, data_dir, layout, data_dir / spec.folder / split_folder, suffix)
    assert spec.T is not None
    base = tonic_cls(str(data_dir), train=train)
    return EventFrameDataset(base, None, spec.T, spec.image_shape[1:], split_by, binarize)


def load_dvs_gesture(
    spec: DatasetSpec, data_dir: Path, train: bool, layout: str, split_by: Literal["number", "time"], binarize: bool
) -> EventFrameDataset:
    """DVS128 Gesture (tonic's preprocessed ``ibmGestureTrain`` / ``ibmGestureTest`` folders of ``.npy``)."""
    split = "ibmGestureTrain" if train else "ibmGestureTest"
    return _tonic_frames(spec, data_dir, train, layout, split_by, binarize, DVSGesture, split, ".npy")


def load_nmnist(
    spec: DatasetSpec, data_dir: Path, train: bool, layout: str, split_by: Literal["number", "time"], binarize: bool
) -> EventFrameDataset:
    """N-MNIST (``Train`` / ``Test`` folders with one sub-folder of ``.bin`` files per digit)."""
    split = "Train" if train else "Test"
    return _tonic_frames(spec, data_dir, train, layout, split_by, binarize, NMNIST, split, ".bin")


def load_cifar10_dvs(
    spec: DatasetSpec, data_dir: Path, train: bool, layout: str, split_by: Literal["number", "time"], binarize: bool
) -> EventFrameDataset:
    """CIFAR10-DVS (one folder of ``.aedat4`` files per class), split 9:1 per class (see
    ``CIFAR10_DVS_TRAIN_FRACTION``)."""
    root = data_dir / spec.folder
    require_files(spec, data_dir, layout, [root] + [root / c for c in tonic.datasets.CIFAR10DVS.classes])
    _require_class_files(spec, data_dir, layout, root, ".aedat4")
    if importlib.util.find_spec("aedat") is None:
        raise ModuleNotFoundError(
            "dataset 'cifar10-dvs': tonic reads .aedat4 files with the 'aedat' package, which is not installed: "
            "pip install aedat"
        )
    base = CIFAR10DVS(str(data_dir))
    order = sorted(range(len(base.data)), key=lambda i: base.data[i])
    indices: list[int] = []
    for label in range(spec.num_classes):
        members = [i for i in order if base.targets[i] == label]
        cut = int(round(CIFAR10_DVS_TRAIN_FRACTION * len(members)))
        indices.extend(members[:cut] if train else members[cut:])
    assert spec.T is not None
    return EventFrameDataset(base, indices, spec.T, spec.image_shape[1:], split_by, binarize)
