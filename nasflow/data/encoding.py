"""Encodings of analog inputs as spike trains."""

from __future__ import annotations

import torch

__all__ = ["rate_encode"]


def rate_encode(
    x: torch.Tensor, T: int, generator: torch.Generator | None = None, time_dim: int = 0
) -> torch.Tensor:
    """Bernoulli rate coding: at each of ``T`` steps an element fires with probability equal to its value.

    ``x`` holds intensities in ``[0, 1]``. The result has a new time axis of length ``T`` at ``time_dim``
    (``0``: ``[T, *x.shape]``; ``1`` for a batch ``[N, ...]`` gives ``[N, T, ...]``), values 0.0 or 1.0
    (float32). The expected rate of every element is exactly its value (``P(u < p) = p`` for ``u ~ U[0, 1)``), and
    with a seeded ``generator`` the spikes are reproducible.
    """
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(f"rate coding needs values in [0, 1], got [{float(x.min())}, {float(x.max())}]")
    p = x.float().unsqueeze(time_dim)
    shape = list(p.shape)
    shape[time_dim] = T
    u = torch.rand(shape, generator=generator, device=x.device)
    return (u < p).float()
