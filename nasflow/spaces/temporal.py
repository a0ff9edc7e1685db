"""TPS's and HNS's search spaces: one network, and per neuron layer a candidate set for a dynamics parameter (TPS)
or for the neuron type (HNS: ``HybridSpace``, types from ``nasflow.snn.neuron_types.TYPES``).

The architecture is fixed (any registered model with neuron layers: AutoSNN, SNASNet, SpikeDHS); what is searched
is, per neuron layer, the value of each parameter in ``params`` (``nasflow.snn.tps.PARAMS``). A decoded point is a
``nasflow.snn.tps.TemporalArch``: ``layer:param=value`` items joined by ``;`` (for example
``stem.sn:decay=0.35;cells.0.nodes.0:decay=0.2``), which ``nasflow.snn.tps.apply_temporal`` writes into a freshly
built network of the same model, so a retrained network has exactly the searched dynamics (``nasflow train --set
model.temporal=...`` trains it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nasflow.snn.neuron_types import TYPES, check_types
from nasflow.snn.tps import DEFAULT_CANDIDATES, PARAMS

__all__ = ["HybridSpace", "TemporalSpace"]


def _build(model: str, arch: str | None, options: Mapping[str, Any], kwargs: dict[str, Any]) -> nn.Module:
    from nasflow.models import create_model

    extra = {} if arch is None else {"arch": arch}
    return create_model(model, **extra, **{**dict(options), **kwargs})


@dataclass(frozen=True)
class TemporalSpace:
    """A fixed network (``model``, ``arch`` and factory ``options``) and the parameters TPS searches in it, each
    with its candidate set (``candidates``; the defaults of ``nasflow.snn.tps.DEFAULT_CANDIDATES``)."""

    model: str = "spikedhs"
    arch: str | None = None
    params: tuple[str, ...] = ("decay",)
    candidates: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.params:
            raise ValueError("TPS needs at least one parameter to search (decay, alif.beta, alif.rho)")
        unknown = [p for p in (*self.params, *self.candidates) if p not in PARAMS]
        if unknown:
            raise ValueError(f"unknown TPS parameter(s) {unknown}; known: {', '.join(PARAMS)}")
        for p in self.params:
            if not self.candidate_set(p):
                raise ValueError(f"the candidate set of {p!r} is empty; give at least one value")

    @property
    def name(self) -> str:
        return "tps"

    def candidate_set(self, param: str) -> tuple[float, ...]:
        return tuple(float(v) for v in self.candidates.get(param, DEFAULT_CANDIDATES[param]))

    def build(self, **kwargs: Any) -> nn.Module:
        """The network (``create_model(model, arch=arch, **options, **kwargs)``; no ``arch``: the model's default)."""
        return _build(self.model, self.arch, self.options, kwargs)

    def fingerprint(self) -> dict[str, Any]:
        return {"space": self.name, "model": self.model, "arch": self.arch, "params": list(self.params),
                "candidates": {p: list(self.candidate_set(p)) for p in self.params}, "options": dict(self.options)}


@dataclass(frozen=True)
class HybridSpace:
    """A fixed network and, per neuron layer, the neuron types HNS chooses between (``types``, candidate order).

    A decoded point is a ``TemporalArch`` of ``layer:type=...`` items (``apply_temporal`` builds it)."""

    model: str = "spikedhs"
    arch: str | None = None
    types: tuple[str, ...] = TYPES
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", check_types(list(self.types)))

    @property
    def name(self) -> str:
        return "hns"

    def build(self, **kwargs: Any) -> nn.Module:
        """The network with the model's own neurons (``TemporalSpace.build``)."""
        return _build(self.model, self.arch, self.options, kwargs)

    def fingerprint(self) -> dict[str, Any]:
        return {"space": self.name, "model": self.model, "arch": self.arch, "types": list(self.types),
                "options": dict(self.options)}
