"""Every node's activity after a Lava run: neuron layers from their recordings, the other nodes (linear
nodes, Input, Output) evaluated from the neuron outputs with the same linear operators, on the reference
time axis.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from exporters.core.kinds import node_type
from exporters.core.traversal import delay_steps
from exporters.lava.layout import from_lava_layout, lava_shape
from exporters.lava.linalg import apply_linear
from exporters.lava.plan import LavaPlan

__all__ = ["delayed", "node_activity", "read_recording"]


def node_activity(graph: nir.NIRGraph, plan: LavaPlan, x: np.ndarray, neuron_act: dict[str, np.ndarray],
                  nodes: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every node's output [T, B, *shape]: neurons from Lava, the rest evaluated on the reference axis. With
    ``nodes``, only those (and what they are computed from) beyond the input and the neurons: the float convolutions
    that rebuild every linear node cost far more than the integer run that a search needs one read-out from."""
    t_len, b = x.shape[:2]
    act: dict[str, np.ndarray] = {plan.input_id: x.astype(np.float32)}
    act.update(neuron_act)
    preds = plan.compiled.topology.sources

    def fed(nid: str) -> np.ndarray:
        total: np.ndarray | float = 0.0
        for s, is_back in preds[nid]:
            a = get(s).astype(np.float64)
            if is_back:  # back edge: the source's output one step late
                a = np.concatenate([np.zeros_like(a[:1]), a[:-1]], axis=0)
            total = total + a
        return total

    def get(nid: str) -> np.ndarray:
        # On demand: a back edge may come from a linear node later in the order (e.g. a recurrent
        # cell's feedback op); every cycle holds a neuron, whose activity is known, so this ends.
        if nid in act:
            return act[nid]
        kind = node_type(graph.nodes[nid])
        inp = fed(nid)
        if kind == "Output":
            act[nid] = np.asarray(inp, dtype=np.float32).reshape((t_len, b) + plan.shapes[nid])
            return act[nid]
        if kind == "Delay":
            x_in = np.asarray(inp, dtype=np.float32).reshape((t_len, b) + plan.shapes[nid])
            fed_back = any(is_back for _, is_back in preds[nid])
            act[nid] = delayed(x_in, delay_steps(graph.nodes[nid], nid, plan.compiled.conventions.dt, fed_back))
            return act[nid]
        flat = np.asarray(inp).reshape((t_len * b,) + inp.shape[2:])
        act[nid] = apply_linear(graph.nodes[nid], nid, flat).reshape((t_len, b) + plan.shapes[nid]).astype(np.float32)
        return act[nid]

    for nid in plan.order if nodes is None else nodes:
        if nid not in graph.nodes:
            raise ValueError(f"node {nid!r} is not in the graph (nodes: {', '.join(graph.nodes)})")
        get(nid)
    return act


def delayed(x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``x`` ``[T, B, *shape]`` with each element ``steps`` (broadcast to ``shape``) steps late, zeros before: a NIR
    ``Delay``, as the emulator applies it to a connection's sums and as its activity is rebuilt."""
    t_len, b = x.shape[:2]
    steps = np.broadcast_to(np.asarray(steps, dtype=np.int64), x.shape[2:])
    src = np.arange(t_len).reshape((t_len, 1) + (1,) * steps.ndim) - steps[None, None]
    out = np.take_along_axis(x, np.broadcast_to(np.clip(src, 0, t_len - 1), x.shape), axis=0)
    return np.where(src >= 0, out, 0).astype(x.dtype)


def read_recording(path: Path, shape: tuple[int, ...], b: int, t_len: int) -> np.ndarray:
    """A recording file [B*T, *lava_shape] → [T, B, *shape] in NIR layout (float32)."""
    rec = np.fromfile(path, dtype=np.float32).reshape(b, t_len, *lava_shape(shape))
    return np.ascontiguousarray(from_lava_layout(rec, len(shape)).swapaxes(0, 1), dtype=np.float32)
