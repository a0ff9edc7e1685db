"""Neuron *types* a layer can take (HNS, paper §4.4): spiking LIF, spiking ALIF, or an analog ReLU.

``AnalogReLU`` is the non-spiking neuron of a hybrid network: at every step its output is ``max(0, x_t)``
(stateless, float values, no threshold). Its consumers therefore do MACs on its non-zero outputs where a spiking
layer's consumers do ACs on its spikes (``nasflow.snn.activity`` counts them so), and exported to NIR it is an
``LI`` node that passes its input through plus the node metadata ``{"nasflow.activation": "relu"}``
(``exporters.core.kinds``), which stock ``nir.read`` reads and nasflow's readers rectify.

``make_type(reference, kind)`` builds a layer of ``kind`` that keeps everything the reference layer fixes
(threshold, reset, comparison, surrogate, time constant, decay_input); ``set_type`` replaces a layer of a model
in place. The type of a decoded layer is written ``layer:type=relu`` in a ``nasflow.snn.tps.TemporalArch``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from nasflow.snn.neurons import ALIF, LIF, PLIF, Neuron

__all__ = ["ALIF_DEFAULTS", "TYPES", "AnalogReLU", "check_types", "make_type", "set_type", "type_layers", "type_of"]

TYPES = ("lif", "alif", "relu")
"""The neuron types HNS chooses between, in candidate order."""

ALIF_DEFAULTS = {"beta": 0.2, "rho": 0.9}
"""Adaptation strength and decay of an ALIF layer made from a LIF layer (``nasflow.snn.neurons.ALIF``'s own)."""


class AnalogReLU(nn.Module):
    """A non-spiking neuron layer: ``y_t = max(0, x_t)`` at every step of a time-first ``[T, B, ...]`` input."""

    spiking = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"AnalogReLU expects time-first input [T, B, ...], got shape {tuple(x.shape)}")
        return torch.relu(x)

    def reset(self) -> None:
        """Stateless: nothing to forget (the same call as a neuron's, so resets treat every layer alike)."""


def type_of(module: nn.Module) -> str | None:
    """``"alif"``, ``"lif"`` (LIF and PLIF), ``"relu"`` (``AnalogReLU``), or None for any other module."""
    if isinstance(module, ALIF):
        return "alif"
    if isinstance(module, LIF):
        return "lif"
    if isinstance(module, AnalogReLU):
        return "relu"
    return None


def check_types(types: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``types`` as a tuple, or a ``ValueError`` naming an unknown type or an empty set."""
    types = tuple(str(t).strip().lower() for t in types)
    if not types:
        raise ValueError(f"the set of neuron types is empty; give at least one of {', '.join(TYPES)}")
    bad = [t for t in types if t not in TYPES]
    if bad:
        raise ValueError(f"unknown neuron type(s) {bad}; known: {', '.join(TYPES)}")
    if len(set(types)) != len(types):
        raise ValueError(f"neuron types {list(types)} repeat a type")
    return types


def make_type(reference: nn.Module, kind: str) -> nn.Module:
    """A fresh layer of ``kind`` with the reference layer's fixed settings (a copy when it already is one)."""
    check_types((kind,))
    if kind == "relu":
        return AnalogReLU()
    if type_of(reference) == kind:
        return copy.deepcopy(reference)
    if not isinstance(reference, Neuron):
        raise ValueError(f"a {kind} layer takes its threshold and reset from a spiking layer; "
                         f"{type(reference).__name__} has none")
    common = {"v_threshold": reference.v_threshold, "v_reset": reference.v_reset,
              "detach_reset": reference.detach_reset, "strict": reference.strict,
              "surrogate": copy.deepcopy(reference.surrogate)}
    if isinstance(reference, LIF):
        tau = reference.tau_value if isinstance(reference, PLIF) else reference.tau
        common.update(tau=float(tau), decay_input=reference.decay_input)
    if kind == "alif":
        return ALIF(**{"tau": 2.0, **common}, **ALIF_DEFAULTS)
    return LIF(**{"tau": 2.0, **common})


def type_layers(model: nn.Module) -> list[str]:
    """Names of ``model``'s layers that have a type (LIF, PLIF, ALIF, AnalogReLU), in module order."""
    return [name for name, m in model.named_modules() if name and type_of(m) is not None]


def set_type(model: nn.Module, layer: str, kind: str) -> nn.Module:
    """Replace ``model``'s layer ``layer`` by a layer of ``kind`` (``make_type``); returns the new layer."""
    try:
        old = model.get_submodule(layer)
    except AttributeError:
        old = None
    if old is None or type_of(old) is None:
        known = ", ".join(type_layers(model)[:8])
        raise ValueError(f"the model has no neuron layer {layer!r} whose type could change (layers: {known}, ...)")
    if type_of(old) == kind:
        return old
    new = make_type(old, kind)
    parent, _, child = layer.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new.to(_device_of(old, model)))
    return new


def _device_of(module: nn.Module, model: nn.Module) -> torch.device:
    for p in (*module.parameters(), *model.parameters()):
        return p.device
    return torch.device("cpu")
