"""A NIR graph compiled to a Lava plan: one ``LavaNeuron`` per neuron node and one ``LavaConnection`` per
(source, target) pair of the collapsed linear paths between them (the mapping is described in
``exporters.lava``). The plan is floating point in NIR layout; ``exporters.lava.quantize`` turns it into
Loihi fixed point and ``exporters.lava.build`` into Lava processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import nir
import numpy as np

from exporters.core.compile import CompiledGraph, LinearPath, compile_graph
from exporters.core.errors import NIRFormatError
from exporters.core.kinds import FIRING_TYPES, node_type
from exporters.lava.errors import LavaBackendError
from exporters.lava.linalg import conv_like, dense_matrix, eval_into, split_matrices

__all__ = ["CONST", "LavaBackendError", "LavaNeuron", "LavaConnection", "LavaPlan", "build_plan"]

#: Source id of the constant (all-ones) input that carries biases Lava cannot add to ``bias_mant``.
CONST = "__const__"


@dataclass
class LavaNeuron:
    """One LIFReset process. Arrays are flat in NIR order; ``gain`` multiplies every incoming weight."""

    node_id: str
    kind: str
    shape: tuple[int, ...]
    du: float
    dv: float
    vth: float
    gain: np.ndarray
    bias_v: np.ndarray
    v_scale: np.ndarray  # Lava v = v_scale * NIR v (threshold normalisation), for voltage readouts
    record: str  # "s" (spikes) or "v" (voltage, non-spiking readouts)


@dataclass
class LavaConnection:
    """One connection process from ``src`` (Input, neuron or the constant source) into neuron ``dst``.

    ``dense`` is ``[n_dst, n_src]`` in NIR flat order with the target's gain applied; ``conv`` holds a NIR
    conv (``weight`` ``(Cout, Cin, kh, kw)``, gain applied, ``stride``, ``padding``, ``dilation``, ``groups``).
    """

    src: str
    dst: str
    path: list[str]
    delayed: bool
    dense: np.ndarray | None = None
    conv: dict | None = None
    delays: np.ndarray | None = None  # per target neuron, whole steps (a NIR Delay in front of the neuron)

    @property
    def weights(self) -> np.ndarray:
        return self.dense if self.dense is not None else self.conv["weight"]


@dataclass
class LavaPlan:
    """A NIR graph compiled to Lava processes (before quantisation and layout)."""

    compiled: CompiledGraph
    input_id: str
    shapes: dict[str, tuple[int, ...]]
    neurons: dict[str, LavaNeuron]
    conns: list[LavaConnection]
    order: list[str]
    back: set[tuple[str, str]]
    threshold_ge: bool
    notes: list[str] = field(default_factory=list)

    @property
    def n_processes(self) -> int:
        """Lava processes of one run: input source, constant source if any, neurons, connections."""
        const = any(c.src == CONST for c in self.conns)
        return 1 + int(const) + len(self.neurons) + len(self.conns)


def _per_neuron(node: nir.NIRNode, attr: str, n: int, default: float | None = None) -> np.ndarray:
    v = getattr(node, attr, None)
    if v is None:
        if default is None:
            raise LavaBackendError(f"{attr} missing")
        v = default
    a = np.asarray(v, dtype=np.float64).ravel()
    if a.size not in (1, n):
        raise LavaBackendError(f"{attr} has {a.size} values for {n} neurons")
    return np.broadcast_to(a, (n,)).astype(np.float64)


def _uniform(values: np.ndarray, node_id: str, kind: str, what: str) -> float:
    if not np.allclose(values, values.flat[0], rtol=1e-6, atol=0):
        raise LavaBackendError(
            f"node {node_id!r} ({kind}): {what} differs between neurons ({values.min():g}..{values.max():g}); "
            "Lava's LIF has one decay per population: split the layer or use one time constant"
        )
    return float(values.flat[0])


def _conventions(compiled: CompiledGraph, node_id: str) -> bool:
    """Whether ``node_id`` fires on ``v >= θ``; refuses conventions Lava's LIF cannot run (by node name)."""
    try:
        conv = compiled.conventions.for_node(node_id)
    except NIRFormatError as err:
        raise LavaBackendError(f"{err} (use threshold '>' or '>=' and reset 'to_v_reset')") from None
    if conv.reset != "to_v_reset":
        raise LavaBackendError(
            f"node {node_id!r}: reset convention {conv.reset!r}, but Lava's LIF resets to 0 only; "
            "train/export with a hard reset to 0"
        )
    if conv.v0 != 0:
        raise LavaBackendError(f"node {node_id!r}: initial voltage {conv.v0} != 0; Lava's LIF starts and resets at 0")
    return conv.threshold == ">="


def _lava_neuron(node_id: str, node: nir.NIRNode, shape: tuple[int, ...], dt: float | None,
                 threshold_ge: bool) -> LavaNeuron:
    """Map NIR neuron parameters onto LIF(du, dv, vth, bias) plus a per-neuron input gain."""
    kind = node_type(node)
    n = int(np.prod(shape))

    def p(attr: str, default: float | None = None) -> np.ndarray:
        return _per_neuron(node, attr, n, default)

    def need_dt() -> float:
        if dt is None:
            raise LavaBackendError(
                f"node {node_id!r} ({kind}) needs the time step: pass dt= or set graph.metadata['dt'] (seconds)"
            )
        return dt

    if kind in FIRING_TYPES:
        if np.any(p("v_reset", 0.0) != 0):
            raise LavaBackendError(
                f"node {node_id!r} ({kind}): v_reset != 0, but Lava's LIF resets to 0 only; "
                "shift v_leak/v_threshold so the reset is 0, or use another backend"
            )
    ones, zeros = np.ones(n), np.zeros(n)
    if kind == "Threshold":
        du, dv, gain, bias, theta = 1.0, 1.0, ones, zeros, p("threshold")
    elif kind in ("IF", "I"):
        r = p("r", 1.0)
        du, dv, gain, bias = 1.0, 0.0, r, zeros
        theta = p("v_threshold") if kind == "IF" else None
    elif kind in ("LIF", "LI"):
        a = need_dt() / p("tau")
        dv = _uniform(a, node_id, kind, "tau")
        du, gain, bias = 1.0, a * p("r", 1.0), a * p("v_leak", 0.0)
        theta = p("v_threshold") if kind == "LIF" else None
    elif kind in ("CubaLIF", "CubaLI"):
        a_syn = need_dt() / p("tau_syn")
        a_mem = need_dt() / p("tau_mem")
        du = _uniform(a_syn, node_id, kind, "tau_syn")
        dv = _uniform(a_mem, node_id, kind, "tau_mem")
        # Lava's u is NIR's i scaled by a_mem·r, so it enters v without a factor.
        gain = a_syn * p("w_in", 1.0) * a_mem * p("r", 1.0)
        bias = a_mem * p("v_leak", 0.0)
        theta = p("v_threshold") if kind == "CubaLIF" else None
    else:
        raise LavaBackendError(f"node {node_id!r}: {kind} is not a neuron the Lava backend knows")
    if theta is None:  # non-spiking readout: never fires, voltage is recorded
        return LavaNeuron(node_id, kind, shape, du, dv, math.inf, gain, bias, ones, "v")
    if np.any(theta <= 0):
        raise LavaBackendError(f"node {node_id!r} ({kind}): threshold must be > 0 for Lava's v > vth")
    if np.allclose(theta, theta[0], rtol=0, atol=0):
        vth, k = float(theta[0]), ones
    else:  # per-neuron thresholds: scale each neuron's v so that every threshold is 1
        vth, k = 1.0, 1.0 / theta
    if threshold_ge:  # v >= θ equals v > (largest float below θ)
        vth = float(np.nextafter(vth, -np.inf))
    return LavaNeuron(node_id, kind, shape, du, dv, vth, gain * k, bias * k, k, "s")


def build_plan(graph: nir.NIRGraph | CompiledGraph, dt: float | None = None) -> LavaPlan:
    """Compile a NIR graph to neuron and connection specs (raises ``LavaBackendError`` naming the node).

    The graph goes through ``exporters.core.compile.compile_graph`` (checks, flattening, shapes, order,
    conventions, linear paths); ``dt`` overrides ``graph.metadata["dt"]``.
    """
    try:
        compiled = graph if isinstance(graph, CompiledGraph) else compile_graph(graph, dt)
    except NIRFormatError as err:
        raise LavaBackendError(str(err)) from err
    if len(compiled.inputs) != 1:
        raise LavaBackendError(
            f"the Lava backend needs exactly one Input node, the graph has {list(compiled.inputs) or 'none'}")
    graph = compiled.graph
    for nid in graph.nodes:
        k = compiled.kind(nid)
        if k.name == "ReLU":
            raise LavaBackendError(
                f"node {nid!r} is an analog ReLU layer (a hybrid network's non-spiking neuron): nasflow's Lava "
                "backend builds LIF processes that emit binary spikes and has no graded-spike ReLU process, so it "
                "refuses the layer rather than run it as spiking; simulate hybrids with --backend torch")
        if k.category not in ("neuron", "linear") and k.name not in ("Input", "Output", "Delay"):
            raise LavaBackendError(f"node {nid!r}: {k.name} cannot be represented on Lava by this backend")
    try:
        feeds = {nid: compiled.paths_into(nid) for nid in compiled.populations}
    except NIRFormatError as err:
        raise LavaBackendError(str(err)) from None
    topo = compiled.topology
    preds = {k: [s for s, _ in topo.sources[k]] for k in graph.nodes}
    plan = LavaPlan(compiled, compiled.inputs[0], dict(compiled.shapes), {}, [], list(topo.order), set(topo.back),
                    False)
    ge = False
    for nid, pop in compiled.populations.items():
        node_ge = _conventions(compiled, nid) and pop.kind.name != "Threshold"
        ge = ge or node_ge
        plan.neurons[nid] = _lava_neuron(nid, graph.nodes[nid], pop.shape, compiled.conventions.dt, node_ge)
    for spec in plan.neurons.values():
        _plan_inputs(graph, plan, preds, feeds[spec.node_id], spec)
    for nid, spec in plan.neurons.items():
        if spec.record == "v" and any(c.src == nid for c in plan.conns):
            raise LavaBackendError(f"node {nid!r} ({spec.kind}) does not spike; Lava can only read it out, not feed "
                                   "it to further layers")
    plan.threshold_ge = ge
    return plan


def _plan_inputs(graph: nir.NIRGraph, plan: LavaPlan, preds: dict, paths: list[LinearPath], spec: LavaNeuron
                 ) -> None:
    """Connection specs and bias for neuron ``spec`` from the linear paths that feed it."""
    nid, shapes = spec.node_id, plan.shapes
    total = eval_into(graph, preds, shapes, nid, {}, 1, bias=True).ravel()
    # Biases reached through a back edge start one step late (a back edge carries 0 at t = 0).
    direct = eval_into(graph, preds, shapes, nid, {}, 1, bias=True, cut=plan.back).ravel()
    late = total - direct
    if np.any(late != 0):
        plan.conns.append(LavaConnection(CONST, nid, [], True, dense=(spec.gain * late)[:, None]))
    if np.any(direct != 0):
        if spec.kind in ("CubaLIF", "CubaLI"):  # a constant current is filtered by the synapse: keep it an input
            plan.conns.append(LavaConnection(CONST, nid, [], False, dense=(spec.gain * direct)[:, None]))
        else:
            spec.bias_v = spec.bias_v + spec.gain * direct
    by_src: dict[str, list[tuple[list[str], int]]] = {}
    for p in paths:
        if plan.compiled.kind(p.source).name == "Delay":
            _plan_delayed(graph, plan, preds, p, spec)
            continue
        by_src.setdefault(p.source, []).append((list(p.nodes), p.n_back))
    for src, plist in by_src.items():
        nbs = {nb for _, nb in plist}
        if max(nbs) > 1:
            raise LavaBackendError(
                f"node {nid!r}: paths from {src!r} cross {sorted(nbs)} back edges; Lava can delay a connection by "
                "one step only, so every path from one source must cross 0 or 1 back edges"
            )
        if len(nbs) > 1:  # same-step and one-step-late paths from one source: one connection each
            for nb, m in enumerate(split_matrices(graph, preds, shapes, src, nid, plan.back)):
                paths_nb = sorted({p for pl, b in plist if b == nb for p in pl})
                plan.conns.append(LavaConnection(src, nid, paths_nb, bool(nb), dense=m * spec.gain[:, None]))
            continue
        delayed = nbs == {1}
        conv = conv_like(graph, plist[0][0], shapes, src) if len(plist) == 1 else None
        if conv is not None:
            g = spec.gain.reshape(conv["weight"].shape[0], -1)
            if np.allclose(g, g[:, :1]):
                conv["weight"] = conv["weight"] * g[:, 0][:, None, None, None]
                conv["in_shape"] = shapes[src]
                plan.conns.append(LavaConnection(src, nid, plist[0][0], delayed, conv=conv))
                continue
        m = dense_matrix(graph, preds, shapes, src, nid) * spec.gain[:, None]
        plan.conns.append(LavaConnection(src, nid, sorted({p for pl, _ in plist for p in pl}), delayed, dense=m))


def _plan_delayed(graph: nir.NIRGraph, plan: LavaPlan, preds: dict, path: LinearPath, spec: LavaNeuron) -> None:
    """Connections through a NIR ``Delay`` straight in front of neuron ``spec``: each linear path into the Delay
    becomes one connection whose sums reach each target neuron ``delay / dt`` steps late (per neuron)."""
    nid, d, shapes = spec.node_id, path.source, plan.shapes
    if path.nodes or path.n_back or shapes[d] != spec.shape:
        raise LavaBackendError(f"node {d!r}: a Delay must feed neuron {nid!r} directly (no linear node or back edge "
                               "between them) for the Lava backends")
    dt = plan.compiled.conventions.dt
    if dt is None:
        raise LavaBackendError(f"node {d!r}: a Delay needs the time step: set graph.metadata['dt'] or pass dt=")
    steps = np.asarray(graph.nodes[d].delay, dtype=np.float64) / dt
    if np.any(np.abs(steps - np.rint(steps)) > 1e-6) or np.any(steps < 0):
        raise LavaBackendError(f"node {d!r}: delays must be whole, non-negative numbers of steps of dt={dt:g}")
    delays = np.broadcast_to(np.rint(steps).astype(np.int64), spec.shape).reshape(-1).copy()
    if np.any(eval_into(graph, preds, shapes, d, {}, 1, bias=True) != 0):
        raise LavaBackendError(f"node {d!r}: a bias in front of a Delay is not supported; move it behind the Delay")
    for q in plan.compiled.paths_into(d):
        if q.n_back or plan.compiled.kind(q.source).name == "Delay":
            raise LavaBackendError(f"node {d!r}: the path from {q.source!r} crosses a back edge or another Delay")
        conv = conv_like(graph, list(q.nodes), shapes, q.source)
        g = None if conv is None else spec.gain.reshape(conv["weight"].shape[0], -1)
        if conv is not None and np.allclose(g, g[:, :1]):
            conv["weight"] = conv["weight"] * g[:, 0][:, None, None, None]
            conv["in_shape"] = shapes[q.source]
            plan.conns.append(LavaConnection(q.source, nid, list(q.nodes) + [d], False, conv=conv, delays=delays))
            continue
        m = dense_matrix(graph, preds, shapes, q.source, d) * spec.gain[:, None]
        plan.conns.append(LavaConnection(q.source, nid, list(q.nodes) + [d], False, dense=m, delays=delays))


def analog_refusal(graph: nir.NIRGraph | CompiledGraph) -> str | None:
    """The backend's reason for refusing a graph with analog (ReLU) layers, or None when it has none."""
    compiled = graph if isinstance(graph, CompiledGraph) else compile_graph(graph)
    analog = [nid for nid in compiled.graph.nodes if compiled.kind(nid).name == "ReLU"]
    if not analog:
        return None
    try:
        build_plan(compiled)
    except LavaBackendError as err:
        return str(err).splitlines()[0]
    return None
