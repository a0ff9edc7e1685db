"""TPS's search space: one network, and per neuron layer a candidate set for a dynamics parameter.

The architecture is fixed (any registered model with neuron layers: AutoSNN, SNASNet, SpikeDHS); what is searched
is, per neuron layer, the value of each parameter in ``params`` (``nasflow.snn.tps.PARAMS``). A decoded point is a
``TemporalArch``: ``layer:param=value`` items joined by ``;`` (e.g. ``stem.sn:decay=0.35;cells.0.nodes.0:decay=0.2``),
which ``apply_temporal`` writes into a freshly built network of the same model, so a retrained network has exactly
the searched dynamics (and ``nasflow train --set model.temporal=...`` trains it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nasflow.snn.tps import DEFAULT_CANDIDATES, PARAMS, accepts, get_param, set_param

__all__ = ["TemporalArch", "TemporalSpace", "apply_temporal", "neuron_layers", "parse_temporal", "read_temporal"]


def neuron_layers(model: nn.Module, param: str) -> list[str]:
    """Names of ``model``'s neuron modules that have ``param``, in module order."""
    if param not in PARAMS:
        raise ValueError(f"unknown TPS parameter {param!r}; known: {', '.join(PARAMS)}")
    return [name for name, m in model.named_modules() if name and accepts(m, param)]


@dataclass(frozen=True)
class TemporalArch:
    """Per-layer parameter values: ``((layer, param, value), ...)``; ``str`` gives the ``;``-joined form."""

    values: tuple[tuple[str, str, float], ...]

    def __str__(self) -> str:
        return ";".join(f"{layer}:{param}={value:g}" for layer, param, value in self.values)

    def as_dict(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for layer, param, value in self.values:
            out.setdefault(layer, {})[param] = value
        return out


def parse_temporal(text: str) -> TemporalArch:
    """The ``TemporalArch`` that ``str`` wrote; a ``ValueError`` naming the malformed item otherwise."""
    values = []
    for item in (p.strip() for p in str(text).split(";")):
        if not item:
            continue
        layer, sep, rest = item.rpartition(":")
        param, eq, value = rest.partition("=")
        if not sep or not eq or not layer:
            raise ValueError(f"temporal item {item!r} must read 'layer:param=value'")
        if param not in PARAMS:
            raise ValueError(f"temporal item {item!r}: unknown parameter {param!r}; known: {', '.join(PARAMS)}")
        try:
            values.append((layer, param, float(value)))
        except ValueError:
            raise ValueError(f"temporal item {item!r}: {value!r} is not a number") from None
    return TemporalArch(tuple(values))


def apply_temporal(model: nn.Module, arch: TemporalArch | str) -> nn.Module:
    """Write ``arch``'s values into ``model``'s neuron layers (in place; returns ``model``)."""
    arch = parse_temporal(arch) if isinstance(arch, str) else arch
    modules = dict(model.named_modules())
    for layer, param, value in arch.values:
        neuron = modules.get(layer)
        if neuron is None or not accepts(neuron, param):
            known = ", ".join(neuron_layers(model, param)[:8])
            raise ValueError(f"temporal item {layer}:{param}: the model has no neuron layer {layer!r} with "
                             f"{param!r} (neuron layers: {known}, ...)")
        set_param(neuron, param, value)  # type: ignore[arg-type]
    return model


def read_temporal(model: nn.Module, params: Sequence[str]) -> TemporalArch:
    """The current values of ``params`` in every neuron layer that has them."""
    modules = dict(model.named_modules())
    return TemporalArch(tuple((layer, p, round(get_param(modules[layer], p), 6))  # type: ignore[arg-type]
                              for p in params for layer in neuron_layers(model, p)))


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
        from nasflow.models import create_model

        arch = {} if self.arch is None else {"arch": self.arch}
        return create_model(self.model, **arch, **{**dict(self.options), **kwargs})

    def fingerprint(self) -> dict[str, Any]:
        return {"space": self.name, "model": self.model, "arch": self.arch, "params": list(self.params),
                "candidates": {p: list(self.candidate_set(p)) for p in self.params}, "options": dict(self.options)}
