"""NIR → Lava (lava-nc 0.10 CPU backend, floating point or Loihi fixed point), on NIR's time axis.

How a NIR graph becomes a Lava network (REFERENCE.md §6-7):

- Every neuron node (IF, LIF, CubaLIF, LI, I, CubaLI, Threshold) becomes one ``lava.proc.lif.process.LIFReset``
  process in Lava's layout (NIR's ``(C, H, W)`` is Lava's ``(W, H, C)``). Euler constants map onto
  ``du``, ``dv`` and ``bias_mant``; per-neuron ``r``, ``w_in``, ``v_leak`` and ``v_threshold`` fold into the
  incoming weights and the bias (scaling a neuron's ``u`` and ``v`` together is exact because Lava resets to
  0). Per-neuron time constants that differ, and non-zero ``v_reset``, are refused by node name.
- The linear nodes between two neuron layers (Affine, Linear, Scale, Conv2d, SumPool2d, AvgPool2d,
  Flatten, fan-in sums) collapse into one connection process per (source, target) pair: a ``Conv`` when
  the path is ``[pool] → conv`` or a lone pool (pooling = conv with fixed weights), else a ``Dense`` whose
  matrix is the path's response to a unit basis (layout transposes included). Fewer processes run faster
  (about 0.1 ms per process per step); the biases of the path go to the target's ``bias_mant``, or for
  current-based neurons (where a constant input is filtered by the synapse) through a ``Dense`` from a
  constant source.
- Timing: Lava's Dense/Conv send last step's accumulation. With ``align=True`` connections on the
  feed-forward part use zero-delay models (``exporters.lava.models``) and connections that contain a NIR
  back edge keep the one-step buffer, which is exactly NIR's back-edge delay; so residual fan-in and
  cycles land on the reference time axis with no delay equalisation. ``align=False`` keeps Lava's raw
  timing everywhere (an N-connection chain lags N steps).
- Samples run back to back in one runtime; neurons reset and buffers clear at every sample start.

The activity of non-neuron nodes (linear nodes, Input, Output) is evaluated from the recorded neuron
spikes with the same linear operators, on the reference time axis.

Modules, by job (only ``models`` imports Lava at module level, and it is imported when a network runs, so
``import exporters.lava`` does not import Lava):

* ``plan``: ``build_plan`` compiles a graph to ``LavaNeuron`` and ``LavaConnection`` specs (``LavaPlan``);
* ``linalg``: linear NIR nodes (``apply_linear``) and the collapse of linear paths into conv or dense weights;
* ``layout``: NIR ↔ Lava array layout;
* ``quantize``: Loihi fixed point for a plan (``quantize_plan``);
* ``build``: the Lava processes of a plan; ``models``: the Lava process models they run with;
* ``emulate``: ``lava-emu``, the fixed-point plan executed bit for bit without Lava, batched over samples;
* ``runtime``: ``run_network`` with its timeout and stop/kill guards, ``ensure_lava_importable``;
* ``activity``: every node's activity from the recorded neuron layers;
* ``errors``: ``LavaBackendError``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nir
import numpy as np

from exporters.core.process import scratch_dir
from exporters.lava.activity import node_activity, read_recording
from exporters.lava.build import build_network
from exporters.lava.emulate import FixedPointNetwork, emulate_plan
from exporters.lava.errors import LavaBackendError
from exporters.lava.layout import from_lava_layout, lava_perm, lava_shape, to_lava_layout
from exporters.lava.linalg import MAX_DENSE_ENTRIES, apply_linear
from exporters.lava.plan import CONST, LavaConnection, LavaNeuron, LavaPlan, analog_refusal, build_plan
from exporters.lava.quantize import QuantPlan, input_scale_of, load_quant_plan, quantize_plan, save_quant_plan
from exporters.lava.runtime import ensure_lava_importable, run_network

__all__ = [
    "simulate",
    "emulate",
    "emulate_plan",
    "FixedPointNetwork",
    "LavaBackendError",
    "LavaNeuron",
    "LavaConnection",
    "LavaPlan",
    "CONST",
    "MAX_DENSE_ENTRIES",
    "analog_refusal",
    "build_plan",
    "quantize_plan",
    "input_scale_of",
    "load_quant_plan",
    "save_quant_plan",
    "QuantPlan",
    "run_network",
    "ensure_lava_importable",
    "apply_linear",
    "lava_shape",
    "to_lava_layout",
    "from_lava_layout",
    "lava_perm",
]

log = logging.getLogger(__name__)


def _prepared(graph: nir.NIRGraph, x: np.ndarray, dt: float | None, fixed_point: bool, max_weight_exp: int,
              input_scale: float | None = None, quant: QuantPlan | str | Path | None = None
              ) -> tuple[LavaPlan, np.ndarray, QuantPlan | None]:
    """The plan, the checked input and (fixed point) the quantisation every executor of a graph shares."""
    plan = build_plan(graph, dt)
    x = np.asarray(x, dtype=np.float32)
    in_shape = plan.shapes[plan.input_id]
    if x.ndim != 2 + len(in_shape) or tuple(x.shape[2:]) != in_shape:
        raise LavaBackendError(
            f"input {plan.input_id!r}: expected an array [T, B, {', '.join(map(str, in_shape))}], got {x.shape}"
        )
    if isinstance(quant, (str, Path)):
        quant = load_quant_plan(quant, plan)
    if fixed_point and quant is None:
        quant = quantize_plan(plan, x, input_scale=input_scale, max_weight_exp=max_weight_exp)
    if fixed_point:
        for line in quant.summary():
            log.info("fixed point: %s", line)
    return plan, x, quant


def simulate(graph: nir.NIRGraph, x: np.ndarray, dt: float | None = None, fixed_point: bool = False,
             align: bool = True, timeout_s: float = 120.0, *,
             voltages: dict[str, np.ndarray] | None = None, max_weight_exp: int = 7,
             input_scale: float | None = None, quant: QuantPlan | str | Path | None = None) -> dict[str, np.ndarray]:
    """Run ``graph`` on Lava (CPU) for input ``x`` ``[T, B, *input_shape]``; returns every node's activity.

    ``dt`` comes from ``graph.metadata["dt"]`` when not given (needed by LIF/CubaLIF/LI nodes).
    ``fixed_point`` uses Loihi's bit-accurate models with per-layer scales from ``exporters.lava.quantize``.
    ``align=False`` returns Lava's raw timing (each connection process one step late). Samples run back to
    back in one runtime. ``input_scale`` fixes the integer units of a graded input (default: from the range of
    ``x``, ``exporters.lava.quantize.input_scale_of``); ``quant`` (a ``QuantPlan`` or its ``.npz`` from
    ``save_quant_plan``) gives every integer instead, e.g. those of quantisation-aware fine-tuning.
    Raises ``LavaBackendError`` naming the node Lava cannot
    represent, ``TimeoutError`` after ``timeout_s``; the runtime is always stopped.
    """
    plan, x, quant = _prepared(graph, x, dt, fixed_point, max_weight_exp, input_scale, quant if fixed_point else None)
    t_len, b = x.shape[:2]
    # Samples one after another: [B*T, *shape].
    xs = np.moveaxis(x, 1, 0).reshape((b * t_len,) + plan.shapes[plan.input_id])
    with scratch_dir("lava") as tmp:
        entry, files = build_network(plan, xs, t_len, fixed_point, align, Path(tmp), quant, voltages is not None)
        run_network(entry, b * t_len, fixed_point, timeout_s)
        neuron_act = {}
        for nid, (s_path, v_path) in files.items():
            spec = plan.neurons[nid]
            v_rec = None if v_path is None else read_recording(v_path, spec.shape, b, t_len)
            if v_rec is not None:
                v_rec = spec.nir_voltage(v_rec, 1.0 if quant is None else quant.neurons[nid].v_unit)
                if voltages is not None:
                    voltages[nid] = v_rec
            neuron_act[nid] = v_rec if s_path is None else read_recording(s_path, spec.shape, b, t_len)
    return node_activity(plan.compiled.graph, plan, x, neuron_act)


def emulate(graph: nir.NIRGraph, x: np.ndarray, dt: float | None = None, align: bool = True, *,
            voltages: dict[str, np.ndarray] | None = None, max_weight_exp: int = 7,
            input_scale: float | None = None, quant: QuantPlan | str | Path | None = None) -> dict[str, np.ndarray]:
    """``lava-emu``: what ``simulate(..., fixed_point=True)`` returns, computed without Lava (``exporters.lava.
    emulate``), all samples at once; same plan, same quantisation, same refusals, identical rasters."""
    plan, x, quant = _prepared(graph, x, dt, True, max_weight_exp, input_scale, quant)
    return FixedPointNetwork(plan, quant, align).activity(x, voltages)
