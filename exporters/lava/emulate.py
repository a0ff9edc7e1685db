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
samples from one matrix product or convolution, then runs its integer time loop (compiled in
``nasflow/kernels/fixed.cpp`` when built, numpy otherwise; tested equal); a component with a cycle (a recurrent
cell) steps its members together. Matrix products and convolutions run in floating point, which is exact for
these integers while every sum stays within the mantissa: the bound (the largest L1 norm of a fan-in times the
input's peak) picks float32 or float64 per connection, and a connection beyond float64's 2^53 is refused.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from exporters.lava.activity import delayed, node_activity
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


MODE_DENSE, MODE_CONV, MODE_INT = 0, 1, 2
"""How :func:`lif_fixed_run` turns an input into Lava's int32 synaptic input: a Dense accumulation (rounded, shifted
by ``weight_exp``, cast to int32), a Conv accumulation (the same, wrapped to 24 bits), or integers used as given."""


def _post(acc: np.ndarray, exp: int, mode: int) -> np.ndarray:
    """What a Lava connection model sends for an exact accumulation ``acc`` (``exporters.lava.models``)."""
    if mode == MODE_INT:
        return acc
    acc = np.rint(acc).astype(np.int64)
    acc = acc << exp if exp >= 0 else acc >> -exp
    if mode == MODE_DENSE:
        return _wrap32(acc)  # NasDenseFixed: astype(int32)
    return ((acc + UV_MAX) & (2 * UV_MAX - 1)) - UV_MAX  # NasConvFixed: signed_clamp to 24 bits


def lif_fixed_run(inputs: list[tuple[torch.Tensor, int, int, int]], u: np.ndarray, v: np.ndarray, du: int, dv: int,
                  bias: np.ndarray, vth_eff: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Lava's integer LIF over ``steps`` steps for a neuron layer with state ``u``, ``v`` ``[B, N]`` (int64, updated
    in place). ``inputs`` holds, per incoming connection, ``(values [T, B, N], weight_exp, mode, delay)``: see
    :data:`MODE_DENSE`; ``delay`` 1 delivers step t − 1 at step t (0 at t = 0). Returns spikes (float32) and ``v``
    after reset (int64), both ``[T, B, N]``. Runs ``nasflow/kernels/fixed.cpp`` when it is built, else numpy
    (:func:`lif_fixed_step`); the two are tested equal."""
    from nasflow.kernels import ops

    kernel = ops()
    if kernel is not None:
        s, vrec = kernel.lava_lif_fixed([x for x, *_ in inputs], [int(e) for _, e, _, _ in inputs],
                                        [int(m) for *_, m, _ in inputs], [int(d) for *_, d in inputs],
                                        torch.from_numpy(u), torch.from_numpy(v), int(du), int(dv),
                                        torch.from_numpy(bias), int(vth_eff), int(steps))
        return s.numpy(), vrec.numpy()
    b, n = u.shape
    a_in = np.zeros((steps, b, n), np.int64)
    for x, exp, mode, delay in inputs:
        y = _post(x.numpy().reshape(steps, b, n), exp, mode)
        if delay:
            a_in[1:] += y[:-1]
        else:
            a_in += y
    a_in = _wrap32(a_in)
    s = np.zeros((steps, b, n), dtype=np.float32)
    vrec = np.zeros((steps, b, n), dtype=np.int64)
    for t in range(steps):
        s[t] = lif_fixed_step(u, v, a_in[t], du, dv, bias, vth_eff)
        vrec[t] = v
    return s, vrec


class _Conn:
    """One connection as the emulator runs it: an exact linear map from integer source values to accumulations."""

    def __init__(self, src: str, dst: str, delayed: bool, w: np.ndarray, conv: dict | None, exp: int,
                 src_shape: tuple[int, ...], delays: np.ndarray | None = None) -> None:
        self.src, self.dst, self.delayed, self.conv, self.exp, self.src_shape = src, dst, delayed, conv, exp, src_shape
        self.delays = delays  # per target neuron, steps (NIR Delay)
        self.mode = MODE_DENSE if conv is None else MODE_CONV
        self.w = w
        # Largest |sum| per unit of input peak: the L1 norm of an output's fan-in.
        self.l1 = float(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
        self._cache: dict[torch.dtype, torch.Tensor] = {}
        self._wt: torch.Tensor | None = None

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
            w = torch.from_numpy(self.w.astype(np.float32 if dtype == torch.float32 else np.float64))
            self._cache[dtype] = w if self.conv is None else w.contiguous(memory_format=torch.channels_last)
        return self._cache[dtype]

    def acc(self, x: torch.Tensor, peak: float = 1.0, binary: bool = False) -> torch.Tensor:
        """Exact accumulations ``[N, n_dst]`` (float) for integer source values ``x`` ``[N, ...]`` up to ``peak``;
        ``binary`` (spikes) lets a conv run event-driven in the compiled kernel, whose cost follows the spikes."""
        from nasflow.kernels import ops

        w = self._weight(peak)
        x = x.to(w.dtype)
        if self.conv is None:
            return x.reshape(x.shape[0], -1) @ w.T
        cv = self.conv
        kernel = ops()
        if binary and kernel is not None and w.dtype == torch.float32:
            if self._wt is None:  # [groups, C/groups, kh, kw, O/groups]: one contiguous column per tap
                o, cg, kh, kw = self.w.shape
                g = cv["groups"]
                self._wt = w.reshape(g, o // g, cg, kh, kw).permute(0, 2, 3, 4, 1).contiguous()
            y = kernel.spike_conv(x.reshape((x.shape[0],) + self.src_shape), self._wt, int(self.w.shape[0]),
                                  *cv["stride"], *cv["padding"], *cv["dilation"], int(cv["groups"]))
            return y.reshape(x.shape[0], -1)
        x = x.reshape((x.shape[0],) + self.src_shape).contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x, w, stride=cv["stride"], padding=cv["padding"], dilation=cv["dilation"], groups=cv["groups"])
        return y.contiguous().reshape(x.shape[0], -1)

    def apply(self, x: torch.Tensor, peak: float = 1.0) -> np.ndarray:
        """What the Lava connection sends (int64 holding int32 values) for source values ``x``."""
        return _post(self.acc(x, peak).numpy(), self.exp, self.mode)


def _connections(plan: LavaPlan, quant: QuantPlan, align: bool) -> list[_Conn]:
    conns = []
    for c, q in zip(plan.conns, quant.conns):
        src_shape = (1,) if c.src == CONST else plan.shapes[c.src]
        if c.dense is not None:
            w, conv = lava_dense_weights(q.weights), None
        else:
            w = np.asarray(q.weights, dtype=np.int64)
            conv = {k: c.conv[k] for k in ("stride", "padding", "dilation", "groups")}
        conns.append(_Conn(c.src, c.dst, bool(c.delayed or not align), w, conv, int(q.weight_exp), src_shape,
                           c.delays))
    return conns


def _components(plan: LavaPlan, conns: list[_Conn]) -> list[list[str]]:
    """Neuron groups in evaluation order: strongly connected components of the connection graph (networkx), in a
    topological order of their condensation, each listed in the zero-delay order the Lava models respect within a
    step (the plan's order)."""
    import networkx as nx

    rank = {n: i for i, n in enumerate(m for m in plan.order if m in plan.neurons)}
    g = nx.DiGraph()
    g.add_nodes_from(rank)
    g.add_edges_from((c.src, c.dst) for c in conns if c.src in rank)
    dag = nx.condensation(g)
    members = {k: sorted(dag.nodes[k]["members"], key=rank.__getitem__) for k in dag.nodes}
    order = nx.lexicographical_topological_sort(dag, key=lambda k: rank[members[k][0]])
    return [members[k] for k in order]


def _delay(acc: torch.Tensor, delays: np.ndarray | None, t_len: int) -> torch.Tensor:
    """Accumulations ``[T·B, N]`` with neuron j's ``delays[j]`` steps late: a NIR Delay in front of the neuron,
    applied before the connection's per-element output rule (which it commutes with)."""
    if delays is None or not np.any(delays):
        return acc
    a = acc.numpy().reshape(t_len, -1, acc.shape[-1])
    return torch.from_numpy(delayed(a, delays).reshape(acc.shape))


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
        self._binary_input = False
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

    def activity(self, x: np.ndarray, voltages: dict[str, np.ndarray] | None = None,
                 nodes: list[str] | None = None) -> dict[str, np.ndarray]:
        """Every node's activity ``[T, B, *shape]`` for ``x``, as ``exporters.lava.simulate`` returns it (neurons
        from the emulated integers, the other nodes evaluated from them); fills ``voltages`` when given. ``nodes``
        limits the non-neuron nodes evaluated to those (e.g. the read-out)."""
        neuron_act, volts = self.run(x, want_v=voltages is not None)
        if voltages is not None:
            voltages.update(volts)
        return node_activity(self.plan.compiled.graph, self.plan, np.asarray(x, dtype=np.float32), neuron_act, nodes)

    def run(self, x: np.ndarray, want_v: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Spikes (or read-out voltages) and, with ``want_v``, voltages of every neuron node for ``x``
        ``[T, B, *input_shape]`` (see :func:`emulate_plan`)."""
        with torch.inference_mode():
            return self._run(x, want_v)

    def _run(self, x: np.ndarray, want_v: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        plan, quant = self.plan, self.quant
        t_len, b = x.shape[:2]
        x_int = np.rint(np.asarray(x, dtype=np.float64) * quant.input_scale).astype(np.int32).astype(np.int64)
        if not np.any((x != 0) & (x != 1)):  # binary input: Lava sends it as 1-bit spikes
            x_int = (x_int != 0).astype(np.int64)
        peak = {plan.input_id: float(np.abs(x_int).max(initial=0))}
        self._binary_input = bool(np.isin(x_int, (0, 1)).all())
        x_t = torch.from_numpy(x_int.reshape(t_len, b, -1).astype(np.float64 if peak[plan.input_id] >= 2**24
                                                                  else np.float32))
        vals: dict[str, torch.Tensor] = {plan.input_id: x_t, CONST: torch.ones((t_len, b, 1))}
        volts: dict[str, np.ndarray] = {}
        for comp in self.components:
            if len(comp) == 1 and not any(c.src == comp[0] for c in self.into[comp[0]]):
                self._layer(comp[0], vals, volts, peak, t_len, b)
            else:
                self._cycle(comp, vals, volts, peak, t_len, b)
        neuron_act: dict[str, np.ndarray] = {}
        voltages: dict[str, np.ndarray] = {}
        for nid, spec in plan.neurons.items():
            shape = (t_len, b) + spec.shape
            if spec.record == "v" or want_v:  # as simulate() reads Lava's
                voltages[nid] = spec.nir_voltage(volts[nid].astype(np.float32).reshape(shape),
                                                 quant.neurons[nid].v_unit)
            neuron_act[nid] = voltages[nid] if spec.record == "v" else vals[nid].numpy().reshape(shape)
        return neuron_act, voltages

    def _state(self, m: str, b: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((b, self.size[m]), np.int64), np.zeros((b, self.size[m]), np.int64)

    def _layer(self, m: str, vals: dict[str, torch.Tensor], volts: dict[str, np.ndarray], peak: dict[str, float],
               t_len: int, b: int) -> None:
        """A neuron layer outside any cycle: every input for all steps at once, then its time loop."""
        inputs = [(_delay(c.acc(vals[c.src].reshape((t_len * b,) + c.src_shape), peak.get(c.src, 1.0),
                                c.src in self.plan.neurons or (c.src == self.plan.input_id and self._binary_input)),
                          c.delays, t_len), c.exp, c.mode, int(c.delayed)) for c in self.into[m]]
        s, vrec = lif_fixed_run(inputs, *self._state(m, b), *self.params[m], t_len)
        vals[m], volts[m] = torch.from_numpy(s), vrec

    def _cycle(self, comp: list[str], vals: dict[str, torch.Tensor], volts: dict[str, np.ndarray],
               peak: dict[str, float], t_len: int, b: int) -> None:
        """A strongly connected group (a recurrent cell): inputs from outside at once, then step by step."""
        members = set(comp)
        n = self.size
        ext = {m: np.zeros((t_len, b, n[m]), np.int64) for m in comp}
        for m in comp:
            for c in self.into[m]:
                if c.src in members:
                    continue
                y = c.apply(vals[c.src].reshape((t_len * b,) + c.src_shape), peak.get(c.src, 1.0))
                ext[m] += delayed(np.asarray(y).reshape(t_len, b, n[m]), _lags(c, n[m]))
        state = {m: self._state(m, b) for m in comp}
        out = {m: np.zeros((t_len, b, n[m]), np.float32) for m in comp}
        vrec = {m: np.zeros((t_len, b, n[m]), np.int64) for m in comp}
        lags = {id(c): _lags(c, n[c.dst]) for m in comp for c in self.into[m] if c.src in members}
        for t in range(t_len):
            for m in comp:
                a_in = ext[m][t].copy()
                for c in self.into[m]:
                    if c.src not in members:
                        continue
                    for lag in np.unique(lags[id(c)]):  # the sums of step t - lag reach the elements with that lag
                        if t >= lag:
                            y = np.asarray(c.apply(torch.from_numpy(out[c.src][t - lag])))
                            a_in += np.where(lags[id(c)] == lag, y, 0)
                s, v = lif_fixed_run([(torch.from_numpy(a_in[None]), 0, MODE_INT, 0)], *state[m], *self.params[m], 1)
                out[m][t], vrec[m][t] = s[0], v[0]
        for m in comp:
            vals[m], volts[m] = torch.from_numpy(out[m]), vrec[m]


def _lags(c: _Conn, n: int) -> np.ndarray:
    """Steps by which connection ``c``'s sums reach each of its ``n`` targets: Lava's one-step buffer and Delays."""
    lag = np.full(n, int(c.delayed), np.int64)
    return lag if c.delays is None else lag + np.asarray(c.delays, np.int64).reshape(-1)


def emulate_plan(plan: LavaPlan, quant: QuantPlan, x: np.ndarray, align: bool = True,
                 want_v: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run ``plan`` with ``quant`` on ``x`` ``[T, B, *input_shape]`` as ``lava-fixed`` does.

    Returns (per neuron node: spikes ``[T, B, *shape]`` float32, or the voltage in NIR units for non-spiking
    readouts; voltages in NIR units of every neuron node when ``want_v``). Samples are independent, as Lava's
    per-sample reset makes them. Running many inputs through one network: :class:`FixedPointNetwork`.
    """
    return FixedPointNetwork(plan, quant, align).run(x, want_v)
