"""torch → NIR for everything nasflow builds, through an extensible registry of module converters.

``to_nir(model)`` walks the module tree from the top, asking the converter registered for each module's
type (looked up along its MRO) to add NIR nodes. A converter gets an ``ExportContext``, the module, its
qualified name and the ids of the nodes whose *sum* is its input, and returns the ids whose sum is its
output (a module can pass its input through, e.g. an identity shortcut, or return a fan-in). Node ids are
the torch modules' qualified names (the module whose output a node computes), plus ``input`` and ``output``.
Leaf layers have their own converters (``exporters.nir_layers``); composite modules (``nasflow.snn.wiring.Wired``:
blocks, cells, networks) all go through one converter that reads the same ``wiring()`` their ``forward``
runs (``exporters.nir_wiring``). ``register_converter`` adds or overrides a converter for any module class.

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
  running statistics), whatever the module's training flag; pools, flatten and voting as ``exporters.nir_layers``
  says; a residual is an edge into the neuron (fan-in = sum), a recurrent cell's backward edge a NIR back edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from exporters import nir_layers, nir_wiring  # noqa: F401  (they register the layer and wiring converters)
from exporters.core.shapes import infer_shapes
from exporters.nir_context import (
    ExportContext,
    ExportError,
    LossyExportWarning,
    converter_for,
    register_converter,
)

__all__ = [
    "ExportContext",
    "ExportError",
    "LossyExportWarning",
    "converter_for",
    "register_converter",
    "to_nir",
]


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
    module that fails. A model whose last stage has no NIR form (stereo matching on the host) names the part
    a chip runs with ``chip_network()``; that part is exported, with the model's metadata.
    """
    outer = model
    chip = getattr(model, "chip_network", None)
    if callable(chip):
        model = chip()
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
    metadata: dict[str, Any] = {**ctx.conventions(strict_threshold).to_metadata(), "producer": "nasflow"}
    config = getattr(outer, "config", None)
    if isinstance(config, dict):
        arch = config.get("arch", [])
        metadata["steps"] = int(config.get("steps", 0)) or None
        metadata["input_encoding"] = "events" if config.get("event_input") else "direct"
        metadata["model_arch"] = arch if isinstance(arch, str) else ",".join(arch)
    graph = nir.NIRGraph(nodes=ctx.nodes, edges=ctx.edges, metadata=_sanitize(metadata), type_check=False)
    if validate:
        infer_shapes(graph)  # every node consistent (raises naming the node otherwise)
    return graph
