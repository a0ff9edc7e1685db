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

import numpy as np
import torch
import torch.nn.functional as F

from exporters.lava.errors import LavaBackendError
from exporters.lava.plan import CONST, LavaPlan
from exporters.lava.quantize import QuantPlan

__all__ = ["FixedPointNetwork", "emulate_plan", "lava_dense_weights", "lif_fixed_run", "lif_fixed_step"]

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


def lif_fixed_run(a_in: np.ndarray, u: np.ndarray, v: np.ndarray, du: int, dv: int, bias: np.ndarray,
                  vth_eff: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lif_fixed_step` over the leading time axis of ``a_in`` ``[T, B, N]`` (``u``, ``v`` ``[B, N]``
    updated in place); returns spikes (bool) and ``v`` after reset, both ``[T, B, N]``. Runs the compiled loop
    of ``nasflow/kernels/fixed.cpp`` when it is built, else the numpy steps (the two are tested equal)."""
    from nasflow.kernels import ops

    kernel = ops()
    if kernel is not None:
        s, vrec = kernel.lava_lif_fixed(torch.from_numpy(np.ascontiguousarray(a_in, dtype=np.int64)),
                                        torch.from_numpy(u), torch.from_numpy(v), int(du), int(dv),
                                        torch.from_numpy(np.ascontiguousarray(bias, dtype=np.int64)), int(vth_eff))
        return s.numpy(), vrec.numpy()
    s = np.zeros(a_in.shape, dtype=bool)
    vrec = np.zeros(a_in.shape, dtype=np.int64)
    for t in range(a_in.shape[0]):
        s[t] = lif_fixed_step(u, v, a_in[t], du, dv, bias, vth_eff)
        vrec[t] = v
    return s, vrec


class _Conn:
    """One connection as the emulator runs it: an exact linear map from integer source values to int32 inputs."""

    def __init__(self, src: str, dst: str, delayed: bool, w: np.ndarray, conv: dict | None, exp: int,
                 src_shape: tuple[int, ...]) -> None:
        self.src, self.dst, self.delayed, self.conv, self.exp, self.src_shape = src, dst, delayed, conv, exp, src_shape
        self.w = w
        # Largest |sum| per unit of input peak: the L1 norm of an output's fan-in.
        flat = np.abs(w).reshape(w.shape[0], -1)
        self.l1 = float(flat.sum(axis=1).max(initial=0))
        self._cache: dict[torch.dtype, torch.Tensor] = {}

    def _weight(self, peak: float) -> torch.Tensor:
        bound = self.l1 * max(peak, 1.0)
        if bound < 2**24:
            dtype = torch.float32
        elif bound < 2**53:
            dtype = torch.float64
        else:
            raise LavaBackendError(f"node {self.dst!r}: the sums from {self.src!r} could reach {bound:.3g}, beyond "
                                   "what the emulator sums exactly")
        if dtype not in self._cache:
            self._cache[dtype] = torch.from_numpy(self.w.astype(np.float32 if dtype == torch.float32 else np.float64))
        return self._cache[dtype]

    def apply(self, s: np.ndarray, peak: float = 1.0) -> np.ndarray:
        """int32-valued int64 inputs ``[N, n_dst]`` for source values ``s`` ``[N, *src_shape]`` (integers up to
        ``peak`` in magnitude)."""
        w = self._weight(peak)
        x = torch.from_numpy(np.ascontiguousarray(s)).to(w.dtype)
        if self.conv is None:
            acc = x.reshape(x.shape[0], -1) @ w.T
        else:
            cv = self.conv
            acc = F.conv2d(x.reshape((x.shape[0],) + self.src_shape), w, stride=cv["stride"], padding=cv["padding"],
                           dilation=cv["dilation"], groups=cv["groups"])
        acc = torch.round(acc).to(torch.int64).reshape(x.shape[0], -1).numpy()
        acc = acc << self.exp if self.exp >= 0 else acc >> -self.exp
        if self.conv is None:
            return _wrap32(acc)  # NasDenseFixed: astype(int32)
        return ((acc + UV_MAX) & (2 * UV_MAX - 1)) - UV_MAX  # NasConvFixed: signed_clamp to 24 bits


def _connections(plan: LavaPlan, quant: QuantPlan, align: bool) -> list[_Conn]:
    conns = []
    for c, q in zip(plan.conns, quant.conns):
        src_shape = (1,) if c.src == CONST else plan.shapes[c.src]
        if c.dense is not None:
            w, conv = lava_dense_weights(q.weights), None
        else:
            w = np.asarray(q.weights, dtype=np.int64)
            conv = {k: c.conv[k] for k in ("stride", "padding", "dilation", "groups")}
        conns.append(_Conn(c.src, c.dst, bool(c.delayed or not align), w, conv, int(q.weight_exp), src_shape))
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


class FixedPointNetwork:
    """A fixed-point Lava plan prepared once for the emulator (integer weights, connection order, neuron
    parameters); :meth:`run` executes it on any number of samples. Preparing is the emulator's start-up."""

    def __init__(self, plan: LavaPlan, quant: QuantPlan, align: bool = True) -> None:
        self.plan, self.quant = plan, quant
        self.conns = _connections(plan, quant, align)
        self.into: dict[str, list[_Conn]] = {n: [] for n in plan.neurons}
        for c in self.conns:
            self.into[c.dst].append(c)
        self.components = _components(plan, self.conns)
        self.size = {m: int(np.prod(spec.shape)) for m, spec in plan.neurons.items()}
        self.params = {}
        for m in plan.neurons:
            q = quant.neurons[m]
            bias = np.asarray(q.bias_mant, dtype=np.int64)
            bias = bias << q.bias_exp if q.bias_exp >= 0 else bias >> -q.bias_exp
            self.params[m] = (int(q.du), int(q.dv), np.array(np.broadcast_to(bias, (self.size[m],))),
                              int(q.vth) << VTH_SHIFT)
        for comp in self.components:
            for m in comp:
                for c in self.into[m]:
                    if c.src in comp and not c.delayed and comp.index(c.src) >= comp.index(m):
                        raise LavaBackendError(f"node {m!r}: a zero-delay connection from {c.src!r} closes a cycle")

    def run(self, x: np.ndarray, want_v: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Spikes (or read-out voltages) and, with ``want_v``, voltages of every neuron node for ``x``
        ``[T, B, *input_shape]`` (see :func:`emulate_plan`)."""
        plan, quant = self.plan, self.quant
        t_len, b = x.shape[:2]
        x_int = np.rint(np.asarray(x, dtype=np.float64) * quant.input_scale).astype(np.int32).astype(np.int64)
        if not np.any((x != 0) & (x != 1)):  # binary input: Lava sends it as 1-bit spikes
            x_int = (x_int != 0).astype(np.int64)
        peak = {plan.input_id: float(np.abs(x_int).max(initial=0))}
        vals: dict[str, np.ndarray] = {plan.input_id: x_int.reshape(t_len, b, -1),
                                       CONST: np.ones((t_len, b, 1), np.int64)}
        volts: dict[str, np.ndarray] = {}
        for comp in self.components:
            self._component(comp, vals, volts, peak, t_len, b)
        neuron_act: dict[str, np.ndarray] = {}
        voltages: dict[str, np.ndarray] = {}
        for nid, spec in plan.neurons.items():
            shape = (t_len, b) + spec.shape
            scale = (spec.v_scale * quant.neurons[nid].v_unit).reshape(spec.shape)
            if spec.record == "v" or want_v:
                voltages[nid] = volts[nid].astype(np.float32).reshape(shape) / scale  # as simulate() reads Lava's
            neuron_act[nid] = voltages[nid] if spec.record == "v" else vals[nid].astype(np.float32).reshape(shape)
        return neuron_act, voltages

    def _component(self, comp: list[str], vals: dict[str, np.ndarray], volts: dict[str, np.ndarray],
                   peak: dict[str, float], t_len: int, b: int) -> None:
        members = set(comp)
        n = self.size
        ext = {m: np.zeros((t_len, b, n[m]), np.int64) for m in comp}
        for m in comp:  # inputs from outside the component, for all steps at once
            for c in self.into[m]:
                if c.src in members:
                    continue
                y = c.apply(vals[c.src].reshape((t_len * b,) + c.src_shape), peak.get(c.src, 1.0))
                y = y.reshape(t_len, b, n[m])
                if c.delayed:
                    y = np.concatenate([np.zeros_like(y[:1]), y[:-1]], axis=0)
                ext[m] += y
        state = {m: (np.zeros((b, n[m]), np.int64), np.zeros((b, n[m]), np.int64)) for m in comp}
        inner = [c for m in comp for c in self.into[m] if c.src in members]
        if not inner:  # no cycle: the whole time loop at once
            for m in comp:
                s, vrec = lif_fixed_run(_wrap32(ext[m]), *state[m], *self.params[m])
                vals[m], volts[m] = s.astype(np.int64), vrec
            return
        out = {m: np.zeros((t_len, b, n[m]), np.int64) for m in comp}
        vrec = {m: np.zeros((t_len, b, n[m]), np.int64) for m in comp}
        buf = {id(c): np.zeros((b, n[c.dst]), np.int64) for c in inner if c.delayed}
        for t in range(t_len):
            for m in comp:
                a_in = ext[m][t].copy()
                for c in self.into[m]:
                    if c.src in members:
                        a_in += buf[id(c)] if c.delayed else c.apply(out[c.src][t])
                s, v = lif_fixed_run(_wrap32(a_in)[None], *state[m], *self.params[m])
                out[m][t], vrec[m][t] = s[0], v[0]
            for c in inner:
                if c.delayed:
                    buf[id(c)] = c.apply(out[c.src][t])
        for m in comp:
            vals[m], volts[m] = out[m], vrec[m]


def emulate_plan(plan: LavaPlan, quant: QuantPlan, x: np.ndarray, align: bool = True,
                 want_v: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run ``plan`` with ``quant`` on ``x`` ``[T, B, *input_shape]`` as ``lava-fixed`` does.

    Returns (per neuron node: spikes ``[T, B, *shape]`` float32, or the voltage in NIR units for non-spiking
    readouts; voltages in NIR units of every neuron node when ``want_v``). Samples are independent, as Lava's
    per-sample reset makes them. Running many inputs through one network: :class:`FixedPointNetwork`.
    """
    return FixedPointNetwork(plan, quant, align).run(x, want_v)
