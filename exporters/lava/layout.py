"""NIR ↔ Lava array layout: Lava reverses NIR's axes (NIR's ``(C, H, W)`` is Lava's ``(W, H, C)``)."""

from __future__ import annotations

import numpy as np

__all__ = ["lava_shape", "to_lava_layout", "from_lava_layout", "lava_perm"]


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's layout of a NIR shape: axes reversed (``(C, H, W)`` → ``(W, H, C)``)."""
    return tuple(int(s) for s in shape[::-1])


def to_lava_layout(x: np.ndarray, ndim: int) -> np.ndarray:
    """Reverse the last ``ndim`` axes of ``x`` (NIR layout → Lava layout); leading axes stay."""
    lead = x.ndim - ndim
    return np.transpose(x, list(range(lead)) + list(range(x.ndim - 1, lead - 1, -1)))


def from_lava_layout(x: np.ndarray, ndim: int) -> np.ndarray:
    """Inverse of :func:`to_lava_layout` (reversing axes is its own inverse)."""
    return to_lava_layout(x, ndim)


def lava_perm(shape: tuple[int, ...]) -> np.ndarray:
    """For each flat index in Lava layout, the flat index of the same element in NIR layout."""
    n = int(np.prod(shape))
    return to_lava_layout(np.arange(n).reshape(shape), len(shape)).ravel()
