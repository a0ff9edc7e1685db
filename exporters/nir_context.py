"""The converter registry and the ``ExportContext`` converters build NIR nodes in (torch → NIR).

A converter is ``fn(ctx, module, name, inputs) -> output ids``: it gets the module, its qualified name and
the ids of the nodes whose *sum* is its input, adds nodes through ``ctx`` and returns the ids whose sum is
its output (a module can pass its input through, e.g. an identity shortcut, or return a fan-in). Node ids
are the torch modules' qualified names (the module whose output a node computes).

Converters are registered per module class (``register_converter``) and looked up along the module's MRO.
Leaf layers have their own (``exporters.nir_layers``); composite modules declare their structure
(``nasflow.snn.wiring.Wired``) and share one converter (``exporters.nir_wiring``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import nir
import numpy as np
from torch import nn

from exporters.core.conventions import Conventions
from exporters.core.errors import NIRFormatError
from exporters.core.kinds import node_type
from exporters.core.shapes import node_output_shape
from nasflow.snn.neurons import ALIF, CUBA, IF, LIF, Neuron

__all__ = [
    "Converter",
    "ExportContext",
    "ExportError",
    "LossyExportWarning",
    "converter_for",
    "join",
    "register_converter",
]

Converter = Callable[["ExportContext", nn.Module, str, list[str]], list[str]]
_CONVERTERS: dict[type | str, Converter] = {}


class ExportError(ValueError):
    """A module (named by its qualified name) that cannot be exported to NIR as asked."""


class LossyExportWarning(UserWarning):
    """The exported graph does not mean exactly what the torch module computes (named in the message)."""


def register_converter(module_type: type | str) -> Callable[[Converter], Converter]:
    """Decorator registering ``fn(ctx, module, name, inputs) -> output ids`` for ``module_type``.

    ``module_type`` is a class, or its qualified name ``"package.module.Class"`` (so that converters for
    classes outside ``nasflow.snn`` need no import of their module: exporters never import search code).
    Lookup follows the module's MRO, so a converter for a base class covers subclasses unless they
    have their own. Registering a type again replaces its converter (tests and extensions may override).
    """

    def wrap(fn: Converter) -> Converter:
        _CONVERTERS[module_type] = fn
        return fn

    return wrap


def converter_for(module: nn.Module) -> Converter | None:
    """The converter registered for the nearest class in ``type(module).__mro__``, if any."""
    for cls in type(module).__mro__:
        for key in (cls, f"{cls.__module__}.{cls.__qualname__}"):
            if key in _CONVERTERS:
                return _CONVERTERS[key]
    return None


def join(prefix: str, attr: str) -> str:
    """The qualified name of child ``attr`` of the module named ``prefix``."""
    return f"{prefix}.{attr}" if prefix else attr


@dataclass
class ExportContext:
    """What a converter may use while adding NIR nodes (one per ``to_nir`` call).

    * ``add_node(node_id, node, inputs, binary=False)``: add ``node`` fed by the sum of ``inputs``;
      its output shape is computed (and checked) at once; ``binary`` says its output is 0/1.
    * ``add_edge(src, dst)``: an extra edge, e.g. a recurrent one to a node added earlier (it becomes a
      back edge: delivered one step late).
    * ``convert(module, name, inputs)``: convert a child module; returns its output ids.
    * ``shape(ids)``, ``is_binary(ids)``: the output shape / binary-ness of a sum of nodes.
    * ``neuron_node(neuron, name, shape)``: the NIR node of a nasflow neuron (per-neuron arrays).
    * ``lossy(name, message)``: warn or fail, as the export options say.
    """

    dt: float = 1e-3
    allow_lossy: bool = False
    soft_reset: str = "warn"
    nodes: dict[str, nir.NIRNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    in_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    binary: set[str] = field(default_factory=set)
    thresholds: dict[str, str] = field(default_factory=dict)  # neuron id -> ">=" or ">"
    resets: dict[str, str] = field(default_factory=dict)  # neuron id -> "to_v_reset" or "subtract"
    v_init: dict[str, float] = field(default_factory=dict)  # neuron id -> initial membrane when not 0

    # -- graph building --------------------------------------------------------------------------
    def add_node(self, node_id: str, node: nir.NIRNode, inputs: Sequence[str], binary: bool = False,
                 in_shape: tuple[int, ...] | None = None) -> str:
        """Add ``node`` under ``node_id`` with edges from every id in ``inputs``; returns ``node_id``.

        ``in_shape`` gives the input shape of a node whose inputs all arrive later through ``add_edge``.
        """
        if node_id in self.nodes:
            raise ExportError(f"{node_id!r}: a NIR node with this id exists already (module names must be unique)")
        if isinstance(node, nir.Input):
            shp = tuple(int(s) for s in np.ravel(node.input_type["input"]))
        elif not inputs and in_shape is not None:
            shp = tuple(int(s) for s in in_shape)
        else:
            if not inputs:
                raise ExportError(f"{node_id!r}: a {node_type(node)} node needs at least one input")
            shp = self.shape(inputs, node_id)
        try:
            out = node_output_shape(node, node_id, shp) if not isinstance(node, nir.Input) else shp
        except NIRFormatError as err:
            raise ExportError(str(err)) from None
        self.nodes[node_id] = node
        self.shapes[node_id], self.in_shapes[node_id] = out, shp
        self.edges.extend((src, node_id) for src in inputs)
        if binary:
            self.binary.add(node_id)
        return node_id

    def add_edge(self, src: str, dst: str) -> None:
        """An extra edge between existing nodes (e.g. recurrence); shapes must match ``dst``'s input."""
        for end in (src, dst):
            if end not in self.nodes:
                raise ExportError(f"edge ({src!r}, {dst!r}): node {end!r} does not exist yet")
        if self.shapes[src] != self.in_shapes[dst]:
            raise ExportError(
                f"edge ({src!r}, {dst!r}): {src!r} outputs {self.shapes[src]} but {dst!r} takes {self.in_shapes[dst]}"
            )
        self.edges.append((src, dst))

    def convert(self, module: nn.Module, name: str, inputs: Sequence[str]) -> list[str]:
        """Convert ``module`` (qualified name ``name``) fed by the sum of ``inputs``; returns its output ids."""
        fn = converter_for(module)
        if fn is None:
            raise ExportError(
                f"{name or 'model'}: no NIR converter for {type(module).__name__}; register one with "
                "exporters.nir_export.register_converter"
            )
        return list(fn(self, module, name, list(inputs)))

    def child(self, parent: nn.Module, prefix: str, attr: str, inputs: Sequence[str]) -> list[str]:
        """Convert ``parent.<attr>`` under the name ``prefix.attr``."""
        return self.convert(getattr(parent, attr), join(prefix, attr), inputs)

    # -- queries ---------------------------------------------------------------------------------
    def shape(self, ids: Sequence[str], where: str = "") -> tuple[int, ...]:
        """Output shape of the sum of ``ids`` (all must agree)."""
        shapes = {self.shapes[i] for i in ids}
        if len(shapes) != 1:
            raise ExportError(f"{where or ids}: inputs of different shapes {sorted(shapes)} cannot be summed")
        return shapes.pop()

    def is_binary(self, ids: Sequence[str]) -> bool:
        """True if the sum of ``ids`` is known to be 0/1 (a single spiking source)."""
        return len(ids) == 1 and ids[0] in self.binary

    def lossy(self, name: str, message: str, allowed: bool) -> None:
        """Warn (``allowed``) or raise ``ExportError`` naming ``name``."""
        if not allowed:
            raise ExportError(f"{name}: {message}")
        warnings.warn(f"{name}: {message}", LossyExportWarning, stacklevel=3)

    # -- neurons ---------------------------------------------------------------------------------
    def neuron_node(self, neuron: Neuron, name: str, shape: tuple[int, ...]) -> nir.NIRNode:
        """The NIR node of a nasflow IF/LIF/PLIF/CUBA neuron with per-neuron parameter arrays."""
        full = lambda v: np.full(shape, float(v), dtype=np.float64)  # noqa: E731
        if isinstance(neuron, ALIF):
            self.lossy(name, "ALIF's adaptive threshold has no NIR node; exporting it as a plain LIF "
                       "(pass allow_lossy=True to accept)", self.allow_lossy)
        if neuron.v_reset is None:
            self.lossy(name, "soft reset (v_reset=None) has no NIR 1.0.8 node: recorded as "
                       "conventions['reset']='subtract' (nasflow's importer honours it; other tools reset to 0)",
                       self.soft_reset != "error")
        self.thresholds[name] = ">" if neuron.strict else ">="
        self.resets[name] = "subtract" if neuron.v_reset is None else "to_v_reset"
        v_reset = 0.0 if neuron.v_reset is None else neuron.v_reset
        th = full(neuron.v_threshold)
        if isinstance(neuron, CUBA):
            return self._cuba_node(neuron, name, full, th, v_reset)
        if v_reset != 0.0:
            self.v_init[name] = v_reset  # nasflow IF/LIF start at rest = v_reset
        if isinstance(neuron, LIF):  # PLIF and ALIF too
            k = float(neuron.inv_tau())  # PLIF: sigmoid(w), the trained value frozen
            tau_steps = 1.0 / k
            r = 1.0 if neuron.decay_input else tau_steps
            return nir.LIF(tau=full(tau_steps * self.dt), r=full(r), v_leak=full(neuron.leak_target),
                           v_threshold=th, v_reset=full(v_reset))
        if isinstance(neuron, IF):
            return nir.IF(r=full(1.0), v_threshold=th, v_reset=full(v_reset))
        raise ExportError(f"{name}: no NIR mapping for neuron type {type(neuron).__name__}")

    def _cuba_node(self, neuron: CUBA, name: str, full: Callable, th: np.ndarray, v_reset: float) -> nir.NIRNode:
        if neuron.du <= 0.0 or neuron.dv <= 0.0:
            raise ExportError(f"{name}: CUBA with du={neuron.du}, dv={neuron.dv} has an infinite NIR time constant; "
                              "use du, dv > 0")
        if v_reset != 0.0:
            self.lossy(name, "CUBA starts at v = 0 but resets to v_reset != 0; NIR has one rest value",
                       self.allow_lossy)
        return nir.CubaLIF(
            tau_syn=full(self.dt / neuron.du), tau_mem=full(self.dt / neuron.dv), r=full(1.0 / neuron.dv),
            v_leak=full(neuron.bias / neuron.dv), v_threshold=th, v_reset=full(v_reset), w_in=full(1.0 / neuron.du),
        )

    def forget_neuron(self, name: str) -> None:
        """Drop the conventions ``neuron_node`` recorded for ``name`` (its node was not added after all)."""
        self.thresholds.pop(name, None)
        self.resets.pop(name, None)

    # -- result ----------------------------------------------------------------------------------
    def conventions(self, strict_threshold: bool) -> Conventions:
        """The conventions of the neurons added so far: the most common comparison and reset, overrides
        per neuron for the others (``strict_threshold``: NIR's ``>`` for every neuron)."""
        threshold, threshold_overrides = ">", {}
        if not strict_threshold and self.thresholds:
            threshold, threshold_overrides = _common(self.thresholds)
        reset, reset_overrides = _common(self.resets) if self.resets else ("to_v_reset", {})
        return Conventions(
            dt=self.dt, threshold=threshold, reset=reset, v_init="v_reset" if self.v_init else "zero",
            threshold_overrides=threshold_overrides, reset_overrides=reset_overrides,
            v_init_nodes={k: float(v) for k, v in self.v_init.items()},
        )


def _common(per_node: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The most common value and the nodes that differ from it."""
    values = list(per_node.values())
    common = max(set(values), key=values.count)
    return common, {k: v for k, v in per_node.items() if v != common}
