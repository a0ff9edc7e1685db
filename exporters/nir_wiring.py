"""The one NIR converter of composite modules: it reads the ``wiring()`` their ``forward`` runs.

Every module that subclasses ``nasflow.snn.wiring.Wired`` (blocks, stem stages, SNASNet cells and ops, whole
networks, the supernet's choice block) is converted here, step by step in wiring order: a step converts its
child (qualified name ``<module>.<child path>``) fed by the ids of its inputs, whose sum is the input (fan-in:
e.g. the SRB shortcut edge into the second neuron). In a feed-forward wiring a junction is that fan-in itself,
no node of its own.

* A standalone BatchNorm (``TimeDistributed(BatchNorm2d)``) whose one consumer is a LIF taking it alone folds
  into that LIF's per-neuron ``r`` and ``v_leak`` (``r·(a·I + c) = (r·a)·I + r·c``, exact; no node of its own,
  so hardware models see neuron → weights → neuron layers). Other neurons get the BN as a depthwise 1x1 conv.
* A wiring with backward inputs (a recurrent SNASNet cell) makes every junction an identity ``Scale`` node
  ``<module>.<junction>`` fed by its same-step inputs, so that a backward edge has one NIR node to end in:
  the link from the backward value's node(s) into the junction is a NIR back edge, delivered one step late,
  exactly the junction's ``back`` term. NIR marks back edges structurally (``exporters.core.traversal``:
  edges closing a cycle in a DFS from the input), so a backward edge must close a cycle that the DFS enters
  at its target junction; wirings whose backward edges do not (no same-step path from the target to the
  source, or a junction fed by backward edges only) are refused by name.
"""

from __future__ import annotations

import nir
import numpy as np
from torch import nn

from exporters.core.traversal import back_edges
from exporters.nir_context import ExportContext, ExportError, join, register_converter
from exporters.nir_layers import bn_node
from nasflow.snn.layers import TimeDistributed
from nasflow.snn.neurons import Neuron
from nasflow.snn.wiring import IN, Wired, Wiring, child_module

__all__ = ["convert_wired"]


def _folded_bn(wiring: Wiring, children: list[nn.Module | None]) -> dict[int, int]:
    """Neuron step → the standalone-BN step that feeds it alone and nothing else."""
    uses: dict[str, int] = {wiring.result: 1}
    for s in wiring.steps:
        for n in (*s.inputs, *s.back):
            uses[n] = uses.get(n, 0) + 1
    producer = {s.out: i for i, s in enumerate(wiring.steps)}
    out = {}
    for i, s in enumerate(wiring.steps):
        j = producer.get(s.inputs[0]) if len(s.inputs) == 1 else None
        if j is not None and isinstance(children[i], Neuron) and uses[s.inputs[0]] == 1:
            bn = children[j]
            if isinstance(bn, TimeDistributed) and isinstance(bn.module, nn.BatchNorm2d):
                out[i] = j
    return out


def _bn_neuron(ctx: ExportContext, bn: TimeDistributed, neuron: Neuron, bn_name: str, name: str,
               inputs: list[str]) -> list[str]:
    """``TimeDistributed(BatchNorm2d) → neuron``: one LIF node with the BN folded in, else BN node + neuron."""
    shape = ctx.shape(inputs, name)
    conv = bn_node(bn.module, bn_name, shape)
    node = ctx.neuron_node(neuron, name, shape)
    if not isinstance(node, nir.LIF):
        ctx.forget_neuron(name)
        return ctx.convert(neuron, name, ctx.convert(bn, bn_name, inputs))
    a = np.broadcast_to(np.asarray(conv.weight).reshape(-1, 1, 1), shape)
    c = np.broadcast_to(np.asarray(conv.bias).reshape(-1, 1, 1), shape)
    r = np.asarray(node.r, dtype=np.float64)
    folded = nir.LIF(tau=node.tau, r=r * a, v_leak=np.asarray(node.v_leak) + r * c, v_threshold=node.v_threshold,
                     v_reset=node.v_reset)
    return [ctx.add_node(name, folded, inputs, binary=True)]


def _where(name: str, wiring: Wiring) -> str:
    return f"{name or 'model'} ({wiring.title})" if wiring.title else (name or "model")


@register_converter(Wired)
def convert_wired(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    """Convert ``module`` by its ``wiring()`` (see the module docstring).

    Raises ``ExportError`` naming the module and the value when a backward edge cannot be a NIR back edge.
    """
    wiring = module.wiring()
    steps = wiring.steps
    children = [None if s.child is None else child_module(module, s.child) for s in steps]
    recurrent = wiring.recurrent
    folded = _folded_bn(wiring, children)
    skipped = set(folded.values())
    ids: dict[str, list[str]] = {IN: list(inputs)}
    for i, s in enumerate(steps):
        if i in skipped:
            continue
        src = [x for n in s.inputs for x in ids[n]] if i not in folded else []
        if s.child is None:
            if recurrent and not src:
                raise ExportError(
                    f"{_where(name, wiring)}: {wiring.label(s.out)} is fed by backward edges only; its value at step "
                    "t depends on step t-1 alone, which NIR can only express as a cycle the node closes itself (a "
                    f"back edge into a node with no same-step input is not a cycle): give {wiring.label(s.out)} a "
                    "same-step input"
                )
            ids[s.out] = [_identity(ctx, join(name, s.out), src)] if recurrent else src
        elif i in folded:
            b = steps[folded[i]]
            bn_src = [x for n in b.inputs for x in ids[n]]
            ids[s.out] = _bn_neuron(ctx, children[folded[i]], children[i], join(name, b.child), join(name, s.child),
                                    bn_src)
        else:
            ids[s.out] = ctx.convert(children[i], join(name, s.child), src)
    if recurrent:
        # Backward links in the order their sources were converted.
        links = [(o, ids[t.out][0]) for s in steps for t in steps if s.out in t.back for o in ids[s.out]]
        for src, dst in links:
            ctx.add_edge(src, dst)
        _check_back_edges(ctx, name, wiring, set(links))
    return ids[wiring.result]


def _identity(ctx: ExportContext, node_id: str, inputs: list[str]) -> str:
    return ctx.add_node(node_id, nir.Scale(scale=np.ones(ctx.shape(inputs, node_id))), inputs)


def _check_back_edges(ctx: ExportContext, name: str, wiring: Wiring, links: set[tuple[str, str]]) -> None:
    """The graph built so far must mark exactly this module's backward links as back edges."""
    graph = nir.NIRGraph(nodes=dict(ctx.nodes), edges=list(ctx.edges), type_check=False)
    prefix = f"{name}." if name else ""
    found = {e for e in back_edges(graph) if e[0].startswith(prefix) or e[1].startswith(prefix)}
    if found != links:
        raise ExportError(
            f"{_where(name, wiring)}: backward edges must close cycles entered at their target node to become NIR "
            f"back edges (delivered one step late); not back edges: {sorted(links - found)}, wrongly marked: "
            f"{sorted(found - links)}. A backward edge k → j needs a same-step path j ⇝ k (and one backward edge "
            "per cycle)"
        )
