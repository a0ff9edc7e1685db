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

from exporters.core.compile import CompiledGraph, compile_graph
from exporters.core.errors import NIRFormatError
from exporters.core.kinds import SPIKING_TYPES, STATELESS_TYPES, WEIGHT_TYPES, node_type
from exporters.core.shapes import conv_pads, ints
from exporters.core.traversal import flatten_graph

__all__ = [
    "rows_to_units",
    "units_to_rows",
    "Connection",
    "ConvGeom",
    "GraphError",
    "Layer",
    "LayerTable",
    "build_layer_table",
    "geometry",
    "without_wires",
]

class GraphError(NIRFormatError):
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
    bare: bool = False  # a bare NIR edge between two populations: identity synapses, ``node_id`` is "src->tgt"
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

    graph: nir.NIRGraph  # flattened
    layers: dict[str, Layer]
    connections: list[Connection]
    shapes: dict[str, tuple[int, ...]]  # normalised output shape of every node
    input_ids: list[str]
    order: list[str]  # node ids in topological order (back edges ignored)
    wires: frozenset[str] = frozenset()  # identity Scale nodes of the graph, removed as wires (no activity needed)

    def outgoing(self, source: str) -> list[Connection]:
        """Connections whose spike source is ``source``."""
        return [c for c in self.connections if c.source == source]

    def sources(self) -> list[str]:
        """Every node that emits events towards a layer (neurons, accumulators, inputs), in order."""
        seen = {c.source for c in self.connections}
        return [n for n in self.order if n in seen]


def geometry(nid: str, node: nir.NIRNode, in_shape: tuple[int, ...]) -> ConvGeom:
    """Convolution or pooling geometry of ``node`` on normalised 3-D shapes (padding by the core's one rule;
    ``ConvGeom`` keeps the leading pad, which equals the trailing one except for even ``"same"`` kernels)."""
    t = node_type(node)
    if t in ("SumPool2d", "AvgPool2d"):
        kernel = ints(node.kernel_size, 2, "kernel_size", nid)
        pads = conv_pads(node.padding, kernel, (1, 1), nid)
        return ConvGeom(kernel, ints(node.stride, 2, "stride", nid), (pads[0][0], pads[1][0]))
    kernel = tuple(int(k) for k in np.shape(node.weight)[2:])
    if t == "Conv1d":
        dil = ints(node.dilation, 1, "dilation", nid)
        pads = conv_pads(node.padding, kernel, dil, nid)
        return ConvGeom((1, kernel[0]), (1, ints(node.stride, 1, "stride", nid)[0]), (0, pads[0][0]), (1, dil[0]),
                        int(node.groups))
    dil = ints(node.dilation, 2, "dilation", nid)
    pads = conv_pads(node.padding, kernel, dil, nid)
    return ConvGeom(kernel, ints(node.stride, 2, "stride", nid), (pads[0][0], pads[1][0]), dil, int(node.groups))


def _feeds(compiled: CompiledGraph, preds: dict[str, list[str]]) -> dict[str, tuple[str, list[str]]]:
    """Spike source and stateless nodes in front of every linear node, read off the compiled linear paths.

    The source of a node is the start of its path, or the last weight node before it (whose outputs
    accumulate). A chip synapse has one source: a node reached by several different (source, prefix) pairs
    has a fan-in in front of it and is left out here; ``_feed`` names the node with several inputs.
    """
    found: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
    for p in compiled.paths:
        seq = p.nodes + ((p.target,) if compiled.kind(p.target).category == "linear" else ())
        for i, nid in enumerate(seq):
            before = seq[:i]
            cut = max((j for j, n in enumerate(before) if compiled.kind(n).weighted), default=-1)
            src = before[cut] if cut >= 0 else p.source
            found.setdefault(nid, set()).add((src, before[cut + 1:]))
    return {k: (next(iter(v))[0], list(next(iter(v))[1])) for k, v in found.items() if len(v) == 1
            and all(len(preds[n]) == 1 for n in (k, *next(iter(v))[1]))}


def _feed(nid: str, table: tuple[CompiledGraph, dict[str, tuple[str, list[str]]], dict[str, list[str]]]
          ) -> tuple[str, list[str]]:
    """(source, stateless path) of synapse node ``nid``; a fan-in in front of it is refused by node name."""
    compiled, feeds, preds = table
    if nid in feeds:
        return feeds[nid]
    cur = nid
    while len(preds[cur]) == 1 and compiled.kind(preds[cur][0]).name in STATELESS_TYPES:
        cur = preds[cur][0]
    raise GraphError(
        f"node {cur!r} has {len(preds[cur])} inputs; hwmodels needs exactly one input in front of a "
        f"weight node (sum several sources into a neuron instead)"
    )


def _make_connection(
    wid: str, node: nir.NIRNode, source: str, path: list[str], target: str, raw: dict, graph: nir.NIRGraph
) -> Connection:
    t = node_type(node)
    in_raw = raw[path[-1]] if path else raw[source]
    in_shape, out_shape = norm_shape(in_raw), norm_shape(raw[wid])
    w = np.asarray(node.weight)
    src_t = node_type(graph.nodes[source])
    binary = src_t in SPIKING_TYPES and all(node_type(graph.nodes[p]) == "Flatten" for p in path)
    if t in ("Affine", "Linear"):
        if w.ndim != 2 or w.shape[1] != int(np.prod(in_shape)):
            raise GraphError(
                f"node {wid!r} ({t}): weight {w.shape} does not take its input of "
                f"{int(np.prod(in_shape))} values (shape {in_raw})"
            )
        return Connection(
            wid, "affine", source, path, target, (int(np.prod(in_shape)),), (w.shape[0],), w != 0, static_binary=binary
        )
    geom = geometry(wid, node, in_raw)
    nz = (w != 0) if t == "Conv2d" else (w != 0)[:, :, None, :]
    if len(in_shape) != 3 or nz.shape[1] * geom.groups != in_shape[0]:
        raise GraphError(
            f"node {wid!r} ({t}): weight {w.shape} with groups={geom.groups} does not match its input shape {in_raw}"
        )
    return Connection(wid, "conv", source, path, target, in_shape, out_shape, nz, geom, binary)


def _pool_connections(graph, order, layers, fed, succs, raw) -> list[Connection]:
    """Pooling nodes that feed a neuron directly (a spiking max-pool is ``Threshold(SumPool2d)``) are
    connections with fixed depthwise all-ones kernels: each pooled cell is a synapse of the target layer."""
    out = []
    for nid in order:
        node = graph.nodes[nid]
        if node_type(node) not in ("SumPool2d", "AvgPool2d"):
            continue
        for tgt in (s for s in succs[nid] if s in layers):
            source, path = _feed(nid, fed)
            in_raw = raw[path[-1]] if path else raw[source]
            in_shape, out_shape = norm_shape(in_raw), norm_shape(raw[nid])
            geom = geometry(nid, node, in_raw)
            channels = in_shape[0]
            geom.groups = channels
            nz = np.ones((channels, 1, *geom.kernel), dtype=bool)
            binary = node_type(graph.nodes[source]) in SPIKING_TYPES and all(
                node_type(graph.nodes[p]) == "Flatten" for p in path)
            c = Connection(nid, "conv", source, path, tgt, in_shape, out_shape, nz, geom, binary)
            out.append(c)
            layers[tgt].incoming.append(c)
    return out


def _bare_connections(order, layers, preds, raw) -> list[Connection]:
    """Bare edges from one population into another (NIR: an identity map; AutoSNN's residual shortcut, a SpikeDHS
    skip) as connections of one weight-1 synapse per neuron: on a chip every input of a neuron is a synapse, so
    these count synaptic ops, synapse memory and messages like any other connection (a 1x1 depthwise kernel
    on 3-D maps, a diagonal on vectors)."""
    out = []
    for nid in order:
        if nid not in layers or layers[nid].type == "Accumulator":
            continue
        for src in (p for p in preds[nid] if p in layers):
            shape, src_shape = norm_shape(raw[nid]), norm_shape(raw[src])
            if shape != src_shape:
                raise GraphError(f"node {src!r} (shape {raw[src]}) feeds neuron node {nid!r} (shape {raw[nid]}) "
                                 "without a weight node, so their shapes must match")
            binary = layers[src].spiking
            if len(shape) == 3:
                ch = shape[0]
                c = Connection(f"{src}->{nid}", "conv", src, [], nid, shape, shape, np.ones((ch, 1, 1, 1), bool),
                               ConvGeom((1, 1), (1, 1), (0, 0), (1, 1), ch), binary, bare=True)
            else:
                n = int(np.prod(shape))
                c = Connection(f"{src}->{nid}", "affine", src, [], nid, (n,), (n,), np.eye(n, dtype=bool),
                               static_binary=binary, bare=True)
            out.append(c)
            layers[nid].incoming.append(c)
    return out


def without_wires(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, frozenset[str]]:
    """``graph`` without its identity ``Scale`` nodes (every scale 1) and ``Delay`` nodes, and their ids.

    On a chip an identity node is a wire: every edge into it is re-routed to each of its consumers, so fan-in
    sums (SNASNet's cell nodes, the identity nodes left by flattening nested graphs) land at the neurons,
    where hwmodels maps them. A ``Delay`` changes when a sum arrives, not how many synaptic operations or
    messages there are (Loihi delays synaptic input in each core's dendritic accumulators), so it is a wire for
    the cost models too. The result is for cost models only: with a sum node gone a backward edge may end
    in several neurons, and the one-step delays of NIR's back edges are no longer marked (hwmodels ignores
    delays).
    """
    wires = [k for k, n in graph.nodes.items()
             if node_type(n) == "Delay" or (node_type(n) == "Scale" and np.all(np.asarray(n.scale) == 1.0))]
    if not wires:
        return graph, frozenset()
    edges = [tuple(e) for e in graph.edges]
    for w in wires:
        ins = [a for a, b in edges if b == w and a != w]
        outs = [b for a, b in edges if a == w and b != w]
        edges = [e for e in edges if w not in e] + [(a, b) for a in ins for b in outs]
    nodes = {k: v for k, v in graph.nodes.items() if k not in set(wires)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata or {}), type_check=False), \
        frozenset(wires)


def build_layer_table(graph: nir.NIRGraph | CompiledGraph) -> LayerTable:
    """Layers and connections of a NIR graph (or of one already compiled); errors name the offending node.

    The graph goes through ``exporters.core.compile.compile_graph``, like every simulator's: graphs without an
    Input node, with NaN/inf parameters or inconsistent shapes are refused with the same messages, nested
    graphs are flattened, and the populations are the compiler's. On top, hwmodels needs every weight node to
    have one input (a fan-in sums at a neuron) and every neuron to be fed through weight nodes.
    """
    try:
        flat = graph.graph if isinstance(graph, CompiledGraph) else flatten_graph(graph)
        unwired, wires = without_wires(flat)
        compiled = graph if isinstance(graph, CompiledGraph) and not wires else compile_graph(unwired)
    except GraphError:
        raise
    except NIRFormatError as err:
        raise GraphError(str(err)) from None
    graph = compiled.graph
    nodes = graph.nodes
    topo = compiled.topology
    preds = {k: [s for s, _ in topo.sources[k]] for k in nodes}
    succs = {k: list(v) for k, v in topo.succs.items()}
    order = list(topo.order)
    raw = compiled.shapes
    layers: dict[str, Layer] = {
        nid: Layer(nid, pop.kind.name, norm_shape(pop.shape), pop.kind.spiking)
        for nid, pop in compiled.populations.items()
    }
    try:
        feeds = _feeds(compiled, preds)
    except NIRFormatError as err:
        raise GraphError(str(err)) from None
    fed = (compiled, feeds, preds)
    connections: list[Connection] = []
    for nid in order:
        node = nodes[nid]
        if node_type(node) not in WEIGHT_TYPES:
            continue
        targets = [s for s in succs[nid] if s in layers]
        if not targets:  # a read-out weight node: its outputs accumulate on chip
            layers[nid] = Layer(nid, "Accumulator", norm_shape(raw[nid]), False)
            targets = [nid]
        source, path = _feed(nid, fed)
        for tgt in targets:
            c = _make_connection(nid, node, source, path, tgt, raw, graph)
            connections.append(c)
            layers[tgt].incoming.append(c)
    connections += _pool_connections(graph, order, layers, fed, succs, raw)
    connections += _bare_connections(order, layers, preds, raw)
    for nid, layer in layers.items():
        if not layer.incoming and layer.type != "Accumulator":
            bad = [p for p in preds[nid] if node_type(nodes[p]) not in WEIGHT_TYPES]
            if bad:
                raise GraphError(
                    f"neuron node {nid!r} is fed by {bad} without a weight node; hwmodels maps "
                    "connections through Affine/Linear/Conv nodes (insert an identity Affine)"
                )
    shapes = {k: norm_shape(v) for k, v in raw.items()}
    ordered = {k: layers[k] for k in order if k in layers}
    inputs = [n for n in order if compiled.kind(n).name == "Input"]
    return LayerTable(graph, ordered, connections, shapes, inputs, order, wires)
