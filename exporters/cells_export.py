"""torch → NIR converters for SNASNet (``nasflow.snn.cells``, ``nasflow.spaces.snasnet``), registered by name.

A cell's node values are analog sums. In a cell with backward edges every node ``j`` becomes an identity
``Scale`` node ``<cell>.node{j}`` (fed by its forward ops, and node 0 by the cell input), so that a
backward edge has one NIR node to end in: the link from the backward op's last node (or from the source
node, for a backward skip) into ``<cell>.node{j}`` is a NIR back edge, delivered one step late, exactly
the cell's ``fb_j[t+1]``. NIR marks back edges structurally (``exporters.graph``: edges closing a cycle in
a DFS from the input), so a backward edge must close a cycle that the DFS enters at its target node; cells
whose backward edges do not (e.g. ``k → j`` with no forward path ``j ⇝ k``, or a node fed by backward
edges only) are refused by name. Forward-only cells keep plain fan-in sums (no extra nodes).

Ops: skip = the node's ids, ``LIF → conv → BN`` = neuron + folded conv, the 3x3 average pool =
``AvgPool2d(padding 1)`` with ``count_include_pad=True``, or ``SumPool2d(padding 1) → Scale(1/count)``
(the exact border division) with ``count_include_pad=False``. The standalone BatchNorms (``reduce_bn``,
``head_bn``) each feed a LIF and fold into its per-neuron ``r`` and ``v_leak`` (no node of their own, so
hardware models see neuron → weights → neuron layers); dropout is the identity (eval).
"""

from __future__ import annotations

import nir
import numpy as np
from torch import nn

from exporters.graph import back_edges
from exporters.nir_export import ExportContext, ExportError, register_converter

__all__ = ["bn_node", "collapse_sums", "convert_cell", "convert_snasnet"]

_CELLS = "nasflow.snn.cells"
NUM_NODES = 4


@register_converter(nn.Dropout)
def _dropout(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    return list(inputs)  # identity in eval mode, the mode an exported network runs in


def bn_node(bn: nn.Module, name: str, in_shape: tuple[int, ...]) -> nir.Conv2d:
    """A standalone eval-mode ``BatchNorm2d`` as a depthwise 1x1 ``Conv2d`` (per-channel scale and shift)."""
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None:
        raise ExportError(f"{name}: expected a BatchNorm2d with running statistics, got {type(bn).__name__}")
    std = (bn.running_var.double() + bn.eps).sqrt()
    w = bn.weight.detach().double() if bn.affine else 1.0
    b = bn.bias.detach().double() if bn.affine else 0.0
    scale = (w / std).expand(bn.num_features)
    shift = b - bn.running_mean.double() * scale
    c = bn.num_features
    return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=scale.cpu().numpy().reshape(c, 1, 1, 1),
                      stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=c, bias=shift.cpu().numpy())


def _bn_neuron(ctx: ExportContext, bn: nn.Module, neuron: nn.Module, bn_name: str, name: str,
               inputs: list[str]) -> list[str]:
    """``TimeDistributed(BatchNorm2d) → LIF`` as one LIF node: ``r·(a·I + c) = (r·a)·I + r·c`` folds the
    per-channel affine into per-neuron ``r`` and ``v_leak`` (exact). Other neurons get a depthwise 1x1 conv."""
    shape = ctx.shape(inputs, name)
    conv = bn_node(bn.module, bn_name, shape)
    node = ctx.neuron_node(neuron, name, shape)
    if not isinstance(node, nir.LIF):
        ctx.thresholds.pop(name, None)
        ctx.resets.pop(name, None)
        return ctx.convert(neuron, name, [ctx.add_node(bn_name, conv, inputs)])
    a = np.broadcast_to(np.asarray(conv.weight).reshape(-1, 1, 1), shape)
    c = np.broadcast_to(np.asarray(conv.bias).reshape(-1, 1, 1), shape)
    r = np.asarray(node.r, dtype=np.float64)
    folded = nir.LIF(tau=node.tau, r=r * a, v_leak=np.asarray(node.v_leak) + r * c, v_threshold=node.v_threshold,
                     v_reset=node.v_reset)
    return [ctx.add_node(name, folded, inputs, binary=True)]


@register_converter(f"{_CELLS}.SpikingConvOp")
def _conv_op(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    return ctx.child(module, name, "conv", ctx.child(module, name, "sn", inputs))


@register_converter(f"{_CELLS}.AvgPool3x3")
def _avgpool3x3(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    c, h, w = ctx.shape(inputs, name)
    pad = np.ones(2, dtype=int)
    k = np.array([3, 3])
    if module.count_include_pad:
        return [ctx.add_node(name, nir.AvgPool2d(kernel_size=k, stride=np.ones(2, dtype=int), padding=pad), inputs)]
    # count_include_pad=False divides each window by the pixels it covers: a sum, then 1/count per pixel.
    s = ctx.add_node(f"{name}.sum", nir.SumPool2d(kernel_size=k, stride=np.ones(2, dtype=int), padding=pad), inputs)
    rows = np.array([min(i + 1, h - 1) - max(i - 1, 0) + 1 for i in range(h)], dtype=np.float64)
    cols = np.array([min(i + 1, w - 1) - max(i - 1, 0) + 1 for i in range(w)], dtype=np.float64)
    inv = np.broadcast_to(1.0 / np.outer(rows, cols), (c, h, w)).copy()
    return [ctx.add_node(name, nir.Scale(scale=inv), [s])]


def _identity(ctx: ExportContext, node_id: str, inputs: list[str]) -> str:
    return ctx.add_node(node_id, nir.Scale(scale=np.ones(ctx.shape(inputs, node_id))), inputs)


@register_converter(f"{_CELLS}.SNASCell")
def convert_cell(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    """An ``SNASCell``: forward ops in node order; backward edges as NIR back edges into ``node{j}``.

    Raises ``ExportError`` naming the cell and the edge when a backward edge cannot be a NIR back edge.
    """
    structure = module.structure()
    recurrent = any(bwd for *_, bwd in structure)
    # Forward ops out of a node before backward ones, by target: the DFS that marks back edges then
    # enters every cycle at its lowest node, the target of the backward edge that closes it.
    order = sorted(structure, key=lambda e: (e[0], e[3], e[1]))
    nodes: dict[int, list[str]] = {0: list(inputs)}
    fed: dict[int, list[str]] = {j: [] for j in range(NUM_NODES)}
    links: list[tuple[str, str]] = []
    active = {0, NUM_NODES - 1} | {s for s, *_ in structure} | {d for _, d, *_ in structure}
    for j in sorted(active):
        ids = list(inputs) if j == 0 else fed[j]
        if not ids:
            text = " ".join("".join(str(v) for v in r) for r in module.matrix)
            raise ExportError(
                f"{name} (cell {text!r}): node {j} is fed by backward edges only; its value at step t depends on "
                "step t-1 alone, which NIR can only express as a cycle the node closes itself (a back edge into a "
                "node with no same-step input is not a cycle): choose a cell where node "
                f"{j} has a forward input"
            )
        nodes[j] = [_identity(ctx, f"{name}.node{j}", ids)] if recurrent else ids
        for s, d, m, bwd in order:
            if s != j:
                continue
            out = ctx.convert(m, f"{name}.ops.e{s}_{d}", nodes[j])
            if bwd:
                links.extend((o, f"{name}.node{d}") for o in out)
            else:
                fed[d].extend(out)
    for src, dst in links:
        ctx.add_edge(src, dst)
    if recurrent:
        _check_back_edges(ctx, name, module, set(links))
    return nodes[NUM_NODES - 1]


def _check_back_edges(ctx: ExportContext, name: str, module: nn.Module, links: set[tuple[str, str]]) -> None:
    """The graph built so far must mark exactly this cell's backward links as back edges."""
    graph = nir.NIRGraph(nodes=dict(ctx.nodes), edges=list(ctx.edges), type_check=False)
    prefix = f"{name}."
    found = {e for e in back_edges(graph) if e[0].startswith(prefix) or e[1].startswith(prefix)}
    if found != links:
        text = " ".join("".join(str(v) for v in r) for r in module.matrix)
        missing = sorted(links - found)
        extra = sorted(found - links)
        raise ExportError(
            f"{name} (cell {text!r}): backward edges must close cycles entered at their target node to become NIR "
            f"back edges (delivered one step late); not back edges: {missing}, wrongly marked: {extra}. A backward "
            "edge k → j needs a forward path j ⇝ k in the cell (and one backward edge per cycle)"
        )


@register_converter("nasflow.spaces.snasnet.SNASNet")
def convert_snasnet(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    """The SNASNet macro network: stem, cell, reduction, pool, cell, head, classifier, voting."""
    def child(attr: str, ids: list[str]) -> list[str]:
        return ctx.child(module, name, attr, ids)

    h = child("cell1", child("stem", inputs))
    def q(attr: str) -> str:
        return f"{name}.{attr}" if name else attr

    if module.reduction == "code":
        h = child("reduce_conv", _bn_neuron(ctx, module.reduce_bn, module.reduce_sn, q("reduce_bn"), q("reduce_sn"), h))
    else:
        h = child("reduce_sn", child("reduce_conv", h))
    h = child("cell2", child("pool1", h))
    h = _bn_neuron(ctx, module.head_bn, module.head_sn, q("head_bn"), q("head_sn"), h)
    for attr in ("pool2", "flatten", "dropout", "fc1", "fc1_sn", "fc2", "vote"):
        h = child(attr, h)
    return h


def collapse_sums(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph without the cells' identity sum nodes (``<cell>.node{j}``): every edge into one is re-routed
    to each of its consumers, so fan-in sums sit at the neurons, as ``hwmodels`` maps connections.

    For cost models only: with the sum nodes gone a backward edge ends in several neurons, and NIR's
    DFS rule can no longer mark all of them as back edges, so do not simulate the result.
    """
    sums = {k for k, n in graph.nodes.items() if k.rsplit(".", 1)[-1].startswith("node")
            and type(n).__name__ == "Scale" and np.all(np.asarray(n.scale) == 1.0)}
    edges = [tuple(e) for e in graph.edges]
    for s in sums:
        ins = [a for a, b in edges if b == s]
        outs = [b for a, b in edges if a == s]
        edges = [e for e in edges if s not in e] + [(a, b) for a in ins for b in outs]
    nodes = {k: v for k, v in graph.nodes.items() if k not in sums}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata), type_check=False)
