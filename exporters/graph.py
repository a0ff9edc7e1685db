"""Structure of NIR graphs: evaluation order, back edges and shape inference (numpy + nir only).

NIR stores recurrence as bare cycles (REFERENCE.md §6). Every simulator in this package uses one rule to
turn a graph into a step function: a depth-first search from the Input nodes (in the order of
``graph.nodes``), following edges in the order of ``graph.edges``; an edge into a node that is still on
the DFS stack is a *back edge* (self-loops included). Back edges carry the source's output from step
t-1; all other edges deliver within the same step, in the topological order of the remaining DAG.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import nir
import numpy as np

__all__ = [
    "NIRFormatError",
    "back_edges",
    "forward_edges",
    "input_ids",
    "output_ids",
    "predecessors",
    "successors",
    "topological_order",
    "infer_shapes",
    "node_type",
    "NEURON_TYPES",
    "check_finite_parameters",
    "require_input",
]

#: NIR node types whose output is a spike train (counted as spikes, REFERENCE.md §8).
NEURON_TYPES = ("IF", "LIF", "CubaLIF")

#: Node types that act element-wise: output shape = input shape.
_ELEMENTWISE = ("Output", "Scale", "Delay", "Threshold", "I", "IF", "LI", "LIF", "CubaLI", "CubaLIF")


class NIRFormatError(ValueError):
    """A NIR graph (or file) that cannot be interpreted; the message names the file and/or node."""


def node_type(node: nir.NIRNode) -> str:
    """NIR type name of a node (the class name, e.g. ``"LIF"``)."""
    return type(node).__name__


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


def _non_finite(value: object) -> tuple[int, int]:
    """(NaN count, infinite count) of a numeric parameter value; (0, 0) for anything that is not a float array."""
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
        counts = [f"{n} {label}" for n, label in ((nan, "NaN"), (inf, "infinite")) if n]
        raise NIRFormatError(
            f"{_prefix(where)}node {nid!r} parameter {name!r} has {' and '.join(counts)} value(s); "
            "fix or re-export the graph"
        )


def _non_finite_parameters(graph: nir.NIRGraph, prefix: str) -> Iterable[tuple[str, str, int, int]]:
    for nid, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            yield from _non_finite_parameters(node, f"{prefix}{nid}.")
            continue
        for name, value in vars(node).items():
            if name not in _NOT_PARAMETERS:
                nan, inf = _non_finite(value)
                if nan or inf:
                    yield f"{prefix}{nid}", name, nan, inf


def _check_edges(graph: nir.NIRGraph) -> None:
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise NIRFormatError(f"edge ({src!r}, {dst!r}) refers to node {end!r}, which is not in the graph")


def _dfs(graph: nir.NIRGraph) -> tuple[list[str], set[tuple[str, str]]]:
    """Iterative DFS; returns (reverse post-order, back edges)."""
    _check_edges(graph)
    out_edges: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for src, dst in graph.edges:
        out_edges[src].append(dst)
    state: dict[str, int] = {}  # 1 = on stack, 2 = finished
    post: list[str] = []
    back: set[tuple[str, str]] = set()
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


def forward_edges(graph: nir.NIRGraph) -> list[tuple[str, str]]:
    """The edges that are not back edges, in the order of ``graph.edges``."""
    back = back_edges(graph)
    return [tuple(e) for e in graph.edges if tuple(e) not in back]


def predecessors(graph: nir.NIRGraph, node_id: str, include_back: bool = True) -> list[str]:
    """Sources of the edges into ``node_id`` (order of ``graph.edges``); back-edge sources only if asked."""
    back = back_edges(graph) if not include_back else set()
    return [s for s, d in graph.edges if d == node_id and (s, d) not in back]


def successors(graph: nir.NIRGraph, node_id: str) -> list[str]:
    """Targets of the edges out of ``node_id`` (order of ``graph.edges``)."""
    return [d for s, d in graph.edges if s == node_id]


# ----------------------------------------------------------------------------------------------- shapes


def _pair(v: object, name: str, node_id: str) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int).ravel()
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size == 2:
        return int(a[0]), int(a[1])
    raise NIRFormatError(f"node {node_id!r}: {name} must be an int or a pair, got {v!r}")


def _declared(node: nir.NIRNode, key: str, port: str) -> tuple[int, ...] | None:
    types = getattr(node, key, None)
    if not isinstance(types, dict) or not types:
        return None
    val = types.get(port, next(iter(types.values())))
    if val is None:
        return None
    arr = np.atleast_1d(np.asarray(val))
    if arr.size == 0 or arr.dtype == object:
        return None
    return tuple(int(x) for x in arr.ravel())


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_shape(node: nir.NIRNode, node_id: str, shp: tuple[int, ...], dims: int) -> tuple[int, ...]:
    w = np.asarray(node.weight)
    if w.ndim != dims + 2:
        raise NIRFormatError(f"node {node_id!r} (Conv{dims}d): weight must have {dims + 2} dims, got {w.shape}")
    cin = w.shape[1] * int(node.groups)
    if len(shp) != dims + 1 or shp[0] != cin:
        raise NIRFormatError(
            f"node {node_id!r} (Conv{dims}d): input shape {shp} does not match weight {w.shape} "
            f"with groups={node.groups} (expected ({cin}, ...) with {dims} spatial dims)"
        )
    out = [w.shape[0]]
    for i in range(dims):
        k = w.shape[2 + i]
        s = _pair(node.stride, "stride", node_id)[i] if dims == 2 else int(np.ravel(node.stride)[0])
        d = _pair(node.dilation, "dilation", node_id)[i] if dims == 2 else int(np.ravel(node.dilation)[0])
        if isinstance(node.padding, str):
            if node.padding == "same":
                out.append(shp[1 + i])
                continue
            p = 0
        else:
            p = _pair(node.padding, "padding", node_id)[i] if dims == 2 else int(np.ravel(node.padding)[0])
        out.append(_conv_out(shp[1 + i], k, s, p, d))
    if min(out) <= 0:
        raise NIRFormatError(f"node {node_id!r} (Conv{dims}d): input {shp} too small for weight {w.shape}")
    return tuple(out)


def _pool_shape(node: nir.NIRNode, node_id: str, shp: tuple[int, ...]) -> tuple[int, ...]:
    if len(shp) != 3:
        raise NIRFormatError(f"node {node_id!r} ({node_type(node)}): needs a (C, H, W) input, got {shp}")
    k = _pair(node.kernel_size, "kernel_size", node_id)
    s = _pair(node.stride, "stride", node_id)
    p = _pair(node.padding, "padding", node_id)
    out = (shp[0], _conv_out(shp[1], k[0], s[0], p[0], 1), _conv_out(shp[2], k[1], s[1], p[1], 1))
    if min(out) <= 0:
        raise NIRFormatError(f"node {node_id!r} ({node_type(node)}): input {shp} too small for kernel {k}")
    return out


def _flatten_shape(node: nir.Flatten, shp: tuple[int, ...]) -> tuple[int, ...]:
    # Indices exclude the batch dim (as nir's own calc_flatten_output does).
    n = len(shp)
    start = int(node.start_dim) % n if n else 0
    end = int(node.end_dim) % n if n else 0
    return tuple(shp[:start]) + (int(np.prod(shp[start : end + 1])),) + tuple(shp[end + 1 :])


def _check_params(node: nir.NIRNode, node_id: str, shp: tuple[int, ...]) -> None:
    """Per-neuron parameters must be scalars or broadcast to the node's shape."""
    for name, val in vars(node).items():
        if name in ("input_type", "output_type", "metadata") or not isinstance(val, np.ndarray):
            continue
        if val.size <= 1:
            continue
        try:
            np.broadcast_shapes(val.shape, shp)
        except ValueError:
            raise NIRFormatError(
                f"node {node_id!r} ({node_type(node)}): parameter {name} has shape {val.shape}, "
                f"which does not fit the node's shape {shp}"
            ) from None
        if np.broadcast_shapes(val.shape, shp) != tuple(shp):
            raise NIRFormatError(
                f"node {node_id!r} ({node_type(node)}): parameter {name} of shape {val.shape} is larger than "
                f"the node's shape {shp}"
            )


def _node_shape(node: nir.NIRNode, node_id: str, shp: tuple[int, ...]) -> tuple[int, ...]:
    t = node_type(node)
    if t in _ELEMENTWISE:
        _check_params(node, node_id, shp)
        return shp
    if t in ("Affine", "Linear"):
        w = np.asarray(node.weight)
        if w.ndim != 2 or not shp or shp[-1] != w.shape[1]:
            raise NIRFormatError(
                f"node {node_id!r} ({t}): weight {w.shape} expects inputs of size {w.shape[-1]}, got shape {shp}"
            )
        b = getattr(node, "bias", None)
        if b is not None and np.asarray(b).size not in (1, w.shape[0]):
            raise NIRFormatError(f"node {node_id!r} (Affine): bias {np.shape(b)} does not match weight {w.shape}")
        return tuple(shp[:-1]) + (w.shape[0],)
    if t == "Conv2d":
        return _conv_shape(node, node_id, shp, 2)
    if t == "Conv1d":
        return _conv_shape(node, node_id, shp, 1)
    if t in ("SumPool2d", "AvgPool2d"):
        return _pool_shape(node, node_id, shp)
    if t == "Flatten":
        return _flatten_shape(node, shp)
    if t == "NIRGraph":
        inner = infer_shapes(node, input_shapes={i: shp for i in input_ids(node)})
        outs = output_ids(node)
        if len(outs) != 1:
            raise NIRFormatError(f"node {node_id!r} (nested NIRGraph): needs exactly one Output node, has {outs}")
        return inner[outs[0]]
    raise NIRFormatError(f"node {node_id!r}: unknown NIR node type {t!r}")


def _merge_inputs(graph: nir.NIRGraph, node_id: str, srcs: Iterable[str], shapes: dict) -> tuple[int, ...] | None:
    shp = None
    for s in srcs:
        if s not in shapes:
            continue
        if shp is not None and shapes[s] != shp:
            raise NIRFormatError(
                f"node {node_id!r}: inputs have different shapes ({shp} and {shapes[s]} from {s!r}); "
                "fan-in sums its inputs, so they must match"
            )
        shp = shapes[s]
    return shp


def _check_conv_declared(node: nir.NIRNode, node_id: str, shp: tuple[int, ...]) -> None:
    # nir derives a conv's input_type/output_type from ``input_shape`` with weight.shape[1] as the channel
    # count (wrong for groups > 1) and one kernel size for all dims: check only the spatial input_shape.
    spatial = getattr(node, "input_shape", None)
    if spatial is None:
        return
    want = tuple(int(v) for v in np.atleast_1d(np.asarray(spatial)).ravel())
    if want != tuple(shp[1:]):
        raise NIRFormatError(
            f"node {node_id!r} ({node_type(node)}): declared spatial input_shape {want}, but receives {shp}"
        )


def infer_shapes(
    graph: nir.NIRGraph, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> dict[str, tuple[int, ...]]:
    """Output shape of every node (without batch and time), checked against the nodes' declared types.

    Raises ``NIRFormatError`` naming the node on a mismatch (declared vs computed, fan-in of different
    shapes, weights that do not fit their input), on an unknown node type, or when the graph has no Input.
    """
    require_input(graph)
    order, back = _dfs(graph)
    preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for s, d in graph.edges:
        if (s, d) not in back:
            preds[d].append(s)
    shapes: dict[str, tuple[int, ...]] = {}
    in_shapes: dict[str, tuple[int, ...]] = {}
    for nid in order:
        node = graph.nodes[nid]
        if isinstance(node, nir.Input):
            given = (input_shapes or {}).get(nid)
            decl = _declared(node, "input_type", "input")
            shp = tuple(int(x) for x in given) if given is not None else decl
            if shp is None:
                raise NIRFormatError(f"node {nid!r} (Input): no shape declared")
            if given is not None and decl is not None and tuple(given) != decl:
                raise NIRFormatError(f"node {nid!r} (Input): declared shape {decl}, but fed {tuple(given)}")
            shapes[nid] = shp
            continue
        shp = _merge_inputs(graph, nid, preds[nid], shapes)
        if shp is None:
            shp = _declared(node, "input_type", "input")
        if shp is None:
            raise NIRFormatError(f"node {nid!r} ({node_type(node)}): has no input edge and no declared input shape")
        out = _node_shape(node, nid, shp)
        if node_type(node) in ("Conv1d", "Conv2d"):
            _check_conv_declared(node, nid, shp)
            shapes[nid], in_shapes[nid] = out, shp
            continue
        decl_in = _declared(node, "input_type", "input")
        if decl_in is not None and decl_in != shp:
            raise NIRFormatError(
                f"node {nid!r} ({node_type(node)}): declared input shape {decl_in}, but receives {shp}"
            )
        decl_out = _declared(node, "output_type", "output")
        if decl_out is not None and decl_out != out:
            raise NIRFormatError(
                f"node {nid!r} ({node_type(node)}): declared output shape {decl_out}, computed {out} from input {shp}"
            )
        shapes[nid] = out
        in_shapes[nid] = shp
    for s, d in back:
        if node_type(graph.nodes[d]) == "Input":
            raise NIRFormatError(f"edge ({s!r}, {d!r}) feeds an Input node")
        if shapes[s] != in_shapes[d]:
            raise NIRFormatError(
                f"back edge ({s!r}, {d!r}): source shape {shapes[s]} does not match the other inputs of {d!r}"
            )
    return shapes
