"""Generated event stereo: moving random-dot stereograms seen by two event cameras, with exact disparity.

The SpikeDHS layer search (issue 15) needs a dense-prediction task small enough for two CPU cores and without a
download. A random-dot stereogram has no monocular cue, so depth can only be recovered by matching the two views,
and rendering it from a layered scene gives per-pixel ground truth by construction.

Geometry (rectified stereo, the convention of KITTI, SceneFlow and MVSEC): a surface at disparity ``d`` seen at
left pixel ``(y, x)`` is seen at right pixel ``(y, x - d)``; larger disparity means nearer. A scene is a stack of
fronto-parallel ``Layer``s (a background plane and a few rectangles or discs), each with an integer disparity, a
binary random-dot texture and a small integer velocity; nearer layers hide farther ones in each view separately
(so half-occlusions are real). Frames are rendered at steps ``0 .. T`` and events are the brightness changes
between consecutive frames: step ``t`` of the sample holds ``frame[t + 1] - frame[t]`` split into an ON channel
(increase) and an OFF channel (decrease). With binary textures every change is 0 or ±1, so ``ON - OFF`` equals the
frame difference exactly and the events are spikes.

Sample layout: ``x`` float32 ``[T, 4, H, W]`` with channels (left ON, left OFF, right ON, right OFF); the label is
the left view's disparity at the last rendered frame (step ``T``, the state the last events lead to), float32
``[H, W]``, with ``NaN`` where the left pixel has no match in the right image (``x - d < 0``, or no surface).
Half-occluded pixels keep their geometric disparity, as KITTI's ``disp_occ`` and MVSEC's lidar ground truth do;
``StereoDotsConfig.mask_occlusions`` marks them ``NaN`` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from nasflow.config import ConfigError

__all__ = [
    "Layer",
    "StereoDotsConfig",
    "StereoDotsDataset",
    "StereoFrames",
    "disparity_ground_truth",
    "frame_events",
    "random_scene",
    "render_frames",
    "render_view",
    "stereo_dots_sample",
    "stereo_events",
]

_SPLIT_STREAM = {"train": 0, "test": 1}
_VELOCITIES = [(vy, vx) for vy in (-1, 0, 1) for vx in (-1, 0, 1) if (vy, vx) != (0, 0)]


@dataclass(frozen=True)
class StereoDotsConfig:
    """Size and content of the generated stereo task (defaults: issue 15's 48x48, 8 disparities, T = 6).

    Attributes:
        height, width: image size in pixels.
        disparities: ``D``; integer disparities ``0 .. D - 1`` occur (the cost volume needs ``D`` levels).
        steps: ``T``, event frames per sample (``T + 1`` brightness frames are rendered).
        objects: least and most foreground objects per scene.
        dot_density: fraction of texture pixels that are bright dots.
        mask_occlusions: also mark half-occluded pixels (visible in the left view only) ``NaN``.
        noise: probability of a spurious event per pixel, step, camera and polarity (an event camera's background
            activity), independent between the cameras, so it never matches across them.
    """

    height: int = 48
    width: int = 48
    disparities: int = 8
    steps: int = 6
    objects: tuple[int, int] = (1, 3)
    dot_density: float = 0.3
    mask_occlusions: bool = False
    noise: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise < 1.0:
            raise ConfigError(f"StereoDotsConfig.noise is a probability per pixel and step in [0, 1), got {self.noise}")
        if self.height < 1 or self.width < 1:
            raise ConfigError(f"StereoDotsConfig: height and width must be positive, got {self.height}x{self.width}")
        if self.disparities < 2:
            raise ConfigError(
                f"StereoDotsConfig.disparities must be at least 2 (a background and a nearer object), "
                f"got {self.disparities}"
            )
        if self.steps < 1:
            raise ConfigError(f"StereoDotsConfig.steps must be at least 1, got {self.steps}")
        low, high = self.objects
        if not 0 <= low <= high:
            raise ConfigError(f"StereoDotsConfig.objects must be (least, most), 0 <= least <= most, got {low, high}")
        if not 0.0 < self.dot_density < 1.0:
            raise ConfigError(f"StereoDotsConfig.dot_density must lie in (0, 1), got {self.dot_density}")


@dataclass(frozen=True, eq=False)
class Layer:
    """One fronto-parallel surface: a texture and a coverage mask painted on a canvas, moving rigidly.

    At step ``t`` the left view's pixel ``(y, x)`` reads canvas cell ``(y + oy - vy*t, x + ox - vx*t)`` and the
    right view's pixel ``(y, x)`` reads ``(y + oy - vy*t, x + d + ox - vx*t)`` (``origin = (oy, ox)``,
    ``velocity = (vy, vx)`` in pixels per step, ``d = disparity``). Cells outside the canvas are not covered.
    """

    disparity: int
    texture: np.ndarray  # [Hc, Wc] brightness
    mask: np.ndarray  # [Hc, Wc] bool: where the surface exists
    velocity: tuple[int, int] = (0, 0)
    origin: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.texture.ndim != 2 or self.texture.shape != self.mask.shape:
            raise ConfigError(
                f"Layer: texture {self.texture.shape} and mask {self.mask.shape} must be the same 2-D canvas shape"
            )
        if self.disparity < 0:
            raise ConfigError(f"Layer.disparity must be >= 0 (right pixel = left pixel - d), got {self.disparity}")

    def sample(self, height: int, width: int, t: int, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Brightness and coverage seen by a ``height x width`` view at step ``t``; ``shift`` is added to ``x``
        (0 for the left view, the disparity for the right one)."""
        r0 = self.origin[0] - self.velocity[0] * t
        c0 = shift + self.origin[1] - self.velocity[1] * t
        hc, wc = self.mask.shape
        if 0 <= r0 and r0 + height <= hc and 0 <= c0 and c0 + width <= wc:  # the whole view is on the canvas
            covered = self.mask[r0 : r0 + height, c0 : c0 + width].copy()
            return np.where(covered, self.texture[r0 : r0 + height, c0 : c0 + width], 0.0).astype(np.float32), covered
        rows, cols = np.broadcast_arrays(np.arange(height)[:, None] + r0, np.arange(width)[None, :] + c0)
        inside = (rows >= 0) & (rows < hc) & (cols >= 0) & (cols < wc)
        r, c = np.clip(rows, 0, hc - 1), np.clip(cols, 0, wc - 1)
        covered = inside & self.mask[r, c]
        return np.where(covered, self.texture[r, c], 0.0).astype(np.float32), covered


def _painter_order(layers: Sequence[Layer]) -> list[int]:
    """Far to near (ties by list position): painting in this order makes the nearest surface win."""
    return sorted(range(len(layers)), key=lambda i: (layers[i].disparity, i))


def render_view(
    layers: Sequence[Layer], height: int, width: int, t: int, camera: Literal["left", "right"] = "left"
) -> tuple[np.ndarray, np.ndarray]:
    """One camera's brightness ``[H, W]`` at step ``t`` and which layer each pixel shows (``-1``: none).

    Each view resolves occlusion on its own (the nearest layer covering that view's pixel wins), which is what
    makes half-occluded regions appear, as with real cameras.
    """
    if camera not in ("left", "right"):
        raise ConfigError(f"camera must be 'left' or 'right', got {camera!r}")
    image = np.zeros((height, width), dtype=np.float32)
    index = np.full((height, width), -1, dtype=np.int64)
    for i in _painter_order(layers):
        layer = layers[i]
        values, covered = layer.sample(height, width, t, shift=layer.disparity if camera == "right" else 0)
        image[covered] = values[covered]
        index[covered] = i
    return image, index


def disparity_ground_truth(
    layers: Sequence[Layer], height: int, width: int, t: int, mask_occlusions: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The left view's disparity at step ``t`` (float32, ``NaN`` = no match) and its half-occlusion mask.

    A left pixel ``x`` showing a layer of disparity ``d`` matches right pixel ``x - d``; it has no match when
    ``x - d < 0`` or no layer covers it. It is half-occluded when the right pixel ``x - d`` shows another layer
    (a nearer surface hides it in the right view); ``mask_occlusions`` turns those pixels ``NaN`` as well.
    """
    _, left = render_view(layers, height, width, t, "left")
    _, right = render_view(layers, height, width, t, "right")
    disparity_of = np.array([layer.disparity for layer in layers] + [0], dtype=np.int64)  # index -1 -> 0
    d = disparity_of[left]
    x = np.arange(width)[None, :]
    target = x - d
    valid = (left >= 0) & (target >= 0)
    rows = np.arange(height)[:, None].repeat(width, axis=1)
    seen = right[rows, np.clip(target, 0, width - 1)]
    occluded = valid & (seen != left)
    out = np.where(valid, d, np.nan).astype(np.float32)
    if mask_occlusions:
        out[occluded] = np.nan
    return out, occluded


class StereoFrames(NamedTuple):
    """Rendered brightness of both cameras at steps ``0 .. T`` and the left ground truth at step ``T``."""

    left: np.ndarray  # [T + 1, H, W]
    right: np.ndarray  # [T + 1, H, W]
    disparity: np.ndarray  # [H, W] float32, NaN = no match
    occluded: np.ndarray  # [H, W] bool, half-occluded left pixels (visible in the left view only)


def render_frames(
    layers: Sequence[Layer], height: int, width: int, steps: int, mask_occlusions: bool = False
) -> StereoFrames:
    """Render ``steps + 1`` frames per camera and the ground truth at the last one."""
    left = np.stack([render_view(layers, height, width, t, "left")[0] for t in range(steps + 1)])
    right = np.stack([render_view(layers, height, width, t, "right")[0] for t in range(steps + 1)])
    disparity, occluded = disparity_ground_truth(layers, height, width, steps, mask_occlusions)
    return StereoFrames(left, right, disparity, occluded)


def frame_events(frames: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Events between consecutive frames ``[N + 1, H, W]`` → float32 ``[N, 2, H, W]`` (ON, OFF).

    A pixel emits one ON event when its brightness rises by more than ``threshold`` and one OFF event when it
    falls by more, as an idealised DVS pixel sampled once per step.
    """
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ConfigError(f"frame_events needs frames [N + 1, H, W] with N >= 1, got shape {frames.shape}")
    diff = np.diff(frames.astype(np.float32), axis=0)
    return np.stack([diff > threshold, diff < -threshold], axis=1).astype(np.float32)


def stereo_events(frames: StereoFrames) -> np.ndarray:
    """Both cameras' events as one float32 ``[T, 4, H, W]`` array (left ON, left OFF, right ON, right OFF)."""
    return np.concatenate([frame_events(frames.left), frame_events(frames.right)], axis=1)


def _shape_mask(rng: np.random.Generator, hc: int, wc: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:hc, 0:wc]
    if rng.random() < 0.5:
        return (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    radius = min(ry, rx)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def random_scene(rng: np.random.Generator, config: StereoDotsConfig) -> list[Layer]:
    """A background plane and ``config.objects`` rectangles or discs, all drawn from ``rng``.

    The background's disparity lies in the lower half of ``0 .. D - 1`` and every object is strictly nearer, so
    objects stand in front of the background; objects may overlap each other. Every layer moves by one pixel
    per step in one of the eight directions (a still layer would emit no events). Canvases are large enough
    that the background covers both views at every step.
    """
    h, w, d_max, margin = config.height, config.width, config.disparities - 1, config.steps
    hc, wc = h + 2 * margin, w + d_max + 2 * margin
    origin = (margin, margin)

    def texture() -> np.ndarray:
        return (rng.random((hc, wc)) < config.dot_density).astype(np.float32)

    def velocity() -> tuple[int, int]:
        return _VELOCITIES[int(rng.integers(len(_VELOCITIES)))]

    background = int(rng.integers(0, d_max // 2 + 1))
    layers = [Layer(background, texture(), np.ones((hc, wc), dtype=bool), velocity(), origin)]
    low, high = config.objects
    for _ in range(int(rng.integers(low, high + 1))):
        disparity = int(rng.integers(background + 1, d_max + 1))
        cy, cx = margin + rng.uniform(0, h), margin + rng.uniform(0, w)
        ry, rx = rng.uniform(h / 10, h / 4), rng.uniform(w / 10, w / 4)
        layers.append(Layer(disparity, texture(), _shape_mask(rng, hc, wc, cy, cx, ry, rx), velocity(), origin))
    return layers


def stereo_dots_sample(
    seed: int, index: int, config: StereoDotsConfig | None = None, split: Literal["train", "test"] = "train"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``index`` of the generated task: ``(x [T, 4, H, W], disparity [H, W])`` as float32 tensors.

    The scene is drawn from ``numpy.random.default_rng((seed, split, index))``, so any sample is reproduced on its
    own, in any order, in any DataLoader worker; train and test draw from disjoint streams.
    """
    config = config or StereoDotsConfig()
    if split not in _SPLIT_STREAM:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    rng = np.random.default_rng([int(seed), _SPLIT_STREAM[split], int(index)])
    frames = render_frames(random_scene(rng, config), config.height, config.width, config.steps,
                           config.mask_occlusions)
    x = stereo_events(frames)
    if config.noise > 0:  # drawn after the scene, so a noise-free sample is the same scene
        x = np.maximum(x, (rng.random(x.shape) < config.noise).astype(x.dtype))
    return torch.from_numpy(x), torch.from_numpy(frames.disparity)


@dataclass(eq=False)
class StereoDotsDataset(Dataset):
    """``length`` generated samples ``(x [T, 4, H, W], disparity [H, W])``, made on access (nothing is stored).

    ``targets`` is all zeros: a stereo sample has no class, and a single class makes the stratified
    ``split_train_val`` of the searches a plain seeded random split.
    """

    length: int
    seed: int = 0
    split: Literal["train", "test"] = "train"
    config: StereoDotsConfig = field(default_factory=StereoDotsConfig)

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ConfigError(f"StereoDotsDataset.length must be at least 1, got {self.length}")
        if self.split not in _SPLIT_STREAM:
            raise ConfigError(f"StereoDotsDataset.split must be 'train' or 'test', got {self.split!r}")
        self.targets = torch.zeros(self.length, dtype=torch.int64)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        return stereo_dots_sample(self.seed, index % self.length, self.config, self.split)
