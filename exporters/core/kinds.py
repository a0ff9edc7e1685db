"""The node-kind table: what every NIR node type is, in one place (REFERENCE.md §6, §8).

Every consumer (readers, the torch reference, Lava, netx, the hardware models, spike accounting) asks
this table instead of keeping its own list, so that a node type means the same thing everywhere:

* ``neuron``: a population with per-element state or a firing rule (IF, LIF, CubaLIF, LI, I, CubaLI) or a
  stateless firing rule (``Threshold``: the spiking half of a max-pool). Chips and Lava place them on cores;
* ``linear``: weight nodes (Affine, Linear, Conv1d, Conv2d) and the structural linear maps (Scale, Flatten,
  pooling), which collapse into the connections between populations;
* ``structural``: Input, Output, Delay and nested graphs.

``spiking`` kinds emit 0/1; ``fires`` kinds are the stateful neurons that fire and reset (the spikes that
reports count and that carry ``v_reset`` since nir 1.0.6); ``timed`` kinds need the graph's ``dt``.

NIR has no ReLU node. nasflow writes an analog ReLU layer (HNS's hybrid networks) as an existing node, an ``LI``
that passes its input through (``τ = dt``, ``r = 1``, ``v_leak = 0``), marked with the node metadata
``{"nasflow.activation": "relu"}`` (``ACTIVATION_KEY``). ``kind_of`` gives such a node the kind ``ReLU`` (a
non-spiking, stateless neuron population: ``y_t = max(0, x_t)``); a reader that ignores the metadata sees a
linear analog neuron. Consumers refuse what they cannot run by that kind's name, never treating it as spiking.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir

from exporters.core.errors import NIRFormatError

__all__ = [
    "ACTIVATION_KEY",
    "ANALOG_KINDS",
    "KINDS",
    "KNOWN_TYPES",
    "NodeKind",
    "FIRING_TYPES",
    "LINEAR_TYPES",
    "NEURON_TYPES",
    "POOL_TYPES",
    "SPIKING_TYPES",
    "STATELESS_TYPES",
    "TIMED_TYPES",
    "WEIGHT_TYPES",
    "activation",
    "kind_of",
    "node_type",
]


@dataclass(frozen=True)
class NodeKind:
    """Facts about one NIR node type."""

    name: str
    category: str  # "neuron" | "linear" | "structural"
    spiking: bool = False  # output is 0/1
    fires: bool = False  # stateful neuron that fires and resets (counted as spikes)
    weighted: bool = False  # carries a weight matrix or kernel (a synapse on chip)
    pooling: bool = False
    elementwise: bool = False  # output shape = input shape
    timed: bool = False  # needs dt (time constants or delays)


_TABLE = (
    NodeKind("Input", "structural"),
    NodeKind("Output", "structural", elementwise=True),
    NodeKind("Delay", "structural", elementwise=True, timed=True),
    NodeKind("NIRGraph", "structural"),
    NodeKind("Affine", "linear", weighted=True),
    NodeKind("Linear", "linear", weighted=True),
    NodeKind("Conv1d", "linear", weighted=True),
    NodeKind("Conv2d", "linear", weighted=True),
    NodeKind("Scale", "linear", elementwise=True),
    NodeKind("Flatten", "linear"),
    NodeKind("SumPool2d", "linear", pooling=True),
    NodeKind("AvgPool2d", "linear", pooling=True),
    NodeKind("Threshold", "neuron", spiking=True, elementwise=True),
    NodeKind("IF", "neuron", spiking=True, fires=True, elementwise=True),
    NodeKind("LIF", "neuron", spiking=True, fires=True, elementwise=True, timed=True),
    NodeKind("CubaLIF", "neuron", spiking=True, fires=True, elementwise=True, timed=True),
    NodeKind("I", "neuron", elementwise=True),
    NodeKind("LI", "neuron", elementwise=True, timed=True),
    NodeKind("CubaLI", "neuron", elementwise=True, timed=True),
)

#: Every node type nasflow reads, by NIR type name.
KINDS: dict[str, NodeKind] = {k.name: k for k in _TABLE}
#: Node metadata key naming the analog activation a node stands for, and the kinds it selects (by value).
ACTIVATION_KEY = "nasflow.activation"
ANALOG_KINDS: dict[str, NodeKind] = {"relu": NodeKind("ReLU", "neuron", elementwise=True)}
_ANALOG_CARRIER = "LI"
KNOWN_TYPES = tuple(KINDS)
NEURON_TYPES = tuple(k.name for k in _TABLE if k.category == "neuron")
SPIKING_TYPES = tuple(k.name for k in _TABLE if k.spiking)
FIRING_TYPES = tuple(k.name for k in _TABLE if k.fires)
LINEAR_TYPES = tuple(k.name for k in _TABLE if k.category == "linear")
WEIGHT_TYPES = tuple(k.name for k in _TABLE if k.weighted)
POOL_TYPES = tuple(k.name for k in _TABLE if k.pooling)
#: Linear nodes without weights between a spike source and a weight node (they do not occupy a chip).
STATELESS_TYPES = tuple(k for k in LINEAR_TYPES if k not in WEIGHT_TYPES)
TIMED_TYPES = tuple(k.name for k in _TABLE if k.timed)


def node_type(node: nir.NIRNode) -> str:
    """NIR type name of a node (the class name, e.g. ``"LIF"``)."""
    return type(node).__name__


def activation(node: nir.NIRNode) -> str | None:
    """The analog activation a node's metadata names (``ACTIVATION_KEY``), or None."""
    meta = getattr(node, "metadata", None)
    value = meta.get(ACTIVATION_KEY) if isinstance(meta, dict) else None
    if isinstance(value, bytes):
        value = value.decode()
    return None if value is None else str(value)


def kind_of(node: nir.NIRNode | str, node_id: str | None = None) -> NodeKind:
    """The table entry of ``node`` (a node or a type name; an activation-marked ``LI`` is its analog kind);
    ``NIRFormatError`` naming the node if unknown."""
    where = f"node {node_id!r}: " if node_id is not None else ""
    name = node if isinstance(node, str) else node_type(node)
    act = None if isinstance(node, str) else activation(node)
    if act is not None:
        if name != _ANALOG_CARRIER or act not in ANALOG_KINDS:
            raise NIRFormatError(f"{where}metadata {ACTIVATION_KEY}={act!r} on a {name} node: nasflow reads "
                                 f"{', '.join(ANALOG_KINDS)} on {_ANALOG_CARRIER} nodes only")
        return ANALOG_KINDS[act]
    kind = KINDS.get(name)
    if kind is None:
        raise NIRFormatError(f"{where}unknown NIR node type {name!r}; supported: {', '.join(KNOWN_TYPES)}")
    return kind
