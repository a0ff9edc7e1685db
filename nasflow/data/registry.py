"""The dataset registry: one name, one ``DatasetSpec``, one loader reading from ``--data-dir``.

``dataset_spec(name, ...)`` describes a dataset without touching the disk (to build a model or cost it);
``get_dataset(name, data_dir, split, ...)`` loads one split. Nothing is ever downloaded: missing files raise
``DatasetNotFoundError`` saying what to download and where to put it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, NamedTuple

from torch.utils.data import Dataset

from nasflow.data import transforms as _t
from nasflow.data.mvsec import MVSEC_LAYOUT, MVSEC_URL
from nasflow.data.spec import DatasetSpec

__all__ = ["DEFAULT_DATA_DIR", "DatasetHandle", "dataset_spec", "get_dataset", "list_datasets"]

DEFAULT_DATA_DIR = Path("data")
"""Where datasets are looked for when no ``data_dir`` is given (relative to the working directory)."""

STEREO_DOTS_TRAIN_SIZE = 4000
"""Samples in the generated stereo task's train split (made on access; ``encoding_seed`` seeds the scenes)."""
STEREO_DOTS_TEST_SIZE = 1000
"""Samples in its test split (a scene stream disjoint from the train split's)."""


class DatasetHandle(NamedTuple):
    """What ``get_dataset`` returns: the torch Dataset (samples ``(x, label)``) and its spec."""

    dataset: Dataset
    spec: DatasetSpec


@dataclass(frozen=True)
class _Options:
    train: bool
    split_by: Literal["number", "time"]
    binarize: bool
    encoding_seed: int


_Loader = Callable[[DatasetSpec, Path, str, _Options], Dataset]


@dataclass(frozen=True)
class _Entry:
    spec: DatasetSpec  # at the native size and default T
    layout: str  # folder layout under --data-dir, as printed in errors
    load: _Loader
    resizable: bool = False  # event datasets: ``size`` downsamples the events
    rescale_disparities: bool = False  # stereo read at a fixed sensor size: ``size`` scales the disparity range


def _load_digits(spec: DatasetSpec, data_dir: Path, layout: str, o: _Options) -> Dataset:
    from nasflow.data.digits import digits_dataset

    return digits_dataset(train=o.train, events=spec.kind == "event", T=spec.T or 1, encoding_seed=o.encoding_seed)


def _vision(name: str) -> _Loader:
    def load(spec: DatasetSpec, data_dir: Path, layout: str, o: _Options) -> Dataset:
        from nasflow.data import vision

        fn = {"cifar": vision.load_cifar, "svhn": vision.load_svhn, "tiny-imagenet": vision.load_tiny_imagenet}[name]
        return fn(spec, data_dir, o.train, layout)

    return load


def _events(name: str) -> _Loader:
    def load(spec: DatasetSpec, data_dir: Path, layout: str, o: _Options) -> Dataset:
        from nasflow.data import events

        fn = {"gesture": events.load_dvs_gesture, "nmnist": events.load_nmnist, "cifar10-dvs": events.load_cifar10_dvs}
        return fn[name](spec, data_dir, o.train, layout, o.split_by, o.binarize)

    return load


def _stereo_dots(spec: DatasetSpec, data_dir: Path, layout: str, o: _Options) -> Dataset:
    from nasflow.data.stereo import StereoDotsConfig, StereoDotsDataset

    assert spec.T is not None
    _, h, w = spec.image_shape
    config = StereoDotsConfig(height=h, width=w, disparities=spec.num_classes, steps=spec.T)
    length = STEREO_DOTS_TRAIN_SIZE if o.train else STEREO_DOTS_TEST_SIZE
    return StereoDotsDataset(length, seed=o.encoding_seed, split="train" if o.train else "test", config=config)


def _mvsec(spec: DatasetSpec, data_dir: Path, layout: str, o: _Options) -> Dataset:
    from nasflow.data.mvsec import load_mvsec

    return load_mvsec(spec, data_dir, o.train, layout, o.binarize)


def _static(name: str, shape: tuple[int, int, int], classes: int, source: str, url: str, folder: str,
            mean: tuple[float, ...] | None, std: tuple[float, ...] | None, hflip: bool) -> DatasetSpec:
    return DatasetSpec(name, "static", shape, classes, None, False, source, url, folder, mean, std, hflip)


def _event(name: str, shape: tuple[int, int, int], classes: int, T: int, source: str, url: str, folder: str,
           binary: bool, hflip: bool) -> DatasetSpec:
    return DatasetSpec(name, "event", (T, *shape), classes, T, binary, source, url, folder, None, None, hflip)


def _stereo(name: str, shape: tuple[int, int, int], disparities: int, T: int, source: str, url: str, folder: str,
            binary: bool) -> DatasetSpec:
    return DatasetSpec(name, "stereo", (T, *shape), disparities, T, binary, source, url, folder, None, None, False)


_DIGITS_URL = "sklearn.datasets.load_digits (ships with scikit-learn)"
_DVS_GESTURE_URL = (
    "https://figshare.com/ndownloader/files/38022171 (ibmGestureTrain.tar.gz) and "
    "https://figshare.com/ndownloader/files/38020584 (ibmGestureTest.tar.gz), tonic's preprocessed copy of IBM's "
    "DVS128 Gesture (https://research.ibm.com/interactive/dvsgesture/)"
)
_NMNIST_URL = (
    "https://www.garrickorchard.com/datasets/n-mnist (files Train.zip and Test.zip, mirrored by tonic at "
    "https://data.mendeley.com/datasets/468j46mzdv/1)"
)
_CIFAR10_DVS_URL = (
    "https://figshare.com/ndownloader/files/38023437 (CIFAR10DVS.zip: one <class>.zip per class, each unpacked "
    "into its own folder; tonic's .aedat4 copy of https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671)"
)

_REGISTRY: dict[str, _Entry] = {
    "digits": _Entry(
        _static("digits", (1, 8, 8), 10, "scikit-learn", _DIGITS_URL, "", None, None, False),
        "(nothing: bundled with scikit-learn)", _load_digits,
    ),
    "digits-events": _Entry(
        _event("digits-events", (1, 8, 8), 10, 8, "scikit-learn", _DIGITS_URL, "", True, False),
        "(nothing: bundled with scikit-learn)", _load_digits,
    ),
    "cifar10": _Entry(
        _static("cifar10", (3, 32, 32), 10, "torchvision", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "cifar-10-batches-py", _t.CIFAR10_MEAN, _t.CIFAR10_STD, True),
        "  cifar-10-batches-py/\n    data_batch_1 ... data_batch_5\n    test_batch\n    batches.meta\n"
        "(what cifar-10-python.tar.gz unpacks to)",
        _vision("cifar"),
    ),
    "cifar100": _Entry(
        _static("cifar100", (3, 32, 32), 100, "torchvision",
                "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python", _t.CIFAR100_MEAN,
                _t.CIFAR100_STD, True),
        "  cifar-100-python/\n    train\n    test\n    meta\n(what cifar-100-python.tar.gz unpacks to)",
        _vision("cifar"),
    ),
    "svhn": _Entry(
        _static("svhn", (3, 32, 32), 10, "torchvision",
                "http://ufldl.stanford.edu/housenumbers/ (train_32x32.mat and test_32x32.mat)", "svhn",
                _t.SVHN_MEAN, _t.SVHN_STD, False),
        "  svhn/\n    train_32x32.mat\n    test_32x32.mat",
        _vision("svhn"),
    ),
    "tiny-imagenet": _Entry(
        _static("tiny-imagenet", (3, 64, 64), 200, "torchvision", "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                "tiny-imagenet-200", _t.TINY_IMAGENET_MEAN, _t.TINY_IMAGENET_STD, True),
        "  tiny-imagenet-200/\n    train/<wnid>/images/*.JPEG   (200 class folders)\n    val/images/*.JPEG\n"
        "    val/val_annotations.txt\n(what tiny-imagenet-200.zip unpacks to; val/ is used as the test split)",
        _vision("tiny-imagenet"),
    ),
    "dvs128-gesture": _Entry(
        _event("dvs128-gesture", (2, 128, 128), 11, 20, "tonic", _DVS_GESTURE_URL, "DVSGesture", False, False),
        "  DVSGesture/\n    ibmGestureTrain/user01_fluorescent/<label>.npy ...\n"
        "    ibmGestureTest/user24_fluorescent/<label>.npy ...\n(what the two .tar.gz archives unpack to)",
        _events("gesture"), resizable=True,
    ),
    "nmnist": _Entry(
        _event("nmnist", (2, 34, 34), 10, 20, "tonic", _NMNIST_URL, "NMNIST", False, False),
        "  NMNIST/\n    Train/0/*.bin ... Train/9/*.bin\n    Test/0/*.bin ... Test/9/*.bin\n"
        "(what Train.zip and Test.zip unpack to)",
        _events("nmnist"), resizable=True,
    ),
    "cifar10-dvs": _Entry(
        _event("cifar10-dvs", (2, 128, 128), 10, 20, "tonic", _CIFAR10_DVS_URL, "CIFAR10DVS", False, True),
        "  CIFAR10DVS/\n    airplane/*.aedat4\n    automobile/*.aedat4\n    ... (10 class folders)\n    truck/*.aedat4",
        _events("cifar10-dvs"), resizable=True,
    ),
    "stereo-dots": _Entry(
        _stereo("stereo-dots", (4, 48, 48), 8, 6, "nasflow", "generated on access by nasflow.data.stereo", "",
                True),
        "(nothing: generated)", _stereo_dots, resizable=True,
    ),
    "mvsec": _Entry(
        _stereo("mvsec", (4, 260, 346), 38, 6, "nasflow", MVSEC_URL, "mvsec", False),
        MVSEC_LAYOUT, _mvsec, resizable=True, rescale_disparities=True,
    ),
}


def list_datasets() -> list[str]:
    """Names accepted by ``get_dataset`` / ``dataset_spec`` / ``make_loaders``."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    key = name.strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, _REGISTRY, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown dataset {name!r}{hint} Known datasets: {', '.join(list_datasets())}")


def dataset_spec(
    name: str, T: int | None = None, size: int | tuple[int, int] | None = None, binarize: bool = False
) -> DatasetSpec:
    """The spec of a dataset as ``get_dataset`` would load it, without reading any file.

    ``T`` (event datasets only; static datasets ignore it, their T is the model's) sets the number of frames;
    ``size`` (``H`` or ``(H, W)``, event camera datasets only) downsamples the events, e.g. 128 → 32 (stereo:
    ``stereo-dots`` is generated at that size; ``mvsec`` is resized and its disparity levels scale with the
    width); ``binarize`` clips event-frame counts to 0/1.
    """
    entry = _entry(name)
    spec = entry.spec
    if spec.kind == "static":
        if size is not None:
            raise ValueError(f"dataset {spec.name!r} is read at {spec.image_shape[1:]}; size={size} is not supported")
        return spec
    c, h, w = spec.image_shape
    if size is not None:
        if not entry.resizable:
            raise ValueError(f"dataset {spec.name!r} has a fixed size {(h, w)}; size={size} is not supported")
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if h < 1 or w < 1:
            raise ValueError(f"size must be positive, got {size}")
    steps = spec.T if T is None else int(T)
    if steps is None or steps < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    classes = spec.num_classes
    if entry.rescale_disparities and w != spec.image_shape[2]:
        classes = math.ceil((classes - 1) * w / spec.image_shape[2]) + 1  # the largest disparity shrinks with w
    return replace(spec, input_shape=(steps, c, h, w), T=steps, binary=spec.binary or binarize, num_classes=classes)


def get_dataset(
    name: str,
    data_dir: str | Path | None = None,
    split: Literal["train", "test"] = "train",
    *,
    train: bool | None = None,
    T: int | None = None,
    size: int | tuple[int, int] | None = None,
    split_by: Literal["number", "time"] = "number",
    binarize: bool = False,
    encoding_seed: int = 0,
) -> DatasetHandle:
    """Load the ``split`` (``"train"`` or ``"test"``; ``train=True/False`` is accepted too) of a dataset.

    Samples are ``(x, label)`` with ``x`` float32 ``[C, H, W]`` (static: torchvision sets normalised with the
    spec's mean/std, digits in ``[0, 1]``) or ``[T, C, H, W]`` (event: rate-coded digits, or event-camera
    recordings binned into ``T`` frames, by equal event counts (``split_by="number"``) or equal durations).
    ``data_dir`` defaults to ``./data``; the layout each dataset needs under it is in the ``DatasetNotFoundError``
    raised when files are missing. ``encoding_seed`` seeds the digits-events spike trains and the scenes of
    ``stereo-dots``. Stereo samples are ``(x [T, 4, H, W], disparity [H, W])`` (see ``DatasetSpec``). For the
    D_train/D_val split of a search use ``split_train_val`` on the train split.
    """
    spec = dataset_spec(name, T=T, size=size, binarize=binarize)
    entry = _REGISTRY[spec.name]
    if train is not None:
        split = "train" if train else "test"
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r} (validation: see split_train_val)")
    root = Path(DEFAULT_DATA_DIR if data_dir is None else data_dir).expanduser()
    layout = f"{root}/\n{entry.layout}" if spec.folder else entry.layout
    options = _Options(split == "train", split_by, binarize, encoding_seed)
    return DatasetHandle(entry.load(spec, root, layout, options), spec)
