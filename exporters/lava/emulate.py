"""``lava-emu``: the fixed-point Lava network nasflow builds, executed without Lava, batched over samples.

It runs the same :class:`~exporters.lava.plan.LavaPlan` and the same :class:`~exporters.lava.quantize.QuantPlan`
as ``lava-fixed`` (one quantiser, two executors) and reproduces, integer for integer, what the process models of
``exporters.lava.models`` compute inside Lava's runtime: Lava's bit-accurate LIF (``AbstractPyLifModelFixed``:
24-bit ``u``/``v`` with Lava's single wrap of ``u`` and clip of ``v``, 12-bit ``du``/``dv`` with the ``du`` offset
of 1, decay as sign · (|x·(4096 − d)| >> 12), ``a_in << 6``, ``vth << 6``, ``bias_mant << bias_exp``, ``v > vth``,
reset to 0), Lava's Dense weight rule (8-bit clip and, for mixed signs, the dropped lowest bit, via
``lava.utils.weightutils``), int64 accumulation shifted by ``weight_exp`` and cast to int32, the Conv model's
rounding and 24-bit signed wrap, and the timing (zero-delay feed-forward connections, one step of buffer on
connections that carry a NIR back edge, everything cleared at a sample start). It emulates Lava's models, not
Loihi silicon.

Speed comes from evaluating whole layers at once where the graph allows it: neurons are grouped into strongly
connected components of the connection graph; a component without a cycle gets its input for all ``T`` steps and
samples from one matrix product or convolution, then runs its integer time loop; a component with a cycle (a
recurrent cell) steps its members together. Matrix products and convolutions run in floating point, which is
exact for these integers as long as every partial sum stays below the mantissa's range; the bound is checked per
connection and float64 (or int64) is used where float32 could round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from exporters.lava.errors import LavaBackendError
from exporters.lava.plan import CONST, LavaPlan
from exporters.lava.quantize import QuantPlan

__all__ = ["emulate_plan", "lava_dense_weights", "lif_fixed_step"]

UV_MAX = 2**23  # Lava's max_uv_val: u and v are 24-bit
ACT_SHIFT = 6
VTH_SHIFT = 6
DECAY_SHIFT = 12
DECAY_UNITY = 2**DECAY_SHIFT
DU_OFFSET = 1  # Lava's ds_offset (du); dm_offset (dv) is 0


def _wrap32(x: np.ndarray) -> np.ndarray:
    """What numpy's int32 arithmetic leaves of an int64 value (two's complement wrap)."""
    return ((x + 2**31) & (2**32 - 1)) - 2**31


def _decay(x: np.ndarray, d: int) -> np.ndarray:
    """Lava's decay ``sign(x·(4096 − d)) · (|x·(4096 − d)| >> 12)`` (int64 in, int64 out)."""
    p = x * (DECAY_UNITY - d)
    return np.sign(p) * (np.abs(p) >> DECAY_SHIFT)


def lif_fixed_step(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, du: int, dv: int, bias: np.ndarray,
                   vth_eff: int) -> np.ndarray:
    """One step of Lava's bit-accurate LIF on int64 arrays ``u``, ``v`` (updated in place); returns the spikes.

    ``a_in`` is the int32 sum of the incoming connections, ``bias`` the effective bias ``bias_mant << bias_exp``,
    ``vth_eff`` the threshold ``vth << 6``; ``du`` without Lava's offset (it is added here).
    """
    cur = _wrap32(_decay(u, du + DU_OFFSET) + _wrap32(a_in << ACT_SHIFT))
    wrapped = np.where(cur > UV_MAX, cur - 2 * UV_MAX, cur)
    wrapped = np.where(wrapped <= -UV_MAX, cur + 2 * UV_MAX, wrapped)
    u[...] = wrapped
    volt = _wrap32(_decay(v, dv) + u + bias)
    v[...] = np.clip(volt, -UV_MAX + 1, UV_MAX - 1)
    s = v > vth_eff
    v[s] = 0
    return s


def lava_dense_weights(w: np.ndarray) -> np.ndarray:
    """The integer weights Lava's bit-accurate Dense model uses for ``w`` (8-bit clip, then for mixed signs the
    lowest bit dropped), by Lava's own ``weightutils``; the rule ``exporters.lava.models.NasDenseFixed`` applies."""
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    mode = determine_sign_mode(w)
    return truncate_weights(clip_weights(w, mode, num_bits=8), mode, 8).astype(np.int64)


@dataclass
class _Conn:
    """One connection as the emulator runs it: an exact linear map from source values to int32 inputs."""

    src: str
    dst: str
    delayed: bool
    weight: torch.Tensor  # dense [n_dst, n_src] or conv (Cout, Cin, kh, kw), in the exact float dtype
    conv: dict | None
    exp: int
    src_shape: tuple[int, ...]

    def apply(self, s: np.ndarray) -> np.ndarray:
        """int32-valued int64 inputs ``[N, n_dst]`` for source values ``s`` ``[N, *src_shape]`` (integers)."""
        x = torch.from_numpy(np.ascontiguousarray(s)).to(self.weight.dtype)
        if self.conv is None:
            acc = x.reshape(x.shape[0], -1) @ self.weight.T
        else:
            cv = self.conv
            acc = F.conv2d(x.reshape((x.shape[0],) + self.src_shape), self.weight, stride=cv["stride"],
                           padding=cv["padding"], dilation=cv["dilation"], groups=cv["groups"])
        acc = torch.round(acc).to(torch.int64).reshape(x.shape[0], -1).numpy()
        acc = acc << self.exp if self.exp >= 0 else acc >> -self.exp
        if self.conv is None:
            return _wrap32(acc)  # NasDenseFixed: astype(int32)
        return ((acc + UV_MAX) & (2 * UV_MAX - 1)) - UV_MAX  # NasConvFixed: signed_clamp to 24 bits


def _exact_weight(w: np.ndarray, peak_in: float, fan: float) -> torch.Tensor:
    """``w`` in the cheapest float dtype whose sums of ``fan`` products up to ``|w|·peak_in`` stay exact."""
    bound = float(np.abs(w).max(initial=0)) * max(peak_in, 1.0) * max(fan, 1.0)
    if bound < 2**24:
        return torch.from_numpy(w.astype(np.float32))
    if bound < 2**53:
        return torch.from_numpy(w.astype(np.float64))
    raise LavaBackendError(f"a connection's sums could reach {bound:.3g}, beyond what the emulator sums exactly")


def _connections(plan: LavaPlan, quant: QuantPlan, peak_in: float, align: bool) -> list[_Conn]:
    conns = []
    for c, q in zip(plan.conns, quant.conns):
        src_shape = (1,) if c.src == CONST else plan.shapes[c.src]
        peak = peak_in if c.src == plan.input_id else 1.0
        if c.dense is not None:
            w = lava_dense_weights(q.weights)
            wt, conv = _exact_weight(w, peak, float(np.count_nonzero(w, axis=1).max(initial=0))), None
        else:
            w = np.asarray(q.weights, dtype=np.int64)
            conv = {k: c.conv[k] for k in ("stride", "padding", "dilation", "groups")}
            wt = _exact_weight(w, peak, float(np.prod(w.shape[1:])))
        conns.append(_Conn(c.src, c.dst, bool(c.delayed or not align), wt, conv, int(q.weight_exp), src_shape))
    return conns


def _components(plan: LavaPlan, conns: list[_Conn]) -> list[list[str]]:
    """Neuron groups in evaluation order: strongly connected components of the connection graph (Tarjan), each
    listed in the zero-delay order the Lava models respect within a step."""
    neurons = [n for n in plan.order if n in plan.neurons]
    succ: dict[str, list[str]] = {n: [] for n in neurons}
    for c in conns:
        if c.src in succ:
            succ[c.src].append(c.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []

    def visit(root: str) -> None:
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(succ[nxt])))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                comps.append(comp)

    for n in neurons:
        if n not in index:
            visit(n)
    rank = {n: i for i, n in enumerate(neurons)}
    return [sorted(comp, key=rank.__getitem__) for comp in reversed(comps)]


def emulate_plan(plan: LavaPlan, quant: QuantPlan, x: np.ndarray, align: bool = True,
                 want_v: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run ``plan`` with ``quant`` on ``x`` ``[T, B, *input_shape]`` as ``lava-fixed`` does.

    Returns (per neuron node: spikes ``[T, B, *shape]`` float32, or the voltage in NIR units for non-spiking
    readouts; voltages in NIR units of every neuron node when ``want_v``). Samples are independent, as Lava's
    per-sample reset makes them.
    """
    t_len, b = x.shape[:2]
    x_int = np.rint(np.asarray(x, dtype=np.float64) * quant.input_scale).astype(np.int32).astype(np.int64)
    graded = bool(np.any((x != 0) & (x != 1)))
    if not graded:
        x_int = (x_int != 0).astype(np.int64)
    conns = _connections(plan, quant, float(np.abs(x_int).max(initial=0)), align)
    into: dict[str, list[_Conn]] = {n: [] for n in plan.neurons}
    for c in conns:
        into[c.dst].append(c)
    # Source values over time: [T, B, n]; the constant source sends 1 every step.
    vals: dict[str, np.ndarray] = {plan.input_id: x_int.reshape(t_len, b, -1), CONST: np.ones((t_len, b, 1), np.int64)}
    volts: dict[str, np.ndarray] = {}
    comps = _components(plan, conns)
    for comp in comps:
        members = set(comp)
        n = {m: int(np.prod(plan.neurons[m].shape)) for m in comp}
        # Inputs from outside the component, for all steps at once.
        ext = {m: np.zeros((t_len, b, n[m]), np.int64) for m in comp}
        for m in comp:
            for c in into[m]:
                if c.src in members:
                    continue
                src = vals[c.src]
                y = c.apply(src.reshape((t_len * b,) + c.src_shape)).reshape(t_len, b, n[m])
                if c.delayed:
                    y = np.concatenate([np.zeros_like(y[:1]), y[:-1]], axis=0)
                ext[m] += y
        state = {m: (np.zeros((b, n[m]), np.int64), np.zeros((b, n[m]), np.int64)) for m in comp}
        out = {m: np.zeros((t_len, b, n[m]), np.int64) for m in comp}
        vrec = {m: np.zeros((t_len, b, n[m]), np.int64) for m in comp}
        inner = [c for m in comp for c in into[m] if c.src in members]
        for c in inner:
            if not c.delayed and comp.index(c.src) >= comp.index(c.dst):
                raise LavaBackendError(f"node {c.dst!r}: a zero-delay connection from {c.src!r} closes a cycle")
        buf = {id(c): np.zeros((b, n[c.dst]), np.int64) for c in inner if c.delayed}
        params = {}
        for m in comp:
            q = quant.neurons[m]
            bias = np.asarray(q.bias_mant, dtype=np.int64)
            bias = bias << q.bias_exp if q.bias_exp >= 0 else bias >> -q.bias_exp
            params[m] = (q.du, q.dv, np.broadcast_to(bias, (n[m],)), int(q.vth) << VTH_SHIFT)
        for t in range(t_len):
            for m in comp:
                a_in = ext[m][t].copy()
                for c in into[m]:
                    if c.src in members:
                        a_in += buf[id(c)] if c.delayed else c.apply(out[c.src][t])
                u, v = state[m]
                du, dv, bias, vth = params[m]
                out[m][t] = lif_fixed_step(u, v, _wrap32(a_in), du, dv, bias, vth)
                vrec[m][t] = v
            for c in inner:
                if c.delayed:
                    buf[id(c)] = c.apply(out[c.src][t])
        for m in comp:
            vals[m] = out[m]
            volts[m] = vrec[m]
    neuron_act: dict[str, np.ndarray] = {}
    voltages: dict[str, np.ndarray] = {}
    for nid, spec in plan.neurons.items():
        shape = (t_len, b) + spec.shape
        scale = (spec.v_scale * quant.neurons[nid].v_unit).reshape(spec.shape)
        if spec.record == "v" or want_v:
            voltages[nid] = volts[nid].astype(np.float32).reshape(shape) / scale  # as simulate() reads Lava's
        neuron_act[nid] = voltages[nid] if spec.record == "v" else vals[nid].astype(np.float32).reshape(shape)
    return neuron_act, voltages
