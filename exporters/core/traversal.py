"""Traversal of NIR graphs: inputs, evaluation order, back edges, flattening, parameter checks (numpy + nir).

NIR stores recurrence as bare cycles (REFERENCE.md §6). Every simulator and cost model uses one rule to
turn a graph into a step function: a depth-first search from the Input nodes (in the order of
``graph.nodes``), following edges in the order of ``graph.edges``; an edge into a node that is still on
the DFS stack is a *back edge* (self-loops included). Back edges carry the source's output from step
t-1; all other edges deliver within the same step, in the topological order of the remaining DAG.

A cycle that passes through a ``Delay`` node is broken at that Delay instead: every edge into a Delay that
lies on a cycle is a back edge, and the Delay holds the rest of its lag (``delay/dt − 1`` steps, see
``delay_steps``), so the loop lags by exactly what the Delay says. This is how a value that depends on the
previous step alone (SNASNet's backward edges into a node with no same-step input) has a NIR form: the
structural rule alone would let the search enter the cycle elsewhere and cut the wrong edge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np

from exporters.core.errors import NIRFormatError

__all__ = [
    "Topology",
    "back_edges",
    "check_finite_parameters",
    "delay_steps",
    "flatten_graph",
    "input_ids",
    "output_ids",
    "predecessors",
    "require_input",
    "topological_order",
    "topology",
]


def input_ids(graph: nir.NIRGraph) -> list[str]:
    """Ids of the graph's ``nir.Input`` nodes, in the order of ``graph.nodes``."""
    return [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]


def output_ids(graph: nir.NIRGraph) -> list[str]:
    """Ids of the graph's ``nir.Output`` nodes, in the order of ``graph.nodes``."""
    return [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]


def _prefix(where: str | Path | None) -> str:
    return f"{where}: " if where is not None else ""


def require_input(graph: nir.NIRGraph, where: str | Path | None = None) -> None:
    """Refuse a graph without an ``Input`` node: nothing says where events enter, so no backend can feed it and no
    hardware model can route its first layer's traffic. ``where`` (a file name) prefixes the message."""
    if not input_ids(graph):
        raise NIRFormatError(f"{_prefix(where)}graph has no Input node; add nir.Input feeding the first layer")


_NOT_PARAMETERS = ("input_type", "output_type", "metadata", "nodes", "edges")


_TEXT_PARAMETERS = ("padding",)  # NIR allows "same"/"valid" here


def _non_finite(value: object) -> tuple[int, int | str]:
    """(NaN count, infinite count) of a numeric parameter value; (0, 0) for anything that is not a float array;
    (-1, dtype name) for an array of text, objects or complex values, which no NIR parameter is."""
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "SUOcVM":
        return -1, str(value.dtype)
    if not isinstance(value, (np.ndarray, np.generic, float, list, tuple)):
        return 0, 0
    try:
        a = np.asarray(value)
    except ValueError:  # ragged sequences are not parameters
        return 0, 0
    if a.dtype.kind not in "fc" or np.isfinite(a).all():
        return 0, 0
    nan = int(np.isnan(a).sum())
    return nan, int(a.size - np.isfinite(a).sum()) - nan


def check_finite_parameters(graph: nir.NIRGraph, where: str | Path | None = None) -> None:
    """Refuse NaN or infinite values in any float parameter of any node (weights, biases, thresholds, time
    constants, r, v_leak, v_reset, ...; nested graphs included), naming the node and the parameter.

    Backends would otherwise run silently: a NaN weight never crosses a threshold, so a simulation writes
    plausible-looking results. ``where`` (a file name) prefixes the message.
    """
    for nid, name, nan, inf in _non_finite_parameters(graph, ""):
        if nan < 0:
            raise NIRFormatError(f"{_prefix(where)}node {nid!r} parameter {name!r} holds {inf} values, not numbers; "
                                 "fix or re-export the graph")
        counts = [f"{n} {label}" for n, label in ((nan, "NaN"), (inf, "infinite")) if n]
        raise NIRFormatError(
            f"{_prefix(where)}node {nid!r} parameter {name!r} has {' and '.join(counts)} value(s); "
            "fix or re-export the graph"
        )


def _non_finite_parameters(graph: nir.NIRGraph, prefix: str) -> Iterable[tuple[str, str, int, int | str]]:
    for nid, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            yield from _non_finite_parameters(node, f"{prefix}{nid}.")
            continue
        for name, value in vars(node).items():
            if name not in _NOT_PARAMETERS and name not in _TEXT_PARAMETERS:
                nan, inf = _non_finite(value)
                if nan or inf:
                    yield f"{prefix}{nid}", name, nan, inf


def _check_edges(graph: nir.NIRGraph) -> None:
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise NIRFormatError(f"edge ({src!r}, {dst!r}) refers to node {end!r}, which is not in the graph")


def _delays_on_cycles(graph: nir.NIRGraph, out_edges: dict[str, list[str]]) -> set[str]:
    """``Delay`` nodes that lie on a cycle (their strongly connected component has an edge back to them)."""
    delays = [k for k, n in graph.nodes.items() if isinstance(n, nir.Delay)]
    found: set[str] = set()
    for d in delays:
        seen, stack = set(), list(out_edges[d])
        while stack:
            k = stack.pop()
            if k == d:
                found.add(d)
                break
            if k not in seen:
                seen.add(k)
                stack.extend(out_edges[k])
    return found


def _dfs(graph: nir.NIRGraph) -> tuple[list[str], set[tuple[str, str]]]:
    """Iterative DFS; returns (reverse post-order, back edges)."""
    _check_edges(graph)
    out_edges: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for src, dst in graph.edges:
        out_edges[src].append(dst)
    cut = _delays_on_cycles(graph, out_edges)
    back: set[tuple[str, str]] = {(s, d) for s, d in graph.edges if d in cut}
    if back:
        out_edges = {k: [d for d in v if d not in cut] for k, v in out_edges.items()}
    state: dict[str, int] = {}  # 1 = on stack, 2 = finished
    post: list[str] = []
    # Inputs first, then any node no input reaches (so that every node gets an order).
    roots = input_ids(graph) + list(graph.nodes)
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, i = stack[-1]
            succ = out_edges[node]
            if i < len(succ):
                stack[-1] = (node, i + 1)
                nxt = succ[i]
                s = state.get(nxt)
                if s == 1:
                    back.add((node, nxt))
                elif s is None:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                post.append(node)
                stack.pop()
    return post[::-1], back


def topological_order(graph: nir.NIRGraph) -> list[str]:
    """Node ids in evaluation order: a topological order of the graph without its back edges."""
    return _dfs(graph)[0]


def back_edges(graph: nir.NIRGraph) -> set[tuple[str, str]]:
    """Edges ``(src, dst)`` that close a cycle; they deliver ``src``'s output of step t-1 to ``dst`` at step t."""
    return _dfs(graph)[1]


def delay_steps(node: nir.NIRNode, node_id: str, dt: float, fed_back: bool) -> np.ndarray:
    """Whole steps by which a ``Delay`` node holds its input back (per element, ``NIRFormatError`` if not whole).

    ``fed_back``: its inputs are back edges (it lies on a cycle), which already deliver one step late, so it
    holds one step less; such a Delay must be at least one step long (it is what breaks the cycle).
    """
    steps = np.asarray(node.delay, dtype=np.float64) / float(dt)
    whole = np.rint(steps)
    if np.any(np.abs(steps - whole) > 1e-6) or np.any(whole < 0):
        raise NIRFormatError(f"node {node_id!r}: Delay values must be whole, non-negative multiples of dt={dt:g} s")
    if fed_back:
        if np.any(whole < 1):
            raise NIRFormatError(f"node {node_id!r}: a Delay on a cycle must be at least one step (dt={dt:g} s): it "
                                 "is what delivers the loop's value one step late")
        whole = whole - 1
    return whole.astype(np.int64)


def predecessors(graph: nir.NIRGraph, node_id: str, include_back: bool = True) -> list[str]:
    """Sources of the edges into ``node_id`` (order of ``graph.edges``); back-edge sources only if asked."""
    back = back_edges(graph) if not include_back else set()
    return [s for s, d in graph.edges if d == node_id and (s, d) not in back]


@dataclass(frozen=True)
class Topology:
    """Order, back edges and adjacency of a graph, computed once (edge order kept in every list)."""

    order: tuple[str, ...]
    back: frozenset[tuple[str, str]]
    preds: dict[str, tuple[str, ...]]  # same-step (forward) sources of each node
    back_preds: dict[str, tuple[str, ...]]  # back-edge sources (delivered one step late)
    succs: dict[str, tuple[str, ...]]  # targets of every edge out of each node
    sources: dict[str, tuple[tuple[str, bool], ...]]  # (source, is back edge) of every edge into each node


def topology(graph: nir.NIRGraph) -> Topology:
    """Order, back edges and adjacency of ``graph`` (one DFS)."""
    order, back = _dfs(graph)
    preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
    bpreds: dict[str, list[str]] = {k: [] for k in graph.nodes}
    succs: dict[str, list[str]] = {k: [] for k in graph.nodes}
    sources: dict[str, list[tuple[str, bool]]] = {k: [] for k in graph.nodes}
    for s, d in graph.edges:
        (bpreds if (s, d) in back else preds)[d].append(s)
        succs[s].append(d)
        sources[d].append((s, (s, d) in back))
    return Topology(tuple(order), frozenset(back), _freeze(preds), _freeze(bpreds), _freeze(succs),
                    _freeze(sources))


def _freeze(m: dict) -> dict:
    return {k: tuple(v) for k, v in m.items()}


def flatten_graph(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Inline nested ``NIRGraph`` nodes: node ``g``'s inner nodes become ``g.<id>``; its Input becomes an
    identity node ``g.<input id>`` and its Output the identity node ``g`` (so ``g`` keeps meaning its output)."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}  # nested id -> id receiving its input
    for nid, node in graph.nodes.items():
        if not isinstance(node, nir.NIRGraph):
            nodes[nid] = node
            continue
        inner = flatten_graph(node)
        ins, outs = input_ids(inner), output_ids(inner)
        if len(ins) != 1 or len(outs) != 1:
            raise NIRFormatError(f"nested graph {nid!r}: needs exactly one Input and one Output, has {ins} / {outs}")
        rename = {k: f"{nid}.{k}" for k in inner.nodes}
        rename[outs[0]] = nid
        for k, n in inner.nodes.items():
            nodes[rename[k]] = nir.Scale(scale=np.array(1.0)) if isinstance(n, (nir.Input, nir.Output)) else n
        edges.extend((rename[a], rename[b]) for a, b in inner.edges)
        entry[nid] = rename[ins[0]]
    edges = [(a, entry.get(b, b)) for a, b in graph.edges] + edges
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata or {}), type_check=False)
