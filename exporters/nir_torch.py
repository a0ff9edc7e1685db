"""NIR → torch: a step-by-step reference simulator for any NIR graph (the reference time axis).

Discrete semantics with step ``dt`` (Euler; input arrives within the same step), REFERENCE.md §6/§8:

* LIF ``v ← v + dt/τ·(v_leak − v + r·I)``; IF ``v ← v + r·I``; LI like LIF without firing; I ``v ← v + r·I``;
  CubaLIF/CubaLI ``i ← i + dt/τ_syn·(−i + w_in·I)`` then ``v ← v + dt/τ_mem·(v_leak − v + r·i)``;
  a neuron spikes where ``v > v_threshold`` and then ``v ← v_reset``. IF is never treated as leaky. An analog
  ReLU (an ``LI`` marked ``nasflow.activation = relu``, ``exporters.core.kinds``) outputs ``max(0, I)`` each step.
* Affine ``W x + b`` (the bias is kept), Linear, Scale, Conv1d/2d,
  SumPool2d, AvgPool2d, Flatten (indices exclude the batch dim), Threshold ``x > θ``, Delay
  (``round(delay/dt)`` steps), nested NIRGraph (flattened: its nodes become ``outer.inner`` and its output
  keeps the nested node's id).
* Each step evaluates nodes in the order of ``exporters.core.compile.compile_graph``; a node's input is the sum of its
  predecessors' outputs of this step, and of back-edge sources' outputs of the previous step (0 at t=0).
* ``metadata["conventions"]`` (``exporters.core.conventions.Conventions``) is honoured: ``threshold``
  ``">="`` (nasflow) or ``">"`` (+ ``threshold_overrides``), ``reset`` ``"to_v_reset"`` or ``"subtract"``
  (+ ``reset_overrides``), ``v_init`` ``"v_reset"`` with ``v_init_nodes``. Without them: NIR's own
  ``>``, reset to ``v_reset``, state starting at 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import nir
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from exporters.core.compile import compile_graph
from exporters.core.conventions import NodeConventions
from exporters.core.errors import NIRFormatError
from exporters.core.kinds import KINDS, kind_of, node_type
from exporters.core.shapes import conv_pads, ints
from exporters.core.traversal import delay_steps

__all__ = ["GraphModule", "simulate"]


# ------------------------------------------------------------------------------------------------- ops


def _t(v: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.array(v, dtype=np.float64), dtype=dtype)  # a copy: inputs may be read-only


class _Op:
    """One node's step function; ``reset(batch)`` before a run, ``step(x)`` once per time step."""

    def reset(self, batch: int) -> None:
        pass

    def step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _Fn(_Op):
    def __init__(self, fn) -> None:
        self.fn = fn

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _conv(node: nir.NIRNode, dtype: torch.dtype, dims: int) -> _Op:
    w = _t(node.weight, dtype)
    b = _t(node.bias, dtype).reshape(-1) if node.bias is not None else None
    if b is not None and b.numel() == 1 and w.shape[0] != 1:
        b = b.expand(w.shape[0]).clone()
    conv = F.conv2d if dims == 2 else F.conv1d
    stride, dil = ints(node.stride, dims), ints(node.dilation, dims)
    pads = conv_pads(node.padding, w.shape[2:], dil)
    if all(before == after for before, after in pads):
        sym = tuple(before for before, _ in pads)
        return _Fn(lambda x: conv(x, w, b, stride, sym, dil, int(node.groups)))
    # F.pad takes (before, after) pairs from the last dim backwards.
    flat = tuple(v for pair in reversed(pads) for v in pair)
    return _Fn(lambda x: conv(F.pad(x, flat), w, b, stride, 0, dil, int(node.groups)))


def _pool(node: nir.NIRNode, summed: bool) -> _Op:
    k, s, p = ints(node.kernel_size, 2), ints(node.stride, 2), ints(node.padding, 2)
    div = 1 if summed else None
    return _Fn(lambda x: F.avg_pool2d(x, k, s, p, count_include_pad=True, divisor_override=div))


class _Delay(_Op):
    def __init__(self, steps: np.ndarray, shape: tuple[int, ...]) -> None:
        self.d = torch.as_tensor(np.broadcast_to(steps, shape).copy(), dtype=torch.long)
        self.depth = int(self.d.max()) + 1 if self.d.numel() else 1

    def reset(self, batch: int) -> None:
        self.hist: list[torch.Tensor] = []

    def step(self, x: torch.Tensor) -> torch.Tensor:
        self.hist = ([x] + self.hist)[: self.depth]
        pad = [torch.zeros_like(x)] * (self.depth - len(self.hist))
        stack = torch.stack(self.hist + pad)  # [depth, B, ...]: index d = input of d steps ago
        idx = self.d.unsqueeze(0).unsqueeze(0).expand(1, *x.shape)
        return stack.gather(0, idx)[0]


class _Neuron(_Op):
    """IF, I, LI, LIF, CubaLI, CubaLIF with the conventions resolved for this node."""

    def __init__(self, node: nir.NIRNode, kind: str, dt: float | None, shape: tuple[int, ...], dtype: torch.dtype,
                 conv: NodeConventions) -> None:
        cmp, reset, v0 = conv.threshold, conv.reset, conv.v0
        self.delayed_reset = conv.reset_timing == "next_step"
        p = lambda name, default=None: _t(np.broadcast_to(  # noqa: E731
            np.asarray(getattr(node, name, default) if getattr(node, name, None) is not None else default,
                       dtype=np.float64), shape), dtype)
        self.kind, self.cmp, self.reset_mode, self.v0, self.shape, self.dtype = kind, cmp, reset, v0, shape, dtype
        self.r = p("r", 1.0)
        self.fires = KINDS[kind].fires
        if self.fires:
            self.v_th, self.v_reset = p("v_threshold"), p("v_reset", 0.0)
        if kind in ("LI", "LIF"):
            self.k, self.v_leak = _t(dt / np.broadcast_to(np.asarray(node.tau, np.float64), shape), dtype), p("v_leak")
        if kind in ("CubaLI", "CubaLIF"):
            self.k_syn = _t(dt / np.broadcast_to(np.asarray(node.tau_syn, np.float64), shape), dtype)
            self.k = _t(dt / np.broadcast_to(np.asarray(node.tau_mem, np.float64), shape), dtype)
            self.v_leak, self.w_in = p("v_leak"), p("w_in", 1.0)

    def reset(self, batch: int) -> None:
        self.v = torch.full((batch, *self.shape), float(self.v0), dtype=self.dtype)
        self.i = torch.zeros((batch, *self.shape), dtype=self.dtype)
        self.s_prev = torch.zeros((batch, *self.shape), dtype=torch.bool)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        kind = self.kind
        if kind in ("IF", "I"):
            self.v = self.v + self.r * x
        elif kind in ("LI", "LIF"):
            self.v = self.v + self.k * (self.v_leak - self.v + self.r * x)
        else:  # CubaLI / CubaLIF: current first, then voltage with the new current (as Lava does)
            self.i = self.i + self.k_syn * (-self.i + self.w_in * x)
            self.v = self.v + self.k * (self.v_leak - self.v + self.r * self.i)
        if not self.fires:
            return self.v
        if self.delayed_reset:  # the previous step's spike resets now; the stored membrane keeps this step's value
            if self.reset_mode == "subtract":
                self.v = self.v - self.v_th * self.s_prev
            else:
                self.v = torch.where(self.s_prev, self.v_reset, self.v)
            self.s_prev = self.v >= self.v_th if self.cmp == ">=" else self.v > self.v_th
            return self.s_prev.to(self.dtype)
        s = self.v >= self.v_th if self.cmp == ">=" else self.v > self.v_th
        if self.reset_mode == "subtract":
            self.v = torch.where(s, self.v - self.v_th, self.v)
        else:
            self.v = torch.where(s, self.v_reset, self.v)
        return s.to(self.dtype)


# --------------------------------------------------------------------------------------------- module


class GraphModule(nn.Module):
    """Run any NIR graph step by step on CPU; ``forward(x)`` returns every node's output over time.

    ``dt`` (seconds per step) comes from the argument, else ``graph.metadata["dt"]``; graphs with time
    constants (LI, LIF, CubaLI, CubaLIF, Delay) need one (``--dt`` on the command line).
    """

    def __init__(self, graph: nir.NIRGraph, dt: float | None = None, dtype: torch.dtype = torch.float32,
                 record_voltage: bool = False) -> None:
        super().__init__()
        self.record_voltage = record_voltage
        #: after a forward with ``record_voltage=True``: membrane (after reset) ``[T, B, *shape]`` per neuron node
        self.voltages: dict[str, torch.Tensor] = {}
        if dt is not None and not float(dt) > 0:
            raise ValueError(f"dt must be positive, got {dt}")
        compiled = compile_graph(graph, dt)
        self.graph, self.shapes, self.conventions = compiled.graph, compiled.shapes, compiled.conventions
        self.dt = self.conventions.dt
        timed = [k for k, n in self.graph.nodes.items() if compiled.kind(k).timed]
        if self.dt is None and timed:
            raise ValueError(
                f"the graph has time constants (node {timed[0]!r}, {node_type(self.graph.nodes[timed[0]])}) but no "
                "metadata['dt']: pass the step in seconds (--dt on the command line, dt= in Python)"
            )
        self.dtype = dtype
        topo = compiled.topology
        self.order = list(topo.order)
        self.fwd_preds = {k: list(topo.preds[k]) for k in self.order}
        self.back_preds = {k: list(topo.back_preds[k]) for k in self.order}
        self.inputs = list(compiled.inputs)
        self.ops = {k: self._make_op(k, self.graph.nodes[k]) for k in self.order}

    def _in_shape(self, nid: str) -> tuple[int, ...]:
        preds = self.fwd_preds[nid] + self.back_preds[nid]
        return self.shapes[preds[0]] if preds else self.shapes[nid]

    def _make_op(self, nid: str, node: nir.NIRNode) -> _Op | None:
        t, d = node_type(node), self.dtype
        if t == "Input":
            return None
        if t == "Output":
            return _Fn(lambda x: x)
        if t == "Affine":
            w, b = _t(node.weight, d), _t(node.bias, d)
            return _Fn(lambda x: x @ w.T + b)
        if t == "Linear":
            w = _t(node.weight, d)
            return _Fn(lambda x: x @ w.T)
        if t == "Scale":
            s = _t(node.scale, d)
            return _Fn(lambda x: x * s)
        if t in ("Conv2d", "Conv1d"):
            return _conv(node, d, 2 if t == "Conv2d" else 1)
        if t in ("SumPool2d", "AvgPool2d"):
            return _pool(node, t == "SumPool2d")
        if t == "Flatten":
            n = len(self._in_shape(nid))
            start, end = int(node.start_dim) % n, int(node.end_dim) % n
            return _Fn(lambda x: x.flatten(start + 1, end + 1))
        if t == "Threshold":
            th = _t(node.threshold, d)
            return _Fn(lambda x: (x > th).to(d))
        if kind_of(node, nid).name == "ReLU":  # analog: max(0, x), stateless
            return _Fn(torch.relu)
        if t == "Delay":
            return _Delay(delay_steps(node, nid, self.dt, bool(self.back_preds[nid])), self.shapes[nid])
        if KINDS[t].category == "neuron":  # Threshold, the stateless one, is handled above
            return _Neuron(node, t, self.dt, self.shapes[nid], d, self.conventions.for_node(nid))
        raise NIRFormatError(f"node {nid!r}: unsupported NIR node type {t!r}")

    def _inputs(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not isinstance(x, Mapping):
            if len(self.inputs) != 1:
                raise ValueError(f"the graph has inputs {self.inputs}: pass a dict of arrays, one per input")
            x = {self.inputs[0]: x}
        out = {}
        for k in self.inputs:
            if k not in x:
                raise ValueError(f"no array given for input node {k!r}")
            v = torch.as_tensor(x[k]).to(self.dtype)
            if tuple(v.shape[2:]) != self.shapes[k] or v.dim() != len(self.shapes[k]) + 2:
                raise ValueError(
                    f"input {k!r}: expected an array [T, B, {', '.join(map(str, self.shapes[k]))}], "
                    f"got {tuple(v.shape)}"
                )
            out[k] = v
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``x``: ``[T, B, *input_shape]`` (or a dict per Input node) → ``{node_id: [T, B, *shape]}``."""
        xs = self._inputs(x)
        steps, batch = next(iter(xs.values())).shape[:2]
        for op in self.ops.values():
            if op is not None:
                op.reset(batch)
        prev: dict[str, torch.Tensor] = {}
        record: dict[str, list[torch.Tensor]] = {k: [] for k in self.order}
        neurons = [k for k, op in self.ops.items() if isinstance(op, _Neuron)] if self.record_voltage else []
        volts: dict[str, list[torch.Tensor]] = {k: [] for k in neurons}
        for t in range(steps):
            cur: dict[str, torch.Tensor] = {}
            for nid in self.order:
                op = self.ops[nid]
                if op is None:
                    cur[nid] = xs[nid][t]
                else:
                    cur[nid] = op.step(self._gather(nid, cur, prev, batch))
                record[nid].append(cur[nid])
            for nid in neurons:
                volts[nid].append(self.ops[nid].v)
            prev = cur
        self.voltages = {k: torch.stack(v) for k, v in volts.items()}
        return {k: torch.stack(v) for k, v in record.items()}

    def _gather(self, nid: str, cur: dict, prev: dict, batch: int) -> torch.Tensor:
        total = None
        for src in self.fwd_preds[nid]:
            total = cur[src] if total is None else total + cur[src]
        for src in self.back_preds[nid]:
            if src in prev:  # back edges deliver the previous step's output; nothing at t = 0
                total = prev[src] if total is None else total + prev[src]
        if total is None:
            total = torch.zeros((batch, *self._in_shape(nid)), dtype=self.dtype)
        return total


def simulate(
    graph: nir.NIRGraph, x: np.ndarray | Mapping[str, np.ndarray], dt: float | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``x`` (``[T, B, *input_shape]``) and return every node's output ``[T, B, *shape]``.

    ``dtype`` defaults to float64 for float64 input, else float32.
    """
    first = next(iter(x.values())) if isinstance(x, Mapping) else x
    if dtype is None:
        dtype = torch.float64 if np.asarray(first).dtype == np.float64 else torch.float32
    module = GraphModule(graph, dt=dt, dtype=dtype)
    return {k: v.numpy() for k, v in module(x).items()}
