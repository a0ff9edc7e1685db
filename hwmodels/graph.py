"""NIR graph → layer table: neuron populations, their incoming connections and per-connection numerics.

A *layer* is what occupies neurons on a chip: a neuron node (IF, LIF, CubaLIF, LI, I, CubaLI, Threshold) or a
weight node whose output feeds no neuron (an accumulator, e.g. a read-out Affine in front of ``output``).
A *connection* is one weight node (Affine, Linear, Conv1d, Conv2d) from its spike *source* (the nearest neuron,
accumulator or Input node upstream, through Flatten / SumPool2d / AvgPool2d / Scale) to its target layer.

Shapes are normalised: 1-D ``(n,)`` stays, 2-D ``(C, L)`` becomes ``(C, 1, L)``, 3-D stays ``(C, H, W)``. The
*units* of a 3-D node are its rows ``(c, y)`` (``W`` neurons each), numbered spatial-major (``u = y·C + c``) so that a
block of consecutive units is a band of rows across channels (what a convolution's receptive field needs); of a 1-D
node, its neurons. Layers are split into blocks of whole units, and traffic is counted per unit (exact unless
weights are zero for part of a row).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np

from exporters.graph import check_finite_parameters, require_input

__all__ = [
    "rows_to_units",
    "units_to_rows",
    "Connection",
    "GraphError",
    "Layer",
    "LayerTable",
    "build_layer_table",
    "SPIKING",
    "NON_SPIKING",
]

SPIKING = ("LIF", "IF", "CubaLIF", "Threshold")
NON_SPIKING = ("LI", "I", "CubaLI")
WEIGHTS = ("Affine", "Linear", "Conv1d", "Conv2d")
STATELESS = ("Flatten", "SumPool2d", "AvgPool2d", "Scale")


class GraphError(ValueError):
    """A NIR graph hwmodels cannot map; the message names the node and what would make it work."""


def norm_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``(n,)`` → ``(n,)``, ``(C, L)`` → ``(C, 1, L)``, ``(C, H, W)`` unchanged."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return (shape[0], 1, shape[1])
    if len(shape) in (1, 3):
        return shape
    raise GraphError(f"shape {shape}: hwmodels handles 1-D (n), 2-D (C, L) and 3-D (C, H, W) node shapes")


def rows_to_units(a: np.ndarray) -> np.ndarray:
    """``[..., C, H]`` per-row values → ``[..., H·C]`` in unit order (spatial-major)."""
    return np.swapaxes(a, -1, -2).reshape(*a.shape[:-2], -1)


def units_to_rows(a: np.ndarray, c: int, h: int) -> np.ndarray:
    """``[..., H·C]`` in unit order → ``[..., C, H]``."""
    return np.swapaxes(a.reshape(*a.shape[:-1], h, c), -1, -2)


def _pair(v, n: int = 2) -> tuple[int, ...]:
    a = np.atleast_1d(np.asarray(v)).astype(int).ravel()
    return tuple(int(a[0]) for _ in range(n)) if a.size == 1 else tuple(int(x) for x in a[:n])


@dataclass
class ConvGeom:
    """2-D convolution / pooling geometry on normalised 3-D shapes."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        kh = (self.kernel[0] - 1) * self.dilation[0] + 1
        kw = (self.kernel[1] - 1) * self.dilation[1] + 1
        return (
            (h + 2 * self.padding[0] - kh) // self.stride[0] + 1,
            (w + 2 * self.padding[1] - kw) // self.stride[1] + 1,
        )


@dataclass
class Connection:
    """One weight node feeding a layer; numerics are cached on first use."""

    node_id: str
    kind: str  # "affine" or "conv"
    source: str  # spike source node id (neuron, accumulator or Input)
    path: list[str]  # stateless node ids between source and weight node, in order
    target: str  # target layer id
    in_shape: tuple[int, ...]  # normalised input shape of the weight node
    out_shape: tuple[int, ...]  # normalised output shape
    nz: np.ndarray  # bool mask of non-zero weights: (out, in) for affine, (Cout, Cin/g, kh, kw) for conv
    geom: ConvGeom | None = None
    static_binary: bool = True  # fed by a spiking node through Flatten only
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))


@dataclass
class Layer:
    """A neuron population on the chip."""

    node_id: str
    type: str
    shape: tuple[int, ...]  # normalised
    spiking: bool
    incoming: list[Connection] = field(default_factory=list)

    @property
    def n_neurons(self) -> int:
        return int(np.prod(self.shape))

    @property
    def unit_size(self) -> int:
        return self.shape[2] if len(self.shape) == 3 else 1

    @property
    def n_units(self) -> int:
        return self.n_neurons // self.unit_size


@dataclass
class LayerTable:
    """Layers in topological order, connections, node shapes and the graph's stateless nodes."""

    graph: nir.NIRGraph
    layers: dict[str, Layer]
    connections: list[Connection]
    shapes: dict[str, tuple[int, ...]]  # normalised output shape of every node
    input_ids: list[str]
    order: list[str]  # node ids in topological order (back edges ignored)

    def outgoing(self, source: str) -> list[Connection]:
        """Connections whose spike source is ``source``."""
        return [c for c in self.connections if c.source == source]

    def sources(self) -> list[str]:
        """Every node that emits events towards a layer (neurons, accumulators, inputs), in order."""
        seen = {c.source for c in self.connections}
        return [n for n in self.order if n in seen]


def _node_type(node: nir.NIRNode) -> str:
    return type(node).__name__


def _topo_order(nodes: dict, edges: list[tuple[str, str]]) -> list[str]:
    """Topological order ignoring back edges (DFS from inputs, then everything else)."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
    order, state = [], {}
    starts = [n for n in nodes if _node_type(nodes[n]) == "Input"] + sorted(nodes)
    for s in starts:
        if s in state:
            continue
        stack = [(s, iter(succ[s]))]
        state[s] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[node] = 2
                order.append(node)
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return order[::-1]


def _declared(types: dict, key: str) -> tuple[int, ...] | None:
    v = (types or {}).get(key)
    if v is None:
        return None
    a = np.atleast_1d(np.asarray(v)).astype(int)
    return tuple(int(x) for x in a) if a.size and (a > 0).all() else None


def _infer_shape(nid: str, node: nir.NIRNode, in_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """Output shape (raw, not normalised) from the node's parameters and its input shape."""
    t = _node_type(node)
    declared = _declared(getattr(node, "output_type", None), "output")
    if t == "Input":
        shape = _declared(node.input_type, "input")
    elif t in ("Affine", "Linear"):
        shape = (int(node.weight.shape[0]),)
    elif t in ("Conv2d", "Conv1d", "SumPool2d", "AvgPool2d") and declared is not None:
        shape = declared
    elif t in ("Conv2d", "Conv1d"):
        if in_shape is None:
            raise GraphError(f"node {nid!r} ({t}): input shape unknown; set input_shape or connect it to a shaped node")
        g = _geom(nid, node, in_shape)
        s3 = norm_shape(in_shape)
        ho, wo = g.out_hw(s3[1], s3[2])
        shape = (int(node.weight.shape[0]), ho, wo) if t == "Conv2d" else (int(node.weight.shape[0]), wo)
    elif t in ("SumPool2d", "AvgPool2d"):
        g = _geom(nid, node, in_shape)
        ho, wo = g.out_hw(in_shape[1], in_shape[2])
        shape = (in_shape[0], ho, wo)
    elif t == "Flatten":
        shape = declared or (int(np.prod(in_shape)),) if in_shape else declared
    elif t in SPIKING + NON_SPIKING + ("Scale",):
        params = [
            getattr(node, a) for a in ("tau", "tau_mem", "r", "v_threshold", "threshold", "scale") if hasattr(node, a)
        ]
        sizes = [np.shape(p) for p in params if np.ndim(p) > 0]
        shape = declared or (sizes[0] if sizes else in_shape)
    elif t == "Output":
        shape = in_shape or declared
    else:
        raise GraphError(
            f"node {nid!r} is a {t}; hwmodels maps {', '.join(WEIGHTS + SPIKING + NON_SPIKING + STATELESS)}"
            " plus Input/Output (fold other nodes into these before mapping)"
        )
    if shape is None:
        raise GraphError(f"node {nid!r} ({t}): cannot infer its shape; give it per-neuron parameters or an output_type")
    return tuple(int(s) for s in shape)


def _geom(nid: str, node: nir.NIRNode, in_shape: tuple[int, ...] | None) -> ConvGeom:
    t = _node_type(node)
    if t in ("SumPool2d", "AvgPool2d"):
        return ConvGeom(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
    one_d = t == "Conv1d"
    kernel = tuple(node.weight.shape[2:])
    kernel = (1, kernel[0]) if one_d else kernel
    pad = node.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = 0
        elif pad == "same":
            pad = tuple((k - 1) // 2 for k in (kernel if not one_d else kernel[1:]))
        else:
            raise GraphError(f"node {nid!r} ({t}): padding {pad!r} is not 'valid', 'same' or integers")
    if one_d:
        return ConvGeom(
            kernel,
            (1, _pair(node.stride, 1)[0]),
            (0, _pair(pad, 1)[0]),
            (1, _pair(node.dilation, 1)[0]),
            int(node.groups),
        )
    return ConvGeom(kernel, _pair(node.stride), _pair(pad), _pair(node.dilation), int(node.groups))


def _node_shapes(graph: nir.NIRGraph, order: list[str], preds: dict[str, list[str]]) -> dict[str, tuple[int, ...]]:
    raw: dict[str, tuple[int, ...]] = {}
    for nid in order:
        node = graph.nodes[nid]
        known = [raw[p] for p in preds[nid] if p in raw]
        raw[nid] = _infer_shape(nid, node, known[0] if known else None)
        if _node_type(node) in SPIKING + NON_SPIKING and known and int(np.prod(known[0])) != int(np.prod(raw[nid])):
            raise GraphError(
                f"node {nid!r}: {int(np.prod(raw[nid]))} neurons but its input has "
                f"{int(np.prod(known[0]))} values ({known[0]})"
            )
    return raw


def _walk_back(nid: str, graph: nir.NIRGraph, preds: dict[str, list[str]]) -> tuple[str, list[str]]:
    """From a weight node, walk back through stateless nodes to the spike source; returns (source, path)."""
    path: list[str] = []
    cur = nid
    while True:
        ps = preds[cur]
        if len(ps) != 1:
            raise GraphError(
                f"node {cur!r} has {len(ps)} inputs; hwmodels needs exactly one input in front of a "
                f"weight node (sum several sources into a neuron instead)"
            )
        p = ps[0]
        t = _node_type(graph.nodes[p])
        if t in STATELESS:
            path.append(p)
            cur = p
            continue
        return p, path[::-1]


def _make_connection(
    wid: str, node: nir.NIRNode, source: str, path: list[str], target: str, raw: dict, graph: nir.NIRGraph
) -> Connection:
    t = _node_type(node)
    in_raw = raw[path[-1]] if path else raw[source]
    in_shape, out_shape = norm_shape(in_raw), norm_shape(raw[wid])
    w = np.asarray(node.weight)
    src_t = _node_type(graph.nodes[source])
    binary = src_t in SPIKING and all(_node_type(graph.nodes[p]) == "Flatten" for p in path)
    if t in ("Affine", "Linear"):
        if w.ndim != 2 or w.shape[1] != int(np.prod(in_shape)):
            raise GraphError(
                f"node {wid!r} ({t}): weight {w.shape} does not take its input of "
                f"{int(np.prod(in_shape))} values (shape {in_raw})"
            )
        return Connection(
            wid, "affine", source, path, target, (int(np.prod(in_shape)),), (w.shape[0],), w != 0, static_binary=binary
        )
    geom = _geom(wid, node, in_raw)
    nz = (w != 0) if t == "Conv2d" else (w != 0)[:, :, None, :]
    if len(in_shape) != 3 or nz.shape[1] * geom.groups != in_shape[0]:
        raise GraphError(
            f"node {wid!r} ({t}): weight {w.shape} with groups={geom.groups} does not match its input shape {in_raw}"
        )
    return Connection(wid, "conv", source, path, target, in_shape, out_shape, nz, geom, binary)


def _pool_connections(graph, order, layers, preds, succs, raw) -> list[Connection]:
    """Pooling nodes that feed a neuron directly (a spiking max-pool is ``Threshold(SumPool2d)``) are
    connections with fixed depthwise all-ones kernels: each pooled cell is a synapse of the target layer."""
    out = []
    for nid in order:
        node = graph.nodes[nid]
        if _node_type(node) not in ("SumPool2d", "AvgPool2d"):
            continue
        for tgt in (s for s in succs[nid] if s in layers):
            source, path = _walk_back(nid, graph, preds)
            in_raw = raw[path[-1]] if path else raw[source]
            in_shape, out_shape = norm_shape(in_raw), norm_shape(raw[nid])
            geom = _geom(nid, node, in_raw)
            channels = in_shape[0]
            geom.groups = channels
            nz = np.ones((channels, 1, *geom.kernel), dtype=bool)
            binary = _node_type(graph.nodes[source]) in SPIKING and all(
                _node_type(graph.nodes[p]) == "Flatten" for p in path)
            c = Connection(nid, "conv", source, path, tgt, in_shape, out_shape, nz, geom, binary)
            out.append(c)
            layers[tgt].incoming.append(c)
    return out


def build_layer_table(graph: nir.NIRGraph) -> LayerTable:
    """Parse a NIR graph into layers and connections (errors name the offending node).

    Graphs without an Input node or with NaN/inf parameters are refused with the same checks ``read_nir`` and
    the simulators use: their costs would be meaningless numbers rather than an error.
    """
    require_input(graph)
    check_finite_parameters(graph)
    nodes = graph.nodes
    for nid, node in nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise GraphError(f"node {nid!r} is a nested NIRGraph; flatten it into the parent graph before mapping")
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in graph.edges:
        if a not in nodes or b not in nodes:
            raise GraphError(f"edge ({a!r}, {b!r}) names a node that is not in the graph")
        preds[b].append(a)
        succs[a].append(b)
    order = _topo_order(nodes, graph.edges)
    raw = _node_shapes(graph, order, preds)
    layers: dict[str, Layer] = {}
    for nid in order:
        t = _node_type(nodes[nid])
        if t in SPIKING + NON_SPIKING:
            layers[nid] = Layer(nid, t, norm_shape(raw[nid]), t in SPIKING)
    connections: list[Connection] = []
    for nid in order:
        node = nodes[nid]
        if _node_type(node) not in WEIGHTS:
            continue
        targets = [s for s in succs[nid] if s in layers]
        if not targets:  # a read-out weight node: its outputs accumulate on chip
            layers[nid] = Layer(nid, "Accumulator", norm_shape(raw[nid]), False)
            targets = [nid]
        source, path = _walk_back(nid, graph, preds)
        for tgt in targets:
            c = _make_connection(nid, node, source, path, tgt, raw, graph)
            connections.append(c)
            layers[tgt].incoming.append(c)
    connections += _pool_connections(graph, order, layers, preds, succs, raw)
    for nid, layer in layers.items():
        if not layer.incoming and layer.type != "Accumulator":
            bad = [p for p in preds[nid] if _node_type(nodes[p]) not in WEIGHTS]
            if bad:
                raise GraphError(
                    f"neuron node {nid!r} is fed by {bad} without a weight node; hwmodels maps "
                    "connections through Affine/Linear/Conv nodes (insert an identity Affine)"
                )
    inputs = [n for n in order if _node_type(nodes[n]) == "Input"]
    shapes = {k: norm_shape(v) for k, v in raw.items()}
    ordered = {k: layers[k] for k in order if k in layers}
    return LayerTable(graph, ordered, connections, shapes, inputs, order)
