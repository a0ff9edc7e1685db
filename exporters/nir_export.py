"""torch → NIR for everything nasflow builds, through an extensible registry of module converters.

``to_nir(model)`` walks the module tree from the top, asking the converter registered for each module's
type (looked up along its MRO) to add NIR nodes. A converter gets an ``ExportContext``, the module, its
qualified name and the ids of the nodes whose *sum* is its input, and returns the ids whose sum is its
output (a module can pass its input through, e.g. an identity shortcut, or return a fan-in). Node ids are
the torch modules' qualified names (the module whose output a node computes), plus ``input`` and ``output``.

Numerics (discrete NIR semantics with step ``dt``, REFERENCE.md §6/§8):

* nasflow LIF, ``decay_input=True``: ``H = V + (X - (V - v_reset))/τ`` is NIR's Euler step with
  ``τ_NIR = τ·dt``, ``r = 1``, ``v_leak = v_reset``; ``decay_input=False``: ``H = V - (V - v_leak)/τ + X``
  is the same with ``r = τ``. PLIF: the same with its trained ``τ = 1/sigmoid(w)`` frozen.
* IF: ``r = 1``. CUBA (``u = u(1-du) + x``; ``v = v(1-dv) + u + bias``) is CubaLIF with
  ``τ_syn = dt/du``, ``w_in = 1/du``, ``τ_mem = dt/dv``, ``r = 1/dv``, ``v_leak = bias/dv``.
* nasflow fires on ``H >= v_th`` by default, NIR on ``>``: the comparison is recorded in
  ``metadata["conventions"]["threshold"]`` (``threshold_overrides`` per node when neurons differ) and
  ``nir_torch`` honours it; ``strict_threshold=True`` exports ``>`` (identical except on exact ties).
* Soft reset (``v_reset=None``) has no NIR 1.0.8 equivalent: it warns (``LossyExportWarning``) and is
  recorded as ``conventions["reset"] = "subtract"`` (honoured by ``nir_torch``), or fails with
  ``soft_reset="error"``. ALIF cannot be expressed and fails unless ``allow_lossy=True`` (then exported
  as a plain LIF, with a warning).
* Conv/Linear layers are exported with their eval-mode BatchNorm folded (``nasflow.snn.layers.fold_bn``,
  running statistics), whatever the module's training flag.
* Spiking max-pool is ``SumPool2d → Threshold(0.5)`` (exact on binary input; non-binary input fails),
  average pools are ``AvgPool2d``, global average pooling an ``AvgPool2d`` over the whole map, the voting
  layer an ``Affine`` with fixed weights ``1/group``, and a residual an edge into the neuron (fan-in = sum).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from exporters.graph import NIRFormatError, _node_shape, infer_shapes, node_type
from nasflow.snn.layers import (
    DirectEncoder,
    Flatten,
    SpikingAvgPool2d,
    SpikingMaxPool2d,
    TimeDistributed,
    VotingLayer,
    fold_bn,
)
from nasflow.snn.neurons import ALIF, CUBA, IF, LIF, Neuron

__all__ = [
    "ExportContext",
    "ExportError",
    "LossyExportWarning",
    "converter_for",
    "register_converter",
    "to_nir",
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


def _arr(x: Any) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


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
    def add_node(self, node_id: str, node: nir.NIRNode, inputs: Sequence[str], binary: bool = False) -> str:
        """Add ``node`` under ``node_id`` with edges from every id in ``inputs``; returns ``node_id``."""
        if node_id in self.nodes:
            raise ExportError(f"{node_id!r}: a NIR node with this id exists already (module names must be unique)")
        if isinstance(node, nir.Input):
            shp = tuple(int(s) for s in np.ravel(node.input_type["input"]))
        else:
            if not inputs:
                raise ExportError(f"{node_id!r}: a {node_type(node)} node needs at least one input")
            shp = self.shape(inputs, node_id)
        try:
            out = _node_shape(node, node_id, shp) if not isinstance(node, nir.Input) else shp
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
        return self.convert(getattr(parent, attr), _join(prefix, attr), inputs)

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

    # -- result ----------------------------------------------------------------------------------
    def conventions(self, strict_threshold: bool) -> dict[str, Any]:
        """``metadata["conventions"]`` for the neurons added so far."""
        conv: dict[str, Any] = {"reset": "to_v_reset", "threshold": ">", "v_init": "zero"}
        if not strict_threshold and self.thresholds:
            values = list(self.thresholds.values())
            common = max(set(values), key=values.count)
            conv["threshold"] = common
            over = {k: v for k, v in self.thresholds.items() if v != common}
            if over:
                conv["threshold_overrides"] = over
        if self.resets:
            values = list(self.resets.values())
            conv["reset"] = max(set(values), key=values.count)
            over = {k: v for k, v in self.resets.items() if v != conv["reset"]}
            if over:
                conv["reset_overrides"] = over
        if self.v_init:
            conv["v_init"] = "v_reset"
            conv["v_init_nodes"] = {k: float(v) for k, v in self.v_init.items()}
        return conv


def _join(prefix: str, attr: str) -> str:
    return f"{prefix}.{attr}" if prefix else attr


# ------------------------------------------------------------------------------------------- converters


def _synaptic_node(layer: nn.Module, name: str, in_shape: tuple[int, ...]) -> nir.NIRNode:
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ExportError(f"{name}: Conv2d padding_mode={layer.padding_mode!r} has no NIR equivalent (use 'zeros')")
        bias = _arr(layer.bias) if layer.bias is not None else np.zeros(layer.out_channels)
        padding = layer.padding if isinstance(layer.padding, str) else tuple(int(p) for p in layer.padding)
        return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=_arr(layer.weight), stride=tuple(layer.stride),
                          padding=padding, dilation=tuple(layer.dilation), groups=int(layer.groups), bias=bias)
    if isinstance(layer, nn.Linear):
        bias = _arr(layer.bias) if layer.bias is not None else np.zeros(layer.out_features)
        return nir.Affine(weight=_arr(layer.weight), bias=bias)
    raise ExportError(f"{name}: cannot export {type(layer).__name__} as a synaptic layer (Conv2d or Linear expected)")


def _fold(module: nn.Module, name: str) -> nn.Module:
    """The single synaptic layer of a wrapper's module, eval-mode BatchNorm folded in."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return module
    if isinstance(module, nn.Sequential):
        layers = [m for m in module if not isinstance(m, nn.Identity)]
        if len(layers) == 1:
            return _fold(layers[0], name)
        if len(layers) == 2 and isinstance(layers[1], (nn.BatchNorm1d, nn.BatchNorm2d)):
            return fold_bn(layers[0], layers[1])
    raise ExportError(
        f"{name}: expected Conv2d/Linear, optionally followed by BatchNorm, got {type(module).__name__}"
    )


def _cached_synaptic_node(inner: nn.Module, name: str, in_shape: tuple[int, ...]) -> nir.NIRNode:
    """The folded NIR node of ``inner``, rebuilt only when a parameter or BN statistic changed.

    A search exports hundreds of candidates that share the supernet's layers; folding BN anew for
    each costs more than evaluating the rest of the hardware model. NIR nodes are never mutated here.
    """
    tensors = [*inner.parameters(), *inner.buffers()]
    key = (name, tuple(in_shape), tuple((t.data_ptr(), t._version) for t in tensors))
    cached = getattr(inner, "_nasflow_nir_node", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    node = _synaptic_node(_fold(inner, name), name, in_shape)
    inner._nasflow_nir_node = (key, node)  # plain attribute: not a buffer, not in state_dict
    return node


@register_converter(TimeDistributed)
@register_converter(DirectEncoder)
def _convert_wrapper(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    # DirectEncoder: the deployed graph applies the layer to the analog input at every step.
    inner = module.module
    if isinstance(inner, (nn.Sequential, nn.Conv2d, nn.Linear)):
        return [ctx.add_node(name, _cached_synaptic_node(inner, name, ctx.shape(inputs, name)), inputs)]
    return ctx.convert(inner, _join(name, "module"), inputs)


@register_converter(nn.Conv2d)
@register_converter(nn.Linear)
def _convert_layer(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    return [ctx.add_node(name, _synaptic_node(module, name, ctx.shape(inputs, name)), inputs)]


@register_converter(Neuron)
def _convert_neuron(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    shape = ctx.shape(inputs, name)
    return [ctx.add_node(name, ctx.neuron_node(module, name, shape), inputs, binary=True)]


@register_converter(SpikingMaxPool2d)
def _convert_maxpool(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    if isinstance(module, SpikingAvgPool2d):
        return _convert_avgpool(ctx, module, name, inputs)
    if not ctx.is_binary(inputs):
        raise ExportError(f"{name}: max-pooling is exported as SumPool2d > 0.5, exact only on binary (spike) input; "
                          f"its input {inputs} is not known to be binary")
    k, s = _pair(module.kernel_size), _pair(module.stride)
    pool = ctx.add_node(f"{name}.sum", nir.SumPool2d(kernel_size=np.array(k), stride=np.array(s),
                                                    padding=np.zeros(2, dtype=int)), inputs)
    thr = nir.Threshold(threshold=np.full(ctx.shapes[pool], 0.5))
    return [ctx.add_node(name, thr, [pool], binary=True)]


def _convert_avgpool(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    k, s = _pair(module.kernel_size), _pair(module.stride)
    node = nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.zeros(2, dtype=int))
    return [ctx.add_node(name, node, inputs)]


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


@register_converter(nn.AvgPool2d)
def _convert_torch_avgpool(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    if _pair(module.padding) != (0, 0) or module.ceil_mode:
        raise ExportError(f"{name}: AvgPool2d with padding or ceil_mode is not supported")
    return _convert_avgpool(ctx, module, name, inputs)


@register_converter(Flatten)
@register_converter(nn.Flatten)
def _convert_flatten(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    shape = ctx.shape(inputs, name)
    if isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) != (1, -1):
        raise ExportError(f"{name}: only Flatten(start_dim=1, end_dim=-1) (all non-batch dims) is supported")
    node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
    return [ctx.add_node(name, node, inputs, binary=ctx.is_binary(inputs))]


@register_converter(VotingLayer)
def _convert_vote(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    (n_in,) = ctx.shape(inputs, name)
    g = module.group
    if n_in % g:
        raise ExportError(f"{name}: VotingLayer(group={g}) needs an input size divisible by {g}, got {n_in}")
    w = np.kron(np.eye(n_in // g), np.full((1, g), 1.0 / g))
    return [ctx.add_node(name, nir.Affine(weight=w, bias=np.zeros(n_in // g)), inputs)]


@register_converter(nn.Identity)
def _convert_identity(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    return list(inputs)


@register_converter(nn.Sequential)
def _convert_sequential(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    for child_name, child in module.named_children():
        inputs = ctx.convert(child, _join(name, child_name), inputs)
    return inputs


def _register_nasflow_blocks() -> None:
    """Converters for nasflow's blocks, stems, networks and the supernet's choice block; the classes
    outside ``nasflow.snn`` are named, not imported (exporters never import search code)."""
    from nasflow.snn.blocks import SkipBlock, SpikingConvBlock, SpikingInvertedBottleneck, SpikingResidualBlock

    def chain(*attrs: str) -> Converter:
        def fn(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
            for attr in attrs:
                inputs = ctx.child(module, name, attr, inputs)
            return inputs

        return fn

    register_converter(SpikingConvBlock)(chain("conv1", "sn1", "conv2", "sn2"))
    register_converter(SpikingInvertedBottleneck)(chain("expand", "sn1", "dw", "sn2", "project", "sn3"))
    register_converter("nasflow.models.StemStage")(chain("pool", "conv", "sn"))

    @register_converter(SkipBlock)
    def _skip(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
        if module.proj is None:
            return list(inputs)
        return ctx.child(module, name, "sn", ctx.child(module, name, "proj", inputs))

    @register_converter(SpikingResidualBlock)
    def _srb(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
        h = ctx.child(module, name, "sn1", ctx.child(module, name, "conv1", inputs))
        main = ctx.child(module, name, "conv2", h)
        short = ctx.child(module, name, "shortcut", inputs)
        # The shortcut meets the second neuron's input current: fan-in = sum.
        return ctx.child(module, name, "sn2", main + short)

    @register_converter("nasflow.train.supernet.ChoiceBlock")
    def _choice(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
        return ctx.convert(module.choices[module.active], _join(name, f"choices.{module.active}"), inputs)

    @register_converter("nasflow.models.GlobalAvgPool")
    def _gap(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
        c, h, w = ctx.shape(inputs, name)
        node = nir.AvgPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]), padding=np.zeros(2, dtype=int))
        return [ctx.add_node(name, node, inputs)]

    @register_converter("nasflow.models.AutoSNNNet")
    def _autosnn(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
        h = ctx.child(module, name, "stem_sn", ctx.child(module, name, "stem", inputs))
        for attr in ("stem_layers", "features", "gap"):
            if getattr(module, attr) is not None:
                h = ctx.child(module, name, attr, h)
        for attr in ("flatten", "fc", "fc_sn", "vote"):
            h = ctx.child(module, name, attr, h)
        return h


_register_nasflow_blocks()


# ------------------------------------------------------------------------------------------------ entry


def _sanitize(value: Any) -> Any:
    """Metadata HDF5 can store: no None, no bools, no lists of strings."""
    if isinstance(value, dict):
        return {str(k): _sanitize(v) for k, v in value.items() if v is not None}
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return np.asarray(value)
        return ",".join(str(v) for v in value)
    return value


def to_nir(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    dt: float = 1e-3,
    *,
    strict_threshold: bool = False,
    allow_lossy: bool = False,
    soft_reset: str = "warn",
    validate: bool = True,
) -> nir.NIRGraph:
    """Export a nasflow model (or any module tree with registered converters) to a NIR graph.

    ``input_shape`` (without batch/time) defaults to ``model.in_shape``. ``dt`` (seconds per step) is
    stored in ``metadata["dt"]``; time constants are ``τ_steps·dt``. ``strict_threshold`` exports NIR's
    ``>`` instead of the model's ``>=`` (differs only on exact ties); ``allow_lossy`` exports ALIF as LIF;
    ``soft_reset`` is ``"warn"`` or ``"error"``. ``validate=False`` skips the final shape check of every node
    (for hot loops exporting many candidates of an already-validated space). Raises ``ExportError`` naming the
    module that fails.
    """
    if soft_reset not in ("warn", "error"):
        raise ValueError(f"soft_reset must be 'warn' or 'error', got {soft_reset!r}")
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive number of seconds, got {dt}")
    if input_shape is None:
        input_shape = getattr(model, "in_shape", None)
        if input_shape is None:
            raise ValueError(f"{type(model).__name__} has no in_shape: pass input_shape=(C, H, W) or (N,)")
    ctx = ExportContext(dt=float(dt), allow_lossy=allow_lossy, soft_reset=soft_reset)
    shape = tuple(int(s) for s in input_shape)
    ctx.add_node("input", nir.Input(input_type={"input": np.array(shape)}), [], binary=bool(getattr(
        model, "event_input", False)))
    with torch.no_grad():
        outs = ctx.convert(model, "", ["input"])
    out_shape = ctx.shape(outs, "output")
    ctx.add_node("output", nir.Output(output_type={"output": np.array(out_shape)}), outs)
    metadata: dict[str, Any] = {
        "dt": float(dt),
        "conventions": ctx.conventions(strict_threshold),
        "producer": "nasflow",
    }
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        metadata["steps"] = int(config.get("steps", 0)) or None
        metadata["input_encoding"] = "events" if config.get("event_input") else "direct"
        metadata["model_arch"] = ",".join(config.get("arch", []))
    graph = nir.NIRGraph(nodes=ctx.nodes, edges=ctx.edges, metadata=_sanitize(metadata), type_check=False)
    if validate:
        infer_shapes(graph)  # every node consistent (raises naming the node otherwise)
    return graph


import exporters.cells_export  # noqa: E402, F401  (SNASNet converters, registered by class name)
