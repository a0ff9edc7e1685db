"""Surrogate gradients for the Heaviside spike function (REFERENCE.md §1).

Every surrogate is a small frozen object with two pure functions:

* ``grad(x)``: the surrogate derivative ``dS/dH`` at ``x = H - v_th``, used both by
  the autograd function below and by the fused neuron kernels in ``neurons.py``;
* ``__call__(x, strict)``: the spike ``Θ(x)`` (``x > 0`` when ``strict`` else ``x >= 0``)
  whose backward pass is ``grad(x)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "ATan",
    "Dspike",
    "Sigmoid",
    "SuperSpike",
    "Surrogate",
    "Triangle",
    "heaviside",
    "make_surrogate",
    "SURROGATES",
]


def heaviside(x: torch.Tensor, strict: bool) -> torch.Tensor:
    """Θ(x) as a float tensor: ``x > 0`` if ``strict`` (NIR, Lava, snnTorch) else ``x >= 0``."""
    return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)


class _SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate, strict: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x, strict)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(x), None, None


@dataclass(frozen=True)
class Surrogate:
    """Base class: subclasses define ``grad``; calling one fires spikes with that gradient."""

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, strict: bool = False) -> torch.Tensor:
        return _SpikeFn.apply(x, self, strict)


@dataclass(frozen=True)
class ATan(Surrogate):
    """``α/2 / (1 + (π/2 · α · x)^2)`` (AutoSNN, SNASNet, SpikingJelly default α = 2)."""

    alpha: float = 2.0

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x).square())


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """``α σ(αx)(1 - σ(αx))``."""

    alpha: float = 4.0

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        sg = torch.sigmoid(self.alpha * x)
        return self.alpha * sg * (1 - sg)


@dataclass(frozen=True)
class Triangle(Surrogate):
    """``max(0, 1 - |x|/w) / w``."""

    width: float = 1.0

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - x.abs() / self.width).clamp_min(0) / self.width


@dataclass(frozen=True)
class SuperSpike(Surrogate):
    """``1 / (1 + β|x|)^2`` (Zenke & Ganguli 2018)."""

    beta: float = 10.0

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return 1 / (1 + self.beta * x.abs()).square()


@dataclass(frozen=True)
class Dspike(Surrogate):
    """SpikeDHS's Dspike with temperature ``b``.

    Written for ``u`` = membrane and threshold 0.5: ``b/(2 tanh(b/2)) (1 - tanh²(b(u - 0.5)))``
    for ``0 < u < 1``, else 0. With ``x = u - 0.5`` the window is ``|x| < 0.5``; the factor
    normalises the surrogate to unit area over that window.
    """

    b: float = 3.0

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        inside = (x.abs() < 0.5).to(x.dtype)
        return inside * self.b / (2 * math.tanh(self.b / 2)) * (1 - torch.tanh(self.b * x).square())


SURROGATES: dict[str, type[Surrogate]] = {
    "atan": ATan,
    "sigmoid": Sigmoid,
    "triangle": Triangle,
    "superspike": SuperSpike,
    "dspike": Dspike,
}


def make_surrogate(name: str, **params: float) -> Surrogate:
    """Build a surrogate by name (``atan``, ``sigmoid``, ``triangle``, ``superspike``, ``dspike``)."""
    try:
        cls = SURROGATES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}; choose one of {sorted(SURROGATES)}") from None
    return cls(**params)
