"""HNS's candidate neurons (paper §4.4): one layer, several neuron *types*, mixed by ``softmax(γ)``.

An ``HNSNeuron`` holds one layer of each type in ``types`` (``nasflow.snn.neuron_types``: LIF, ALIF, analog ReLU),
all made from the layer it replaces, so they share its threshold, reset and time constant. While it searches, every
type runs on the *same* input current and the output is ``Σ_k softmax(γ)_k Y_k`` (spikes for LIF/ALIF, values for
ReLU); each forward also records, without gradient, every type's activity (spikes per neuron and step, or the
ReLU's non-zero fraction), which the energy loss prices (``nasflow.strategies.hns``). ``commit()`` keeps the type of
largest ``γ`` and resets ``γ``; outside a search the layer is the committed type alone. ``allowed`` restricts a
layer to some of the types (a ReLU in front of a spiking max-pool has no NIR form, for example): a type that is
not allowed never runs, has weight 0 and is never committed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from nasflow.snn.neuron_types import TYPES, check_types, make_type, type_of

__all__ = ["HNSNeuron"]


class HNSNeuron(nn.Module):
    """A layer whose neuron type HNS searches over ``types`` (module docstring)."""

    def __init__(self, neuron: nn.Module, types: Sequence[str] = TYPES, allowed: Sequence[str] | None = None) -> None:
        super().__init__()
        self.types = check_types(list(types))
        allowed = self.types if allowed is None else tuple(allowed)
        if not allowed or any(t not in self.types for t in allowed):
            raise ValueError(f"allowed types {list(allowed)} must be a non-empty subset of {list(self.types)}")
        self.allowed = tuple(t for t in self.types if t in allowed)
        self.candidates = nn.ModuleList(make_type(neuron, t) for t in self.types)
        self.register_buffer("_mask", torch.tensor([0.0 if t in self.allowed else -math.inf for t in self.types]),
                             persistent=False)
        own = type_of(neuron)
        self.choice = self.types.index(own) if own in self.allowed else self.types.index(self.allowed[0])
        self.gamma = nn.Parameter(torch.zeros(len(self.types)))
        self.searching = True
        self.history: list[str] = [self.type]
        self._activity = torch.zeros(len(self.types), dtype=torch.float64)
        self._passes = 0

    @property
    def type(self) -> str:
        """The committed type."""
        return self.types[self.choice]

    def current(self) -> nn.Module:
        """The layer of the committed type."""
        return self.candidates[self.choice]

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.gamma + self._mask.to(self.gamma.dtype), 0)

    def start(self) -> None:
        """Enter the search: every type runs, outputs mixed by ``softmax(γ)``."""
        self.searching = True

    def stop(self) -> None:
        """Leave the search: the committed type alone."""
        self.searching = False

    @torch.no_grad()
    def commit(self) -> str:
        """Keep the type of largest ``γ`` (ties: the first), reset ``γ``; returns the type."""
        self.choice = int(torch.argmax(self.gamma + self._mask.to(self.gamma.dtype)))
        self.gamma.zero_()
        self.history.append(self.type)
        return self.type

    def set_type(self, kind: str) -> None:
        """Commit ``kind`` directly (resuming a search)."""
        self.choice = self.types.index(kind)

    def take_activity(self) -> list[float] | None:
        """Each type's mean activity over the searching passes since the last call (None if there were none)."""
        if self._passes == 0:
            return None
        out = (self._activity / self._passes).tolist()
        self._activity.zero_()
        self._passes = 0
        return out

    def reset(self) -> None:
        for c in self.candidates:
            if hasattr(c, "reset"):
                c.reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.searching:
            return self.current()(x)
        outs = {k: c(x) for k, c in enumerate(self.candidates) if self.types[k] in self.allowed}
        with torch.no_grad():
            self._activity += torch.tensor([int(torch.count_nonzero(outs[k])) / outs[k].numel() if k in outs else 0.0
                                            for k in range(len(self.types))], dtype=torch.float64)
            self._passes += 1
        w = self.weights().to(x.dtype)
        return sum(w[k] * o for k, o in outs.items())

    def extra_repr(self) -> str:
        return f"types={list(self.allowed)}, type={self.type}, searching={self.searching}"
