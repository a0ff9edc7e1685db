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
from exporters.core.traversal import delay_steps
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
    v_scale: np.ndarray  # Lava v = v_scale * (NIR v − v_offset) (threshold normalisation), for voltage readouts
    record: str  # "s" (spikes) or "v" (voltage, non-spiking readouts)
    v_offset: np.ndarray | float = 0.0  # the NIR membrane Lava's 0 stands for (a non-zero v_reset / initial state)

    def nir_voltage(self, lava_v: np.ndarray, unit: float = 1.0) -> np.ndarray:
        """NIR membrane values ``[..., *shape]`` from Lava's (``unit``: Lava units per float unit, fixed point)."""
        scale = (self.v_scale * unit).reshape(self.shape)
        return lava_v / scale + np.broadcast_to(self.v_offset, (int(np.prod(self.shape)),)).reshape(self.shape)


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


def _conventions(compiled: CompiledGraph, node_id: str) -> tuple[bool, float]:
    """Whether ``node_id`` fires on ``v >= θ``, and its initial membrane; refuses conventions Lava's LIF cannot run
    (by node name)."""
    try:
        conv = compiled.conventions.for_node(node_id)
    except NIRFormatError as err:
        raise LavaBackendError(f"{err} (use threshold '>' or '>=' and reset 'to_v_reset')") from None
    if conv.reset != "to_v_reset":
        raise LavaBackendError(
            f"node {node_id!r}: reset convention {conv.reset!r}, but Lava's LIF resets to 0 only; "
            "train/export with a hard reset to 0"
        )
    if conv.reset_timing != "same_step":
        raise LavaBackendError(
            f"node {node_id!r}: reset timing {conv.reset_timing!r} (the spike of step t-1 resets during step t, as "
            "snnTorch's reset_delay does), but Lava's LIF resets in the step it fires; simulate with --backend torch"
        )
    return conv.threshold == ">=", conv.v0


def _lava_neuron(node_id: str, node: nir.NIRNode, shape: tuple[int, ...], dt: float | None,
                 threshold_ge: bool, v0: float = 0.0) -> LavaNeuron:
    """Map NIR neuron parameters onto LIF(du, dv, vth, bias) plus a per-neuron input gain.

    Lava's LIF starts and resets at 0. A neuron that resets to ``v_reset = c`` and starts there too (``v0``) runs
    exactly as Lava's ``v' = v − c``: threshold ``θ − c``, leak towards ``v_leak − c``; readouts add ``c`` back.
    """
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

    offset = np.full(n, float(v0))
    if kind in FIRING_TYPES and kind != "Threshold":
        c = p("v_reset", 0.0)
        if np.any(c != v0):
            raise LavaBackendError(
                f"node {node_id!r} ({kind}): resets to v_reset = {c.min():g}..{c.max():g} but starts at {v0:g}; "
                "Lava's LIF starts where it resets, so nasflow runs a non-zero v_reset only on neurons that start "
                "there (conventions v_init 'v_reset'); shift v_leak/v_threshold so the reset is 0, or use another "
                "backend"
            )
    elif kind == "Threshold":
        offset = np.zeros(n)
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
    bias = bias - dv * offset  # v' = v − offset leaks towards v_leak − offset (an integrator: dv = 0, no change)
    v_offset = offset if np.any(offset) else 0.0
    if theta is None:  # non-spiking readout: never fires, voltage is recorded
        return LavaNeuron(node_id, kind, shape, du, dv, math.inf, gain, bias, ones, "v", v_offset)
    theta = theta - offset
    if np.any(theta <= 0):
        raise LavaBackendError(f"node {node_id!r} ({kind}): threshold must be above the reset for Lava's v > vth")
    if np.allclose(theta, theta[0], rtol=0, atol=0):
        vth, k = float(theta[0]), ones
    else:  # per-neuron thresholds: scale each neuron's v so that every threshold is 1
        vth, k = 1.0, 1.0 / theta
    if threshold_ge:  # v >= θ equals v > (largest float below θ)
        vth = float(np.nextafter(vth, -np.inf))
    return LavaNeuron(node_id, kind, shape, du, dv, vth, gain * k, bias * k, k, "s", v_offset)


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
        node_ge, v0 = _conventions(compiled, nid)
        node_ge = node_ge and pop.kind.name != "Threshold"
        ge = ge or node_ge
        plan.neurons[nid] = _lava_neuron(nid, graph.nodes[nid], pop.shape, compiled.conventions.dt, node_ge, v0)
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
    through_delay: dict[str, list[LinearPath]] = {}
    for p in paths:
        if plan.compiled.kind(p.source).name == "Delay":
            through_delay.setdefault(p.source, []).append(p)
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
    for d_paths in through_delay.values():
        _plan_delayed(graph, plan, preds, d_paths, spec)


@dataclass
class _Term:
    """One summand of a Delay's input: from ``src`` through ``nodes``, ``lag`` steps held in Delays before this one
    and ``n_back`` back edges; ``matrix`` maps the source into the Delay's elements (None: the direct linear path,
    built by the caller as a conv or dense matrix)."""

    src: str
    nodes: list[str]
    lag: int
    n_back: int
    matrix: np.ndarray | None


def _fed_back(plan: LavaPlan, d: str) -> bool:
    return any(is_back for _, is_back in plan.compiled.topology.sources[d])


def _steps(graph: nir.NIRGraph, plan: LavaPlan, d: str) -> np.ndarray:
    dt = plan.compiled.conventions.dt
    if dt is None:
        raise LavaBackendError(f"node {d!r}: a Delay needs the time step: set graph.metadata['dt'] or pass dt=")
    try:
        return delay_steps(graph.nodes[d], d, dt, _fed_back(plan, d))
    except NIRFormatError as err:
        raise LavaBackendError(str(err)) from None


def _terms(graph: nir.NIRGraph, plan: LavaPlan, preds: dict, d: str, seen: frozenset[str]) -> list[_Term]:
    """What Delay ``d`` sums: linear paths from sources, its biases (``CONST``), and through other Delays (whose lag
    is added; they must hold every element equally long, so the linear map between them commutes with the lag)."""
    if d in seen:
        raise LavaBackendError(f"node {d!r}: a loop of linear nodes and Delays alone (no neuron on it) has no Lava "
                               "process to hold its state; put a neuron on the loop or simulate with --backend torch")
    shapes, fed_back = plan.shapes, _fed_back(plan, d)
    out: list[_Term] = []
    bias = eval_into(graph, preds, shapes, d, {}, 1, bias=True).reshape(-1)
    if np.any(bias != 0):  # a constant that arrives once the lag has passed: a delayed constant input
        out.append(_Term(CONST, [d], 0, int(fed_back), bias[:, None]))
    inner: dict[str, list[LinearPath]] = {}
    for q in plan.compiled.paths_into(d):
        if q.n_back > 1:
            raise LavaBackendError(f"node {d!r}: the path from {q.source!r} crosses {q.n_back} back edges; Lava "
                                   "delays a connection by one step plus the Delays on it")
        if plan.compiled.kind(q.source).name == "Delay":
            inner.setdefault(q.source, []).append(q)
        else:
            out.append(_Term(q.source, list(q.nodes), 0, q.n_back, None))
    for d2, qs in inner.items():
        steps = _steps(graph, plan, d2)
        if np.unique(steps).size > 1:
            raise LavaBackendError(f"node {d2!r}: a Delay with per-element delays must feed a neuron directly for the "
                                   f"Lava backends (here it feeds Delay {d!r})")
        link = dense_matrix(graph, preds, shapes, d2, d)
        between = sorted({n for q in qs for n in q.nodes})
        for t in _terms(graph, plan, preds, d2, seen | {d}):
            m = t.matrix if t.matrix is not None else dense_matrix(graph, preds, shapes, t.src, d2)
            out.append(_Term(t.src, t.nodes + [d2] + between, t.lag + int(steps.flat[0]),
                             t.n_back + max(q.n_back for q in qs), link @ m))
    return out


def _plan_delayed(graph: nir.NIRGraph, plan: LavaPlan, preds: dict, paths: list[LinearPath], spec: LavaNeuron
                  ) -> None:
    """Connections through a NIR ``Delay`` in front of neuron ``spec``: every source the Delay sums (directly or
    through further Delays) becomes one connection whose sums reach each target neuron as many steps late as the
    Delays and back edges on its way say.

    Linear nodes between the Delay and the neuron are folded into the connection when the Delay holds every element
    equally long (a delay commutes with a linear map then). A connection that crosses a back edge (a Delay on a
    cycle is fed by back edges, ``exporters.core.traversal``) uses Lava's own one-step buffer for one step of its lag
    and a delay line for the rest.
    """
    nid, d, shapes = spec.node_id, paths[0].source, plan.shapes
    between = sorted({n for p in paths for n in p.nodes})
    if any(p.n_back for p in paths):
        raise LavaBackendError(f"node {d!r}: a back edge between a Delay and neuron {nid!r} is not supported by the "
                               "Lava backends; put the Delay on the cycle itself")
    steps = _steps(graph, plan, d)
    if between:
        if np.unique(steps).size > 1:
            raise LavaBackendError(f"node {d!r}: a Delay with per-element delays must feed neuron {nid!r} directly "
                                   f"(here through {', '.join(between)}) for the Lava backends")
        after = dense_matrix(graph, preds, shapes, d, nid)
        identity = after.shape[0] == after.shape[1] and np.array_equal(after, np.eye(after.shape[0]))
        steps = np.broadcast_to(steps.reshape(-1)[:1], spec.shape)
    else:
        after, identity = None, True
    steps = np.broadcast_to(steps, spec.shape).reshape(-1)
    for t in _terms(graph, plan, preds, d, frozenset()):
        lag = steps + t.lag + t.n_back
        delayed = t.n_back > 0
        delays = lag - int(delayed)
        delays = delays.copy() if np.any(delays) else None
        nodes = t.nodes + [d] + between
        conv = conv_like(graph, t.nodes, shapes, t.src) if identity and t.matrix is None else None
        g = None if conv is None else spec.gain.reshape(conv["weight"].shape[0], -1)
        if conv is not None and np.allclose(g, g[:, :1]):
            conv["weight"] = conv["weight"] * g[:, 0][:, None, None, None]
            conv["in_shape"] = shapes[t.src]
            plan.conns.append(LavaConnection(t.src, nid, nodes, delayed, conv=conv, delays=delays))
            continue
        m = t.matrix if t.matrix is not None else dense_matrix(graph, preds, shapes, t.src, d)
        if after is not None:
            m = after @ m
        plan.conns.append(LavaConnection(t.src, nid, nodes, delayed, dense=m * spec.gain[:, None], delays=delays))


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
