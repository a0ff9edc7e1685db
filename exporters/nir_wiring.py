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
  ``<module>.<junction>`` fed by its same-step inputs, and every backward edge an explicit one-step NIR ``Delay``
  ``<module>.<junction>.back<k>`` from the backward value's node into the junction: exactly the junction's
  ``back`` term, whether or not the edge closes a cycle (``exporters.core.traversal`` breaks a cycle at its
  Delay). A junction fed by backward edges only takes the shape of the module's input.
"""

from __future__ import annotations

import nir
import numpy as np
from torch import nn

from exporters.nir_context import ExportContext, join, register_converter
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
            ids[s.out] = [_identity(ctx, join(name, s.out), src, ctx.shape(ids[IN], name))] if recurrent else src
        elif i in folded:
            b = steps[folded[i]]
            bn_src = [x for n in b.inputs for x in ids[n]]
            ids[s.out] = _bn_neuron(ctx, children[folded[i]], children[i], join(name, b.child), join(name, s.child),
                                    bn_src)
        else:
            ids[s.out] = ctx.convert(children[i], join(name, s.child), src)
    if recurrent:
        for t in steps:
            for k, back in enumerate(t.back):
                for o in ids[back]:
                    delay_id = f"{ids[t.out][0]}.back{k}" + (f".{o}" if len(ids[back]) > 1 else "")
                    shape = ctx.shapes[o]
                    ctx.add_edge(ctx.add_node(delay_id, nir.Delay(delay=np.full(shape, ctx.dt)), [o]), ids[t.out][0])
    return ids[wiring.result]


def _identity(ctx: ExportContext, node_id: str, inputs: list[str], shape: tuple[int, ...]) -> str:
    scale = np.ones(ctx.shape(inputs, node_id) if inputs else shape)
    return ctx.add_node(node_id, nir.Scale(scale=scale), inputs, in_shape=shape)
