"""MVSEC indoor_flying event stereo, read from the layout of the DDES converter, binned by time (SBT).

SpikeDHS (§5.2.1) splits and preprocesses MVSEC's Indoor Flying "using the same setup as" DDES (Tulyakov et al.,
ICCV 2019). Everything below is taken from DDES's released code, tlkvstepan/event_stereo_ICCV2019
(``src/dense_deep_event_stereo/dataset_constants.py``, ``dataset.py``, ``events.py``, ``tools/convert_mvsec.py``):

* layout: ``<root>/indoor_flying_<n>/`` with ``timestamps.txt`` (one time in seconds per frame, written by
  ``np.savetxt(fmt='%f', header='timestamp')``), ``event0/%06d.npy`` (left camera), ``event1/%06d.npy`` (right),
  ``disparity_image/%06d.png`` (and ``image0/``, ``image1/`` gray images, not read here). The converter's docstring
  says ``left_event/`` / ``right_event/``, but its code writes ``event0/`` / ``event1/``, which the loader reads:
  the code is followed here.
* events: float64 ``[N, 4]`` rows ``(timestamp s, x, y, polarity ±1)``, rectified, coordinates rounded, all the
  events of the 0.05 s before the frame's timestamp; an empty file is saved as shape ``(0,)``.
* disparity: 8-bit PNG of the left view, 346x260, disparity × 7 rounded; 255 (also anything ≥ 255 after × 7)
  marks unknown disparity, so known values are at most 254 / 7 ≈ 36.3 pixels. Read here as float32 with ``NaN``
  for unknown.
* split 1 (SpikeDHS's choice): train on indoor_flying 2 and 3 (training frame ranges, 3,110 frames), validate and
  test on indoor_flying 1 (test frame range, shuffled with Python's ``random.seed(0)``: the first 200 are
  validation, the other 861 test).

Binning: stacking based on time (SBT, SpikeDHS §4.5 citing Wang et al., CVPR 2019): the window ``(t - 0.05·history,
t]`` before a frame's timestamp ``t`` is cut into ``T`` equal time slices, and each slice counts a pixel's ON and
OFF events in two channels, the layout of the generated task. (Secondary descriptions of SBT sum the signed
polarities into one channel per slice; Wang et al.'s text was not checked here. Two count channels keep that sum as
their difference.) Since ``timestamps.txt`` is rounded to the microsecond, events up to 1 µs outside the window
count in its edge slices; events further outside are dropped. Sample layout as ``nasflow.data.stereo``: ``x``
float32 ``[T, 4, H, W]`` (left ON, left OFF, right ON, right OFF), label float32 ``[H, W]``, ``NaN`` = unknown. No
crop. ``size=(h, w)`` resizes: events land in pixel ``(y·h // 260, x·w // 346)`` (counts add up), the ground truth
is sampled at the nearest source pixel and its values multiplied by ``w / 346`` (disparity is a horizontal length).
"""

from __future__ import annotations

import random
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from nasflow.config import ConfigError
from nasflow.data.spec import DatasetNotFoundError, DatasetSpec

__all__ = [
    "MVSEC_DISPARITY_MULTIPLIER",
    "MVSEC_FOCAL_BASELINE",
    "MVSEC_FRAME_INTERVAL",
    "MVSEC_INVALID_DISPARITY",
    "MVSEC_LAYOUT",
    "MVSEC_MAX_DISPARITY",
    "MVSEC_SENSOR_SIZE",
    "MVSEC_URL",
    "MvsecStereoDataset",
    "load_mvsec",
    "mvsec_split",
    "read_disparity_png",
    "read_events",
    "sbt_frames",
]

MVSEC_SENSOR_SIZE = (260, 346)
"""(H, W) of the DAVIS 346 cameras (DDES ``IMAGE_HEIGHT``, ``IMAGE_WIDTH``)."""
MVSEC_DISPARITY_MULTIPLIER = 7.0
"""Stored PNG value = disparity × 7 (DDES ``DISPARITY_MULTIPLIER``)."""
MVSEC_INVALID_DISPARITY = 255
"""PNG value of an unknown disparity (DDES ``INVALID_DISPARITY``)."""
MVSEC_MAX_DISPARITY = 37
"""Largest disparity DDES expects (``DISPARITY_MAXIMUM``); the cost volume spans ``0 .. 37`` at full size."""
MVSEC_FRAME_INTERVAL = 0.05
"""Seconds of events each ``.npy`` file holds before its frame's timestamp (DDES ``TIME_BETWEEN_EXAMPLES``)."""
_TIMESTAMP_ROUNDING = 1e-6  # timestamps.txt is written with '%f': the window's ends are known to a microsecond
MVSEC_FOCAL_BASELINE = 19.941772
"""Focal length × baseline of indoor_flying in pixel·metre: depth = this / disparity (DDES)."""
MVSEC_URL = (
    "https://daniilidis-group.github.io/mvsec/ (indoor_flying 1, 2, 3 ROS bags), converted with tools/convert_mvsec.py "
    "of https://github.com/tlkvstepan/event_stereo_ICCV2019 (`convert_mvsec.py <data-dir>/mvsec --experiment "
    "indoor_flying N`)"
)
_SEQUENCE_LAYOUT = (
    "indoor_flying_1/ (likewise indoor_flying_2/, indoor_flying_3/)\n"
    "  timestamps.txt          one time in seconds per frame ('# timestamp' header)\n"
    "  event0/000000.npy ...   left events, float64 [N, 4]: timestamp s, x, y, polarity -1/1\n"
    "  event1/000000.npy ...   right events, same format\n"
    "  disparity_image/000000.png ...  uint8 346x260, disparity x 7, 255 = unknown"
)
_CONVERTER = "(what DDES's tools/convert_mvsec.py writes)"
MVSEC_LAYOUT = f"  mvsec/\n{textwrap.indent(_SEQUENCE_LAYOUT, '    ')}\n{_CONVERTER}"
"""The layout under ``--data-dir`` that the registry's ``mvsec`` reads (printed in ``DatasetNotFoundError``)."""

_TEST_FRAMES = {1: range(140, 1201), 2: range(120, 1421), 3: range(73, 1616)}
_TRAIN_FRAMES = {1: range(80, 1260), 2: range(160, 1580), 3: range(125, 1815)}
_VALIDATION_SIZE = 200


def mvsec_split(split_number: int = 1, part: Literal["train", "val", "test"] = "train") -> list[tuple[int, int]]:
    """``(sequence, frame)`` pairs of one part of DDES's split ``split_number`` (1, 2 or 3) of indoor_flying.

    Split ``n`` tests on sequence ``n``: its test frame range, shuffled as DDES does (``random.seed(0)``), gives
    200 validation frames then the test frames; the other two sequences' training ranges are the training set.
    """
    if split_number not in _TEST_FRAMES:
        raise ConfigError(f"MVSEC split_number must be 1, 2 or 3 (the indoor_flying test sequence), got {split_number}")
    if part == "train":
        return [(s, f) for s in sorted(_TRAIN_FRAMES) if s != split_number for f in _TRAIN_FRAMES[s]]
    if part not in ("val", "test"):
        raise ConfigError(f"MVSEC part must be 'train', 'val' or 'test', got {part!r}")
    frames = list(_TEST_FRAMES[split_number])
    random.Random(0).shuffle(frames)  # the permutation of DDES's random.seed(0); random.shuffle(examples)
    chosen = frames[:_VALIDATION_SIZE] if part == "val" else frames[_VALIDATION_SIZE:]
    return [(split_number, f) for f in chosen]


def read_events(path: Path) -> np.ndarray:
    """One converted event file as float64 ``[N, 4]`` (timestamp, x, y, polarity); ``ConfigError`` if malformed."""
    try:
        events = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"MVSEC event file {path} cannot be read as a .npy array ({err})") from None
    if events.ndim == 1 and events.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if events.ndim != 2 or events.shape[1] != 4 or not np.issubdtype(events.dtype, np.number):
        raise ConfigError(
            f"MVSEC event file {path} holds a {events.dtype} array of shape {events.shape}; expected numbers "
            "[N, 4] with columns timestamp (s), x, y, polarity (-1/1), as DDES's tools/convert_mvsec.py writes"
        )
    events = events.astype(np.float64, copy=False)
    h, w = MVSEC_SENSOR_SIZE
    x, y, p = events[:, 1], events[:, 2], events[:, 3]
    if np.any((x < 0) | (x >= w) | (y < 0) | (y >= h)) or np.any(x != np.round(x)) or np.any(y != np.round(y)):
        raise ConfigError(
            f"MVSEC event file {path}: x must be integers in [0, {w}) and y in [0, {h}) (column 1 is x, column 2 "
            "is y, as in DDES); the file has coordinates outside the 346x260 sensor or not rounded"
        )
    if not np.all(np.isin(p, (-1.0, 0.0, 1.0))):
        raise ConfigError(f"MVSEC event file {path}: column 3 must hold polarities -1/1 (or 0/1), got other values")
    return events


def read_disparity_png(path: Path) -> np.ndarray:
    """A DDES disparity PNG as float32 ``[260, 346]`` pixels of disparity, ``NaN`` where the PNG holds 255."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            raw = np.asarray(image)
    except OSError as err:
        raise ConfigError(f"MVSEC disparity image {path} cannot be read ({err})") from None
    if raw.dtype != np.uint8 or raw.shape != MVSEC_SENSOR_SIZE:
        raise ConfigError(
            f"MVSEC disparity image {path} is {raw.dtype} {raw.shape}; expected a single-channel 8-bit PNG of "
            f"{MVSEC_SENSOR_SIZE[1]}x{MVSEC_SENSOR_SIZE[0]} (disparity x 7, 255 = unknown)"
        )
    disparity = raw.astype(np.float32) / MVSEC_DISPARITY_MULTIPLIER
    disparity[raw == MVSEC_INVALID_DISPARITY] = np.nan
    return disparity


def sbt_frames(
    events: np.ndarray,
    t_start: float,
    t_end: float,
    steps: int,
    size: tuple[int, int] = MVSEC_SENSOR_SIZE,
    tolerance: float = 0.0,
) -> np.ndarray:
    """Stacking based on time: events with ``t_start < t <= t_end`` counted in ``steps`` equal time slices.

    Returns float32 ``[steps, 2, h, w]`` (ON, OFF counts); sensor coordinates are scaled to ``size``. Events up
    to ``tolerance`` seconds outside the window count in its first or last slice.
    """
    if not t_end > t_start:
        raise ConfigError(f"SBT window must have t_end > t_start, got ({t_start}, {t_end}]")
    h, w = size
    out = np.zeros(steps * 2 * h * w, dtype=np.float32)
    t = events[:, 0]
    keep = (t > t_start - tolerance) & (t <= t_end + tolerance)
    ev = events[keep]
    if len(ev):
        slot = np.clip(np.floor((ev[:, 0] - t_start) / (t_end - t_start) * steps), 0, steps - 1).astype(np.int64)
        channel = (ev[:, 3] <= 0).astype(np.int64)  # 0: ON (+1), 1: OFF (-1 or 0)
        y = ev[:, 2].astype(np.int64) * h // MVSEC_SENSOR_SIZE[0]
        x = ev[:, 1].astype(np.int64) * w // MVSEC_SENSOR_SIZE[1]
        flat = ((slot * 2 + channel) * h + y) * w + x
        out += np.bincount(flat, minlength=out.size).astype(np.float32)
    return out.reshape(steps, 2, h, w)


def _resize_disparity(disparity: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    big_h, big_w = disparity.shape
    if (h, w) == (big_h, big_w):
        return disparity
    rows = ((np.arange(h) + 0.5) * big_h / h).astype(np.int64)
    cols = ((np.arange(w) + 0.5) * big_w / w).astype(np.int64)
    return disparity[rows[:, None], cols[None, :]] * np.float32(w / big_w)


class MvsecStereoDataset(Dataset):
    """MVSEC indoor_flying frames ``(x [T, 4, H, W], disparity [H, W])`` read from DDES's converted layout.

    ``root`` holds the ``indoor_flying_<n>`` folders; ``frames`` lists ``(sequence, frame)`` pairs (see
    ``mvsec_split``). Frames past the end of a sequence's ``timestamps.txt`` are left out with a warning (a
    partial conversion loads what it has); every file a kept frame needs is checked on construction, and a
    missing one raises ``DatasetNotFoundError`` naming it and the layout. ``history`` event files (0.05 s each)
    end at the frame. ``targets`` is all zeros (see ``StereoDotsDataset``).
    """

    def __init__(
        self,
        root: str | Path,
        frames: Sequence[tuple[int, int]],
        T: int = 6,
        size: tuple[int, int] | None = None,
        binarize: bool = False,
        history: int = 1,
        *,
        layout: str | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        if T < 1 or history < 1:
            raise ConfigError(f"MvsecStereoDataset: T and history must be at least 1, got T={T}, history={history}")
        self.T, self.history, self.binarize = T, history, binarize
        self.size: tuple[int, int] = (int(size[0]), int(size[1])) if size is not None else MVSEC_SENSOR_SIZE
        default_layout = f"{self.root}/\n{textwrap.indent(_SEQUENCE_LAYOUT, '  ')}\n{_CONVERTER}"
        self.layout = layout if layout is not None else default_layout
        self.data_dir = Path(data_dir) if data_dir is not None else self.root.parent
        if not self.root.is_dir():
            raise self._missing(self.root)
        self.timestamps: dict[int, np.ndarray] = {}
        for sequence in sorted({s for s, _ in frames}):
            folder = self._folder(sequence)
            if not folder.is_dir():
                raise self._missing(folder)
            self.timestamps[sequence] = self._read_timestamps(folder / "timestamps.txt")
        self.items: list[tuple[int, int]] = []
        for sequence, frame in frames:
            count = len(self.timestamps[sequence])
            if frame < count:
                self.items.append((sequence, frame))
        for sequence, count in ((s, len(t)) for s, t in self.timestamps.items()):
            wanted = max(f for s, f in frames if s == sequence)
            if wanted >= count:
                warnings.warn(
                    f"MVSEC {self._folder(sequence)} lists {count} frames in timestamps.txt but the split uses "
                    f"frames up to {wanted}: only the frames present are loaded",
                    stacklevel=2,
                )
        if not self.items:
            raise ConfigError(f"MVSEC under {self.root}: none of the requested frames is listed in timestamps.txt")
        for sequence, frame in self.items:
            for path in self._files(sequence, frame):
                if not path.is_file():
                    raise self._missing(path)
        self.targets = torch.zeros(len(self.items), dtype=torch.int64)

    def _folder(self, sequence: int) -> Path:
        return self.root / f"indoor_flying_{sequence}"

    def _files(self, sequence: int, frame: int) -> list[Path]:
        folder = self._folder(sequence)
        first = max(0, frame - self.history + 1)
        events = [folder / f"event{camera}" / f"{f:06d}.npy" for camera in (0, 1) for f in range(first, frame + 1)]
        return events + [folder / "disparity_image" / f"{frame:06d}.png"]

    def _missing(self, path: Path) -> DatasetNotFoundError:
        return DatasetNotFoundError("mvsec", path, MVSEC_URL, self.layout, self.data_dir)

    def _read_timestamps(self, path: Path) -> np.ndarray:
        if not path.is_file():
            raise self._missing(path)
        try:
            stamps = np.loadtxt(path, ndmin=1, dtype=np.float64)
        except ValueError as err:
            raise ConfigError(
                f"MVSEC {path} must hold one time in seconds per line ('# timestamp' header allowed): {err}"
            ) from None
        if stamps.ndim != 1 or not np.all(np.isfinite(stamps)):
            raise ConfigError(f"MVSEC {path} must hold one finite time in seconds per line, got shape {stamps.shape}")
        return stamps

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sequence, frame = self.items[index]
        folder = self._folder(sequence)
        t_end = float(self.timestamps[sequence][frame])
        t_start = t_end - MVSEC_FRAME_INTERVAL * self.history
        first = max(0, frame - self.history + 1)
        cameras = []
        for camera in (0, 1):
            files = [folder / f"event{camera}" / f"{f:06d}.npy" for f in range(first, frame + 1)]
            events = np.concatenate([read_events(path) for path in files])
            cameras.append(sbt_frames(events, t_start, t_end, self.T, self.size, tolerance=_TIMESTAMP_ROUNDING))
        x = torch.from_numpy(np.concatenate(cameras, axis=1))
        if self.binarize:
            x.clamp_(max=1.0)
        disparity = _resize_disparity(read_disparity_png(folder / "disparity_image" / f"{frame:06d}.png"), self.size)
        return x, torch.from_numpy(np.ascontiguousarray(disparity, dtype=np.float32))


def load_mvsec(spec: DatasetSpec, data_dir: Path, train: bool, layout: str, binarize: bool) -> MvsecStereoDataset:
    """The registry's ``mvsec``: split 1's training frames, or its 861 test frames, at the spec's T and size.

    Always binned by time (SBT, as SpikeDHS does): the registry's ``split_by`` does not apply to it.
    """
    assert spec.T is not None
    frames = mvsec_split(1, "train" if train else "test")
    h, w = spec.image_shape[1:]
    return MvsecStereoDataset(data_dir / spec.folder, frames, T=spec.T, size=(h, w), binarize=binarize,
                              layout=layout, data_dir=data_dir)
