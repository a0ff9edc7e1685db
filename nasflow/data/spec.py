"""What a dataset delivers (``DatasetSpec``) and the error raised when its files are missing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["DatasetNotFoundError", "DatasetSpec"]


@dataclass(frozen=True)
class DatasetSpec:
    """Metadata of one dataset as loaded (after the options ``T``/``size`` were applied).

    Attributes:
        name: registry name (``"digits"``, ``"cifar10"``, ``"dvs128-gesture"``, ...).
        kind: ``"static"``: one image ``[C, H, W]`` per sample, fed to the network by direct coding (the
            model repeats it over its own T steps); ``"event"``: a stream ``[T, C, H, W]`` per sample;
            ``"stereo"``: two event cameras ``[T, 4, H, W]`` (left ON, left OFF, right ON, right OFF) labelled
            with the left view's disparity map, float32 ``[H, W]``, ``NaN`` where unknown
            (``nasflow.data.stereo``).
        input_shape: the shape of one sample (``[C, H, W]`` or ``[T, C, H, W]``); a DataLoader batch adds a
            leading batch dimension, so event batches are ``[B, T, C, H, W]`` (see ``to_time_first``).
        num_classes: number of labels (labels are ``0 .. num_classes - 1``); for stereo, the number of
            disparity levels ``D`` a cost volume needs (disparities ``0 .. D - 1``; see ``disparities``).
        T: number of time steps carried by the data (event and stereo datasets), ``None`` for static datasets.
        binary: whether every input value is 0 or 1 (spikes; synaptic operations count as ACs, not MACs).
        source: the library that reads the files (``"scikit-learn"``, ``"torchvision"``, ``"tonic"``).
        url: where the data comes from.
        folder: the folder under ``--data-dir`` that holds it (``""`` when nothing is read from disk).
        mean: per-channel mean subtracted from the inputs, ``None`` when they are not normalised.
        std: per-channel standard deviation the inputs are divided by, ``None`` when not normalised.
        hflip: whether a horizontal flip keeps the label (used by the standard augmentation).
    """

    name: str
    kind: Literal["static", "event", "stereo"]
    input_shape: tuple[int, ...]
    num_classes: int
    T: int | None
    binary: bool
    source: str
    url: str
    folder: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    hflip: bool = False

    def __post_init__(self) -> None:
        expected = 3 if self.kind == "static" else 4
        if self.kind not in ("static", "event", "stereo"):
            raise ValueError(
                f"DatasetSpec {self.name!r}: kind must be 'static', 'event' or 'stereo', got {self.kind!r}"
            )
        if len(self.input_shape) != expected:
            raise ValueError(
                f"DatasetSpec {self.name!r}: a {self.kind} sample has {expected} dimensions, got {self.input_shape}"
            )
        if (self.kind != "static") != (self.T is not None):
            raise ValueError(f"DatasetSpec {self.name!r}: T is set for event and stereo datasets only, got T={self.T}")
        if self.T is not None and self.input_shape[0] != self.T:
            raise ValueError(f"DatasetSpec {self.name!r}: input_shape {self.input_shape} must start with T={self.T}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one frame, whatever the kind."""
        c, h, w = self.input_shape[-3:]
        return (c, h, w)

    @property
    def disparities(self) -> int | None:
        """Disparity levels ``D`` of a stereo dataset (its ``num_classes``), ``None`` for other kinds."""
        return self.num_classes if self.kind == "stereo" else None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view (tuples become lists)."""
        out = asdict(self)
        for key in ("input_shape", "mean", "std"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetSpec:
        """Inverse of ``to_dict``."""
        data = dict(data)
        data["input_shape"] = tuple(data["input_shape"])
        for key in ("mean", "std"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where nasflow reads them; the message says what to download and where.

    Attributes ``dataset``, ``path`` (the missing file or folder), ``url`` and ``layout`` carry the same facts as
    the message for programs that want them. (``filename`` stays unset: ``OSError`` would then print
    ``[Errno None]`` instead of the message.)
    """

    def __init__(self, dataset: str, missing: Path, url: str, layout: str, data_dir: Path, note: str = "") -> None:
        message = (
            f"dataset {dataset!r}: {missing} not found.\n"
            f"Download it from {url} (nasflow never downloads) and put it, unpacked, under --data-dir "
            f"{data_dir} so that the files are laid out as:\n{layout}"
        )
        if note:
            message += f"\n{note}"
        super().__init__(message)
        self.dataset = dataset
        self.path = Path(missing)
        self.url = url
        self.layout = layout
