"""Loihi fixed point for the Lava backend (REFERENCE.md §7), with per-layer scales chosen automatically.

Loihi's bit-accurate LIF (``lava.proc.lif.models.PyLifModelBitAcc``) keeps ``u`` and ``v`` in 24 bits,
left-shifts the synaptic input by 6 (``a_in << 6``) and the threshold by 6 (``vth`` is 17-bit), decays
with 12-bit ``du``/``dv`` (``x·(4096 − d) >> 12``, ``du`` with an offset of 1) and adds ``bias_mant <<
bias_exp`` (13-bit mantissa). Weights are 8-bit with a shared ``weight_exp`` per connection process; with
mixed signs Lava drops the lowest bit (even values in ``[-128, 126]``).

Per neuron layer one scale ``α`` multiplies the layer's weights, threshold and bias together, so the
float dynamics are reproduced up to rounding: ``v_int = 64·α·v``. ``α`` is chosen so that the largest
incoming weight uses the full 8-bit range at some ``weight_exp`` and the threshold ``α·θ`` sits near
2^13 (16x headroom below the 24-bit limit for the overshoot of ``v`` and for ``u``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporters.core.jsonio import SCHEMA_VERSION
from exporters.lava.errors import LavaBackendError
from exporters.lava.plan import LavaPlan

__all__ = ["QuantNeuron", "QuantConn", "QuantPlan", "input_scale_of", "load_quant_plan", "quantize_plan",
           "quantize_weights", "save_quant_plan"]

V_TARGET = 2**13  # α·θ aimed for
VTH_MAX = 2**17 - 1  # 17-bit threshold mantissa
W_MAX = 126  # largest even 8-bit magnitude (mixed-sign truncation drops the LSB)
WEXP_MAX = 7
BIAS_MANT_MAX = 4095
BIAS_EXP_MAX = 7


@dataclass
class QuantNeuron:
    """Fixed-point parameters of one neuron layer; ``v_unit`` = Lava integer v per unit of float v."""

    node_id: str
    alpha: float
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    bias_exp: int
    v_unit: float


@dataclass
class QuantConn:
    """8-bit weights (as integers, same layout as the float ones) and the shared exponent."""

    src: str
    dst: str
    weights: np.ndarray
    weight_exp: int
    max_rel_error: float  # largest |quantised − float| / max|float| over the weights


@dataclass
class QuantPlan:
    """Fixed-point version of a :class:`exporters.lava.plan.LavaPlan`."""

    neurons: dict[str, QuantNeuron]
    conns: list[QuantConn]
    input_scale: float  # graph input value v is sent as round(v · input_scale)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """One line per layer: scale, threshold, exponents, weight error."""
        lines = [f"input scale {self.input_scale:g}"]
        for q in self.neurons.values():
            conns = [c for c in self.conns if c.dst == q.node_id]
            ws = ", ".join(f"{c.src}: exp {c.weight_exp} err {c.max_rel_error:.3f}" for c in conns)
            lines.append(f"{q.node_id}: alpha {q.alpha:.4g} vth {q.vth} bias_exp {q.bias_exp} du {q.du} dv {q.dv}"
                         f" weights [{ws}]")
        return lines + self.notes

    def to_dict(self) -> dict:
        """Per-layer scales as plain data (for JSON reports)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "input_scale": self.input_scale,
            "layers": {
                q.node_id: {"alpha": q.alpha, "vth": q.vth, "bias_exp": q.bias_exp, "du": q.du, "dv": q.dv,
                            "weight_exp": {c.src: c.weight_exp for c in self.conns if c.dst == q.node_id},
                            "max_rel_weight_error": {c.src: c.max_rel_error for c in self.conns if c.dst == q.node_id}}
                for q in self.neurons.values()
            },
        }


def quantize_weights(w: np.ndarray, alpha: float, weight_exp: int) -> np.ndarray:
    """Even 8-bit integers ``≈ α·w / 2^weight_exp`` in ``[-128, 126]`` (int32)."""
    q = 2 * np.rint(alpha * w / 2.0**weight_exp / 2.0)
    return np.clip(q, -128, W_MAX).astype(np.int32)


def _weight_exp(alpha: float, wmax: float, exp_max: int = WEXP_MAX) -> int:
    if wmax <= 0:
        return 0
    return int(min(exp_max, max(0, math.ceil(math.log2(alpha * wmax / W_MAX) - 1e-9))))


def _choose_alpha(theta: float, wmax: float, exp_max: int = WEXP_MAX) -> float:
    """Scale so that the largest weight fills 8 bits at some exponent and α·θ stays near V_TARGET."""
    if wmax <= 0:
        return V_TARGET / theta
    alpha = V_TARGET / theta
    exp = _weight_exp(alpha, wmax, exp_max)
    alpha = W_MAX * 2.0**exp / wmax  # use the full weight range at that exponent
    while alpha * theta > VTH_MAX and exp > 0:
        exp -= 1
        alpha = W_MAX * 2.0**exp / wmax
    return min(alpha, VTH_MAX / theta)


def _bias(b: np.ndarray) -> tuple[np.ndarray, int]:
    """Mantissa (13-bit) and exponent of a bias already in Lava's integer v units."""
    peak = float(np.abs(b).max()) if b.size else 0.0
    exp = 0
    while exp < BIAS_EXP_MAX and peak / 2.0**exp > BIAS_MANT_MAX:
        exp += 1
    return np.clip(np.rint(b / 2.0**exp), -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int32), exp


def input_scale_of(x: np.ndarray) -> float:
    """Integer units per unit of graph input: 1 for binary spikes, else 8 bits (255, or 127 with negative values)
    over the range of ``x``. Pass one value to every run that must share a quantisation (a subset on Lava, all
    samples on the emulator)."""
    binary = not np.any((x != 0) & (x != 1))
    peak = float(np.abs(x).max()) if x.size else 0.0
    if binary or peak == 0:
        return 1.0
    return (255.0 if x.min() >= 0 else 127.0) / peak


def quantize_plan(plan: LavaPlan, x: np.ndarray | None = None, input_scale: float | None = None,
                  max_weight_exp: int = WEXP_MAX) -> QuantPlan:
    """Per-layer fixed-point parameters for ``plan``.

    Graded graph inputs are sent as ``round(x · s)`` with ``s = input_scale`` or :func:`input_scale_of` ``x``.
    ``max_weight_exp=0`` keeps every weight within 8 bits without exponent (netx's
    conv synapses have none).
    """
    units = plan.compiled.graph.metadata.get("fixed_point_units")
    if (units.decode() if isinstance(units, bytes) else units) == "loihi":
        return _loihi_integers(plan, 1.0 if input_scale is None else float(input_scale))
    in_scale = float(input_scale) if input_scale is not None else input_scale_of(np.asarray(x if x is not None else 0))
    eff: list[np.ndarray] = []
    for c in plan.conns:  # weights per integer message
        eff.append(c.weights / in_scale if c.src == plan.input_id else c.weights)
    neurons: dict[str, QuantNeuron] = {}
    conns: list[QuantConn | None] = [None] * len(plan.conns)
    notes: list[str] = []
    for nid, spec in plan.neurons.items():
        idx = [i for i, c in enumerate(plan.conns) if c.dst == nid]
        wmax = max((float(np.abs(eff[i]).max()) for i in idx), default=0.0)
        theta = spec.vth if math.isfinite(spec.vth) else 1.0
        alpha = _choose_alpha(theta, wmax, max_weight_exp)
        vth = int(min(VTH_MAX, round(alpha * theta))) if math.isfinite(spec.vth) else VTH_MAX
        if vth < 1:
            limit = 2 * W_MAX * 2**max_weight_exp
            raise LavaBackendError(
                f"node {nid!r}: incoming weights up to {wmax:g} against a threshold of {theta:g} (ratio "
                f"{wmax / theta:.4g}) overflow Loihi fixed point even after scaling: with 8-bit weights and "
                f"weight_exp <= {max_weight_exp} the threshold rounds below 1 unit (the ratio must stay below "
                f"{limit}); lower the weights or raise the threshold")
        mant, bexp = _bias(64.0 * alpha * spec.bias_v)
        if np.any(np.abs(64.0 * alpha * spec.bias_v) > BIAS_MANT_MAX * 2**BIAS_EXP_MAX):
            notes.append(f"{nid}: bias clipped to the 13-bit mantissa << 7")
        du = int(np.clip(round(spec.du * 4096) - 1, 0, 4095))  # Lava adds 1 to du (ds_offset)
        dv = int(np.clip(round(spec.dv * 4096), 0, 4095))
        neurons[nid] = QuantNeuron(nid, alpha, du, dv, vth, mant, bexp, 64.0 * alpha)
        for i in idx:
            w = eff[i]
            peak = float(np.abs(w).max()) if w.size else 0.0
            exp = _weight_exp(alpha, peak, max_weight_exp)
            wq = quantize_weights(w, alpha, exp)
            err = float(np.abs(wq * 2.0**exp / alpha - w).max() / peak) if peak > 0 else 0.0
            conns[i] = QuantConn(plan.conns[i].src, nid, wq, exp, err)
    return QuantPlan(neurons, [c for c in conns if c is not None], in_scale, notes)


def _integers(values: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    r = np.rint(v)
    if np.any(np.abs(v - r) > 1e-6 * np.maximum(1.0, np.abs(r))):
        raise LavaBackendError(f"{what}: the graph says its values are Loihi integers (metadata fixed_point_units = "
                               f"'loihi') but holds {v[np.abs(v - r) > 1e-6 * np.maximum(1.0, np.abs(r))][:3]}; "
                               "remove that key to quantise it")
    return r


def _loihi_integers(plan: LavaPlan, in_scale: float) -> QuantPlan:
    """A graph whose values are Loihi integers already (``exporters.netx_import``): scale 1 and 64 Lava units per unit
    of v, every weight, threshold and bias checked to be an integer Lava represents exactly, nothing rounded; the
    integers of the file the graph came from."""
    neurons: dict[str, QuantNeuron] = {}
    conns: list[QuantConn] = []
    for nid, spec in plan.neurons.items():
        vth = int(_integers(spec.vth, f"node {nid!r} threshold")) if math.isfinite(spec.vth) else VTH_MAX
        if not 1 <= vth <= VTH_MAX:
            raise LavaBackendError(f"node {nid!r}: threshold {vth} is outside Loihi's 1..{VTH_MAX}")
        bias = _integers(spec.bias_v, f"node {nid!r} bias")
        if np.all(np.abs(bias) <= 2**15 - 1):
            mant, bexp = bias.astype(np.int32), 6  # as lava-dl's netx: an int16 bias_mant << 6
        else:
            mant, bexp = _bias(64.0 * bias)
            if np.any(mant.astype(np.int64) << bexp != (64 * bias).astype(np.int64)):
                raise LavaBackendError(f"node {nid!r}: bias up to {np.abs(bias).max():g} has no exact 13-bit "
                                       "mantissa and exponent")
        du = int(np.clip(round(spec.du * 4096) - 1, 0, 4095))
        dv = int(np.clip(round(spec.dv * 4096), 0, 4095))
        neurons[nid] = QuantNeuron(nid, 1.0, du, dv, vth, mant, bexp, 64.0)
    for c in plan.conns:
        w = _integers(c.weights / in_scale if c.src == plan.input_id else c.weights, f"{c.src!r} -> {c.dst!r} weights")
        exp = 0
        if c.dense is not None and w.min(initial=0) < 0 < w.max(initial=0) and np.any(w % 2):
            w, exp = 2 * w, -1  # Lava's mixed-sign Dense drops the lowest bit: send 2w and shift the sum back
        if np.abs(w).max(initial=0) > 256 or (c.dense is not None and w.max(initial=0) > 254):
            raise LavaBackendError(f"{c.src!r} -> {c.dst!r}: weights up to {np.abs(w).max():g} exceed Loihi's "
                                   "8-bit mantissa (with the sign and weight_exp 0)")
        conns.append(QuantConn(c.src, c.dst, w.astype(np.int32), exp, 0.0))
    return QuantPlan(neurons, conns, in_scale, ["Loihi integers taken as they are (fixed_point_units = 'loihi')"])


def save_quant_plan(path: str | Path, quant: QuantPlan) -> None:
    """Write every integer of ``quant`` (weights, biases, thresholds, decays, exponents, scales) to an ``.npz``, so
    that a quantisation-aware fine-tuned network is deployed with exactly its own integers (written atomically)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {"schema_version": SCHEMA_VERSION, "input_scale": quant.input_scale, "notes": quant.notes,
                  "neurons": [], "conns": []}
    for i, q in enumerate(quant.neurons.values()):
        meta["neurons"].append({"node_id": q.node_id, "alpha": q.alpha, "du": q.du, "dv": q.dv, "vth": q.vth,
                                "bias_exp": q.bias_exp, "v_unit": q.v_unit})
        arrays[f"bias_{i}"] = np.asarray(q.bias_mant, dtype=np.int32)
    for i, c in enumerate(quant.conns):
        meta["conns"].append({"src": c.src, "dst": c.dst, "weight_exp": c.weight_exp, "max_rel_error": c.max_rel_error})
        arrays[f"weights_{i}"] = np.asarray(c.weights, dtype=np.int32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    os.replace(tmp, path)


def load_quant_plan(path: str | Path, plan: LavaPlan | None = None) -> QuantPlan:
    """Read :func:`save_quant_plan`'s file; with ``plan``, check that it quantises that plan (same neuron layers
    and connections, same weight shapes) and name the first difference otherwise."""
    path = Path(path)
    try:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            neurons = {n["node_id"]: QuantNeuron(n["node_id"], n["alpha"], n["du"], n["dv"], n["vth"],
                                                 data[f"bias_{i}"], n["bias_exp"], n["v_unit"])
                       for i, n in enumerate(meta["neurons"])}
            conns = [QuantConn(c["src"], c["dst"], data[f"weights_{i}"], c["weight_exp"], c["max_rel_error"])
                     for i, c in enumerate(meta["conns"])]
    except (OSError, KeyError, ValueError) as err:
        raise LavaBackendError(f"{path}: not a nasflow fixed-point file ({err}); write it with save_quant_plan "
                               "(nasflow train --qat lava)") from None
    quant = QuantPlan(neurons, conns, float(meta["input_scale"]), list(meta.get("notes", [])))
    if plan is not None:
        if sorted(neurons) != sorted(plan.neurons):
            raise LavaBackendError(f"{path}: its neuron layers {sorted(neurons)} are not the graph's "
                                   f"{sorted(plan.neurons)}; it was made for another network")
        if len(conns) != len(plan.conns):
            raise LavaBackendError(f"{path}: {len(conns)} connections, the graph has {len(plan.conns)}")
        for c, q in zip(plan.conns, conns):
            if (c.src, c.dst) != (q.src, q.dst) or tuple(c.weights.shape) != tuple(q.weights.shape):
                raise LavaBackendError(f"{path}: connection {q.src!r} -> {q.dst!r} {tuple(q.weights.shape)} does not "
                                       f"match the graph's {c.src!r} -> {c.dst!r} {tuple(c.weights.shape)}")
    return quant

