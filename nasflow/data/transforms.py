"""Augmentations of image tensors, seeded explicitly, applied once per sample (time-independent).

Every transform works on the last two dimensions of a tensor ``[..., H, W]`` with channels at ``-3``: a static
image ``[C, H, W]`` or an event sample ``[T, C, H, W]``, where one random draw is applied to every time step (a
crop or flip that changed from step to step would be a different input, not an augmentation of this one).

A transform is called as ``t(x, generator)``: with a ``torch.Generator`` its draws come from that generator,
with ``None`` from torch's global generator. ``make_loaders`` passes a generator that it seeds, so augmented
epochs are reproducible whatever the number of worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from nasflow.data.spec import DatasetSpec

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "SVHN_MEAN",
    "SVHN_STD",
    "TINY_IMAGENET_MEAN",
    "TINY_IMAGENET_STD",
    "Compose",
    "Cutout",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Transform",
    "standard_augmentation",
]

# Channel statistics (RGB, of pixel/255) used by most CIFAR training scripts, the SNN ones included
# (kuangliu/pytorch-cifar). The exact per-pixel std of CIFAR-10 is (0.2470, 0.2435, 0.2616).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)
TINY_IMAGENET_MEAN = (0.4802, 0.4481, 0.3975)
TINY_IMAGENET_STD = (0.2302, 0.2265, 0.2262)


class Transform(Protocol):
    """A tensor-to-tensor augmentation drawing its randomness from ``generator`` (global RNG when ``None``)."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[0, high)``."""
    return int(torch.randint(high, (), generator=generator))


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomHorizontalFlip:
    """Mirror the last dimension with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if float(torch.rand((), generator=generator)) < self.p:
            return x.flip(-1)
        return x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Pad the image by ``padding`` pixels on every side with ``fill``, then cut a random ``size`` window.

    ``fill`` is one value or one per channel: for normalised inputs pass ``-mean/std`` to pad with black, as
    torchvision does when it crops before normalising (``standard_augmentation`` does this).
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 0, fill: float | Sequence[float] = 0.0) -> None:
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = padding
        self.fill = fill if isinstance(fill, (int, float)) else tuple(float(f) for f in fill)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.padding
        h, w = x.shape[-2:]
        th, tw = self.size
        if th > h + 2 * p or tw > w + 2 * p:
            raise ValueError(f"crop {self.size} larger than the padded image {(h + 2 * p, w + 2 * p)}")
        if p:
            padded = x.new_empty(*x.shape[:-2], h + 2 * p, w + 2 * p)
            if isinstance(self.fill, tuple):
                if x.dim() < 3 or x.shape[-3] != len(self.fill):
                    raise ValueError(f"fill has {len(self.fill)} values but the input has shape {tuple(x.shape)}")
                padded[...] = torch.tensor(self.fill, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            else:
                padded.fill_(self.fill)
            padded[..., p : p + h, p : p + w] = x
        else:
            padded = x
        i = _randint(h + 2 * p - th + 1, generator)
        j = _randint(w + 2 * p - tw + 1, generator)
        return padded[..., i : i + th, j : j + tw].contiguous()

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding}, fill={self.fill})"


class Cutout:
    """Zero ``n_holes`` squares of side ``length`` at uniformly drawn centres (DeVries & Taylor, 2017).

    As in the reference code a square whose centre lies near the border is clipped by it, so the zeroed
    area is at most ``length x length``. Applied after normalisation (zero = the dataset mean), as AutoSNN does.
    """

    def __init__(self, n_holes: int = 1, length: int = 16) -> None:
        if n_holes < 0 or length < 0:
            raise ValueError(f"n_holes and length must be >= 0, got {n_holes}, {length}")
        self.n_holes = n_holes
        self.length = length

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        mask = torch.ones(h, w, dtype=x.dtype, device=x.device)
        half = self.length // 2
        for _ in range(self.n_holes):
            cy = _randint(h, generator)
            cx = _randint(w, generator)
            mask[max(cy - half, 0) : min(cy + half, h), max(cx - half, 0) : min(cx + half, w)] = 0
        return x * mask

    def __repr__(self) -> str:
        return f"Cutout(n_holes={self.n_holes}, length={self.length})"


class Normalize:
    """``(x - mean) / std`` per channel (dimension ``-3``); deterministic."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} values, std {len(std)}")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def standard_augmentation(spec: DatasetSpec, cutout: bool = False, cutout_length: int | None = None) -> Compose:
    """The training augmentation of AutoSNN (appendix A) sized to a dataset.

    Random crop after padding by ``H // 8`` (32 → pad 4 → 40 → crop 32), a horizontal flip where the label
    allows it (not for digits, SVHN, N-MNIST or gestures, where mirroring changes meaning), and with
    ``cutout=True`` one cutout hole of side ``cutout_length`` (default 16 for 32x32 images as in AutoSNN,
    ``H // 2`` otherwise). Inputs are expected as ``get_dataset`` returns them (already normalised).
    """
    _, h, w = spec.image_shape
    fill: float | tuple[float, ...] = 0.0
    if spec.mean is not None and spec.std is not None:
        fill = tuple(-m / s for m, s in zip(spec.mean, spec.std, strict=True))
    steps: list[Transform] = [RandomCrop((h, w), padding=max(h // 8, 1), fill=fill)]
    if spec.hflip:
        steps.append(RandomHorizontalFlip())
    if cutout:
        length = cutout_length if cutout_length is not None else (16 if h == 32 else max(h // 2, 1))
        steps.append(Cutout(1, length))
    return Compose(steps)
