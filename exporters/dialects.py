"""Producer dialects: rewrite a third-party NIR graph so that NIR's reference semantics (``exporters.nir_torch``,
REFERENCE.md §6) compute what the *producing* framework computes.

NIR fixes the continuous-time equations, not how a framework steps them, and every exporter leaves out part of its
discretisation: snnTorch resets on the step after a spike and by subtraction, Norse starts membranes at ``v_leak``
and jumps its synaptic current by the whole input, and the files of frameworks that pin nir < 1.0.6 say nothing
about the reset. ``apply_dialect(graph, name)`` returns a new, flattened graph whose parameters and
``metadata["conventions"]`` (``exporters.core.conventions``) state those rules explicitly, so every backend either
runs them or refuses them by name (Lava resets in the step it fires, to 0 only). The default dialect ``"nir"``
changes nothing; ``producer_hint`` names the dialect a graph's metadata suggests without applying it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import nir
import numpy as np

from exporters.core.conventions import Conventions
from exporters.core.errors import NIRFormatError
from exporters.core.kinds import node_type
from exporters.core.traversal import flatten_graph, topology

__all__ = ["DIALECTS", "apply_dialect", "producer_hint"]

#: snnTorch's exporter hard-codes this step (snntorch/export_nir.py).
SNNTORCH_DT = 1e-4


def _arr(v: object) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def _with(node: nir.NIRNode, **changes: object) -> nir.NIRNode:
    """A copy of ``node`` with ``changes`` (NIR nodes are dataclasses; their metadata is kept)."""
    fields = {k: v for k, v in vars(node).items() if k not in ("input_type", "output_type")}
    fields.update(changes)
    meta = fields.pop("metadata", None)
    out = type(node)(**fields)
    if meta:
        out.metadata = dict(meta)
    return out


def _snntorch_decay(nid: str, tau: np.ndarray, r: np.ndarray, dt: float, what: str) -> tuple[np.ndarray, np.ndarray]:
    """snnTorch's ``β = clamp(1 − dt/τ, 0, 1)`` and gain ``r·dt/τ`` (1 in every file it writes); ``τ = ∞`` (its
    ``beta=1``, an integrator) gives β = 1 and gain 1 where the plain reading would compute ∞·0."""
    inf = ~np.isfinite(tau)
    k = np.where(inf, 0.0, dt / np.where(inf, 1.0, tau))
    beta = np.clip(1.0 - k, 0.0, 1.0)
    gain = np.where(inf | ~np.isfinite(r), 1.0, np.where(np.isfinite(r), r, 0.0) * k)
    if np.any(~np.isfinite(gain)):
        raise NIRFormatError(f"node {nid!r}: {what} has no finite gain r·dt/τ under the snntorch dialect")
    return beta, gain


def _tau_r(beta: np.ndarray, gain: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """``τ, r`` whose Euler step is ``v ← β v + gain·I`` (``β = 1``: τ = ∞ is not representable, so the caller
    writes an IF)."""
    k = 1.0 - beta
    return dt / k, gain / k


def _snntorch(graph: nir.NIRGraph, dt: float) -> tuple[nir.NIRGraph, Conventions]:
    nodes = dict(graph.nodes)
    for nid, node in graph.nodes.items():
        t = node_type(node)
        if t == "LIF":
            beta, gain = _snntorch_decay(nid, _arr(node.tau), _arr(node.r), dt, "tau")
            if np.all(beta == 1.0):
                nodes[nid] = nir.IF(r=gain, v_threshold=_arr(node.v_threshold), v_reset=np.zeros_like(gain))
            elif np.any(beta == 1.0):
                raise NIRFormatError(f"node {nid!r}: some neurons have β = 1 (τ = ∞) and others leak; split the layer")
            else:
                tau, r = _tau_r(beta, gain, dt)
                nodes[nid] = _with(node, tau=tau, r=r, v_leak=_arr(node.v_leak) * 0.0, v_reset=np.zeros_like(tau))
        elif t == "CubaLIF":
            alpha, g_in = _snntorch_decay(nid, _arr(node.tau_syn), _arr(node.w_in), dt, "tau_syn")
            beta, gain = _snntorch_decay(nid, _arr(node.tau_mem), _arr(node.r), dt, "tau_mem")
            if np.any(alpha == 1.0) or np.any(beta == 1.0):
                raise NIRFormatError(f"node {nid!r}: a CubaLIF with τ = ∞ (β or α = 1) has no Euler form in NIR")
            tau_syn, w_in = _tau_r(alpha, g_in, dt)
            tau_mem, r = _tau_r(beta, gain, dt)
            nodes[nid] = _with(node, tau_syn=tau_syn, w_in=w_in, tau_mem=tau_mem, r=r,
                               v_reset=np.zeros_like(_arr(node.v_threshold)))
    edges = list(graph.edges)
    # RLeaky's recurrent nn.Linear adds its bias from the first step on (recurrent(0) = b); a NIR back edge
    # carries nothing at t = 0, so the bias moves onto the neuron: v_leak + r·b for a LIF.
    topo = topology(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    for src, dst in sorted(topo.back):
        node = nodes[src]
        if node_type(node) != "Affine" or not np.any(_arr(node.bias)):
            continue
        target = nodes[dst]
        if node_type(target) != "LIF":
            raise NIRFormatError(f"node {src!r}: a recurrent Affine with a bias into {dst!r} ({node_type(target)}); "
                                 "the snntorch dialect folds such a bias into a LIF's v_leak only")
        nodes[src] = nir.Linear(weight=_arr(node.weight))
        nodes[dst] = _with(target, v_leak=_arr(target.v_leak) + _arr(target.r) * _arr(node.bias))
    conv = Conventions(dt=dt, threshold=">", reset="subtract", reset_timing="next_step")
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata), type_check=False), conv


def _uniform(nid: str, values: np.ndarray, what: str) -> float:
    v = np.unique(values)
    if v.size != 1:
        raise NIRFormatError(f"node {nid!r}: {what} differs between neurons ({v.min():g}..{v.max():g}); nasflow's "
                             "conventions start every neuron of a node at one value")
    return float(v[0])


def _norse(graph: nir.NIRGraph, dt: float) -> tuple[nir.NIRGraph, Conventions]:
    nodes = dict(graph.nodes)
    v_init: dict[str, float] = {}
    for nid, node in graph.nodes.items():
        t = node_type(node)
        if t in ("LIF", "LI", "CubaLIF", "CubaLI"):  # Norse starts these at v_leak
            v_init[nid] = _uniform(nid, _arr(node.v_leak), "v_leak (Norse's initial membrane)")
        if t == "IF":
            v_init[nid] = _uniform(nid, _arr(node.v_reset), "v_reset (Norse's initial membrane)")
        if t in ("CubaLIF", "CubaLI"):  # i ← i + I (the whole input), not i + dt/τ_syn·w_in·I
            nodes[nid] = _with(node, w_in=_arr(node.w_in) * _arr(node.tau_syn) / dt)
    conv = Conventions(dt=dt, threshold=">", reset="to_v_reset", v_init="v_reset" if any(v_init.values()) else "zero",
                       v_init_nodes={k: v for k, v in v_init.items() if v})
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata), type_check=False), conv


def _sinabs(graph: nir.NIRGraph, dt: float) -> tuple[nir.NIRGraph, Conventions]:
    """Sinabs steps ``v ← α v + (1 − α) x`` with ``α = exp(−dt/τ)`` (``norm_input``, its default; τ counted in steps,
    so dt = 1), fires on ``v ≥ θ`` and subtracts θ in the same step. IF (``v ← v + x``) is NIR's own."""
    nodes = dict(graph.nodes)
    for nid, node in graph.nodes.items():
        if node_type(node) == "LIF":
            alpha = np.exp(-dt / _arr(node.tau))
            nodes[nid] = _with(node, tau=dt / (1.0 - alpha), v_reset=np.zeros_like(_arr(node.v_threshold)))
        elif node_type(node) in ("CubaLIF", "CubaLI", "LI"):
            raise NIRFormatError(f"node {nid!r}: Sinabs writes no {node_type(node)}; this graph does not fit the "
                                 "sinabs dialect")
    conv = Conventions(dt=dt, threshold=">=", reset="subtract")
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata), type_check=False), conv


def _rockpool_fits(graph: nir.NIRGraph) -> None:
    for nid, node in graph.nodes.items():
        if node_type(node) in ("LIF", "IF", "LI", "CubaLI"):
            raise NIRFormatError(f"node {nid!r}: Rockpool's exporter writes its LIF neurons as CubaLIF; a "
                                 f"{node_type(node)} does not fit the rockpool dialect")


def _rockpool_dt(graph: nir.NIRGraph) -> float | None:
    """Rockpool writes no dt, but every CubaLIF's ``r = τ_mem·exp(−dt/τ_mem)/dt``, which falls strictly with dt:
    solved by bisection (in log dt) for each neuron; they must agree."""
    _rockpool_fits(graph)
    found = []
    for node in graph.nodes.values():
        if node_type(node) != "CubaLIF":
            continue
        for tau, r in zip(_arr(node.tau_mem).ravel(), np.broadcast_to(_arr(node.r), _arr(node.tau_mem).shape).ravel()):
            lo, hi = math.log(tau) - 30.0, math.log(tau) + 5.0
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                dt = math.exp(mid)
                lo, hi = (mid, hi) if tau * math.exp(-dt / tau) / dt > r else (lo, mid)
            found.append(math.exp(0.5 * (lo + hi)))
    if not found:
        return None
    if max(found) > min(found) * (1 + 1e-3):
        raise NIRFormatError(f"the CubaLIF nodes imply different steps ({min(found):g}..{max(found):g} s) under "
                             "Rockpool's r = τ·exp(−dt/τ)/dt: pass --dt")
    return float(np.median(found))


def _rockpool(graph: nir.NIRGraph, dt: float) -> tuple[nir.NIRGraph, Conventions]:
    """Rockpool's LIFTorch: ``i ← β (i + x)``, ``v ← α v + i`` (α, β = exp(−dt/τ_mem), exp(−dt/τ_syn)), fire on
    ``v ≥ θ``, subtract θ in the same step; its exporter keeps the batch dimension of the sample in Input/Output."""
    _rockpool_fits(graph)
    nodes = dict(graph.nodes)
    for nid, node in graph.nodes.items():
        t = node_type(node)
        if t in ("Input", "Output"):
            key = "input" if t == "Input" else "output"
            types = node.input_type if t == "Input" else node.output_type
            shape = tuple(int(v) for v in np.ravel(types[key]))
            while len(shape) > 1 and shape[0] == 1:  # Rockpool's layers are 1-D: the leading ones are batch
                shape = shape[1:]
            if shape != tuple(int(v) for v in np.ravel(types[key])):
                nodes[nid] = nir.Input(input_type={"input": np.array(shape)}) if t == "Input" else nir.Output(
                    output_type={"output": np.array(shape)})
        elif t == "CubaLIF":
            alpha, beta = np.exp(-dt / _arr(node.tau_mem)), np.exp(-dt / _arr(node.tau_syn))
            nodes[nid] = _with(node, tau_syn=dt / (1.0 - beta), w_in=_arr(node.w_in) * beta / (1.0 - beta),
                               tau_mem=dt / (1.0 - alpha), r=1.0 / (1.0 - alpha),
                               v_reset=np.zeros_like(_arr(node.v_threshold)))
    conv = Conventions(dt=dt, threshold=">=", reset="subtract")
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata), type_check=False), conv


_Rewrite = Callable[[nir.NIRGraph, float], tuple[nir.NIRGraph, Conventions]]

#: name → (rewrite, default dt (a number, a function of the graph, or None: the user must give one), why)
_DIALECTS: dict[str, tuple[_Rewrite | None, float | Callable[[nir.NIRGraph], float | None] | None, str]] = {
    "nir": (None, None, ""),
    "snntorch": (_snntorch, SNNTORCH_DT, "snnTorch's exporter writes τ = dt/(1−β) with dt = 1e-4 s"),
    "sinabs": (_sinabs, 1.0, "Sinabs counts τ in steps"),
    "rockpool": (_rockpool, _rockpool_dt, "Rockpool writes no dt; it is solved from r = τ_mem·exp(−dt/τ_mem)/dt"),
    "norse": (_norse, None, "Norse ≤ 1.1.0 writes τ·dt_export as tau (norse#411): pass dt = the module's dt × "
              "the exporter's dt (1e-6 s for the defaults); files from a fixed exporter take the module's dt"),
}
DIALECTS = ("nir", "snntorch", "norse", "sinabs", "rockpool")


def apply_dialect(graph: nir.NIRGraph, dialect: str, dt: float | None = None) -> nir.NIRGraph:
    """``graph`` rewritten so that NIR's reference semantics compute what ``dialect``'s framework computes.

    ``dt`` (seconds) overrides the graph's ``metadata["dt"]`` and the dialect's default step. Raises
    ``NIRFormatError`` naming the node and the rule when the graph does not fit the dialect.
    """
    if dialect not in DIALECTS:
        raise NIRFormatError(f"unknown dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
    rewrite, default_dt, why = _DIALECTS[dialect]
    if rewrite is None:
        return graph
    meta = graph.metadata if isinstance(graph.metadata, Mapping) else {}
    flat = flatten_graph(graph)
    step = dt if dt is not None else meta.get("dt", default_dt(flat) if callable(default_dt) else default_dt)
    if step is None:
        raise NIRFormatError(f"the {dialect} dialect needs the time step: pass --dt ({why})")
    step = float(np.asarray(step))
    if not (step > 0 and math.isfinite(step)):
        raise NIRFormatError(f"dt must be a positive number of seconds, got {step!r}")
    out, conv = rewrite(flat, step)
    out.metadata = {**dict(meta), **conv.to_metadata(), "dialect": dialect}
    return out


#: metadata values that name a producer, lower-cased → dialect
_PRODUCERS = {"snntorch": "snntorch", "norse": "norse", "sinabs": "sinabs", "rockpool": "rockpool"}


def producer_hint(graph: nir.NIRGraph) -> str | None:
    """The dialect a graph's metadata names as its producer (``producer``, ``source``, ``framework`` or
    ``exporter``), or None; reading never applies it (the default stays NIR's semantics)."""
    meta = graph.metadata if isinstance(graph.metadata, Mapping) else {}
    if meta.get("dialect"):
        return None
    for key in ("producer", "source", "framework", "exporter"):
        value = meta.get(key)
        text = (value.decode() if isinstance(value, bytes) else str(value or "")).lower()
        for name, dialect in _PRODUCERS.items():
            if name in text:
                return dialect
    return None
