"""SNASNet cells (REFERENCE.md §3): 4 nodes, forward edges and temporal feedback (backward) edges.

A cell is a 4x4 matrix of operation indices. Entry ``[i][j]`` with ``i < j`` is the op of the forward
edge ``i → j``; entry ``[i][j]`` with ``i > j`` is the op of the backward edge from node ``i`` to node
``j``, whose output at step ``t`` reaches node ``j`` at step ``t + 1``. Ops (``OPS``): 0 zeroize (no
edge), 1 skip, 2 ``LIF → conv1x1 → BN``, 3 ``LIF → conv3x3 → BN``, 4 ``avgpool3x3`` (stride 1).
Node values are analog sums; node 0 is the cell input, node 3 the output.

Per step ``t`` (the released code's equations, one schedule for every cell)::

    n_0[t] = x[t] + fb_0[t]
    n_j[t] = Σ_{i<j} F_ij(n_i[t]) + fb_j[t]                   (j = 1, 2, 3)
    fb_j[t+1] = Σ_{k>j} B_kj(n_k[t])                          (fb_j[0] = 0)

Every op runs once per step on its source node's value at that step; a backward op's output is
delivered one step late. That is exactly the reference time axis of an exported NIR graph
(feed-forward within the step, back edges one step late). The cell states this as its wiring
(``nasflow.snn.wiring``): node ``j`` is the junction ``node{j}``, each op a step ``e{src}_{dst}`` on its
source node, and a backward op's value joins its target junction one step late; ``forward`` runs that
wiring and exporters convert it (each backward edge's last link, op output → node ``dst``, becomes a NIR
back edge). ``SNASCell.structure()`` lists the edges as ``(src, dst, op_module, is_backward)``. Cells
without backward edges run multi-step (whole ``[T, B, ...]`` per op); cells with backward edges loop
over time with stateful neurons. In eval mode both give the same result; in train mode BatchNorm
normalises over ``T·B`` (multi-step) or over ``B`` per step (the released code's per-step convention).

Nodes that are not on a data-flow path from node 0 to node 3 are pruned (their edges dropped), as
the released code does; a cell with no such path is rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from nasflow.snn.layers import TimeDistributed
from nasflow.snn.neurons import Neuron
from nasflow.snn.wiring import IN, Step, Wired, Wiring, junction, run_wiring

__all__ = [
    "NUM_NODES",
    "OPS",
    "CellEdge",
    "CellError",
    "SNASCell",
    "SpikingConvOp",
    "active_edges",
    "check_matrix",
    "make_op",
]

NUM_NODES = 4
OPS: tuple[str, ...] = ("zero", "skip", "conv1x1", "conv3x3", "avgpool3x3")

Matrix = tuple[tuple[int, ...], ...]


class CellError(ValueError):
    """A cell matrix breaks the search-space rules (shape, op range, direction, connectivity)."""


class CellEdge(NamedTuple):
    """One active edge: ``src → dst`` with op index ``op``; ``backward`` edges are delayed one step."""

    src: int
    dst: int
    op: int
    backward: bool


def check_matrix(matrix: Sequence[Sequence[int]]) -> Matrix:
    """Validate shape, op range, an empty diagonal and at most one direction per node pair."""
    rows = tuple(tuple(int(v) for v in row) for row in matrix)
    if len(rows) != NUM_NODES or any(len(r) != NUM_NODES for r in rows):
        raise CellError(f"a cell is a {NUM_NODES}x{NUM_NODES} matrix, got row lengths {[len(r) for r in rows]}")
    for i, row in enumerate(rows):
        for j, op in enumerate(row):
            if not 0 <= op < len(OPS):
                raise CellError(f"cell entry [{i}][{j}] = {op} is not an op; ops are 0-{len(OPS) - 1} {OPS}")
    for i in range(NUM_NODES):
        if rows[i][i]:
            raise CellError(f"cell entry [{i}][{i}] must be 0 (no self edges), got {rows[i][i]}")
        for j in range(i + 1, NUM_NODES):
            if rows[i][j] and rows[j][i]:
                raise CellError(
                    f"nodes {i} and {j} have both a forward ([{i}][{j}] = {rows[i][j]}) and a backward "
                    f"([{j}][{i}] = {rows[j][i]}) edge; each pair gets one direction, set one of them to 0"
                )
    return rows


def _reach(edges: list[CellEdge], start: int, forward: bool) -> set[int]:
    seen, todo = {start}, [start]
    while todo:
        n = todo.pop()
        for e in edges:
            a, b = (e.src, e.dst) if forward else (e.dst, e.src)
            if a == n and b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


def active_edges(matrix: Sequence[Sequence[int]]) -> tuple[CellEdge, ...]:
    """The edges left after pruning nodes off every data-flow path from node 0 to node 3.

    Data flow follows forward and backward edges alike (a backward edge carries data one step
    later). Raises ``CellError`` when node 3 cannot be reached from node 0.
    """
    rows = check_matrix(matrix)
    edges = [
        CellEdge(i, j, rows[i][j], i > j) for i in range(NUM_NODES) for j in range(NUM_NODES) if rows[i][j]
    ]
    last = NUM_NODES - 1
    keep = _reach(edges, 0, True) & _reach(edges, last, False)
    if last not in keep:
        text = " ".join("".join(str(v) for v in r) for r in rows)
        raise CellError(f"cell {text!r} has no path from the input (node 0) to the output (node {last})")
    return tuple(e for e in edges if e.src in keep and e.dst in keep)


class SpikingConvOp(Wired):
    """``LIF → conv k×k (no bias) → BN`` on ``[T, B, C, H, W]``; ``sn`` spikes, ``conv`` is conv+BN."""

    def __init__(self, channels: int, kernel: int, neuron: Neuron) -> None:
        super().__init__()
        self.sn = neuron
        conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False)
        self.conv = TimeDistributed(nn.Sequential(conv, nn.BatchNorm2d(channels)))

    def wiring(self) -> Wiring:
        return Wiring.chain("sn", "conv")


class AvgPool3x3(nn.Module):
    """3x3 average pool, stride 1, padding 1, on ``[T, B, C, H, W]`` (NAS-Bench-201's pooling op).

    ``count_include_pad=False`` (the released code) divides border windows by the pixels they cover;
    ``True`` always divides by 9 (a plain NIR ``AvgPool2d``).
    """

    def __init__(self, count_include_pad: bool = False) -> None:
        super().__init__()
        self.count_include_pad = count_include_pad
        self.pool = TimeDistributed(nn.AvgPool2d(3, 1, 1, count_include_pad=count_include_pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


def make_op(op: int, channels: int, neuron: Neuron | None = None, count_include_pad: bool = False) -> nn.Module:
    """The module of op index ``op`` (1-4) at ``channels`` channels; conv ops need a fresh ``neuron``."""
    if op == 1:
        return nn.Identity()
    if op in (2, 3):
        if neuron is None:
            raise ValueError(f"op {op} ({OPS[op]}) needs a neuron module")
        return SpikingConvOp(channels, 1 if op == 2 else 3, neuron)
    if op == 4:
        return AvgPool3x3(count_include_pad)
    raise ValueError(f"op {op} has no module; ops with modules are 1-4 {OPS[1:]}")


def _edge_key(e: CellEdge) -> str:
    return f"e{e.src}_{e.dst}"


class SNASCell(Wired):
    """A searched cell at ``channels`` channels; ``neuron_factory()`` builds each conv op's LIF.

    ``edges`` (after pruning) are in evaluation order; op modules live in ``ops`` under
    ``e{src}_{dst}`` (qualified names such as ``cell1.ops.e0_1.sn``).
    """

    def __init__(
        self,
        matrix: Sequence[Sequence[int]],
        channels: int,
        neuron_factory: Callable[[], Neuron],
        count_include_pad: bool = False,
    ) -> None:
        super().__init__()
        self.matrix = check_matrix(matrix)
        self.edges = active_edges(self.matrix)
        self.channels = channels
        self.ops = nn.ModuleDict(
            {_edge_key(e): make_op(e.op, channels, neuron_factory() if e.op in (2, 3) else None, count_include_pad)
             for e in self.edges}
        )
        self.recurrent = any(e.backward for e in self.edges)
        for m in self.ops.modules():
            if isinstance(m, Neuron):
                # The step loop calls each neuron once per step; it must carry its state between calls.
                m.stateful = self.recurrent
        self._wiring = self._build_wiring()

    def structure(self) -> list[tuple[int, int, nn.Module, bool]]:
        """``(src, dst, op module, is_backward)`` per active edge.

        Node ``j``'s value is the sum of its incoming edges' outputs (node 0 also gets the cell
        input); a backward edge's op runs on ``src`` at step ``t`` and its output joins ``dst`` at
        ``t + 1``. Node 3 is the cell output.
        """
        return [(e.src, e.dst, self.ops[_edge_key(e)], e.backward) for e in self.edges]

    def _build_wiring(self) -> Wiring:
        # Junction node{j} (node 0 also takes the cell input), then the ops out of it: forward ones before
        # backward ones, by target. Exported, a DFS from the input then enters every cycle at its lowest
        # node, the target of the backward edge that closes it (the edge NIR marks as a back edge).
        active = sorted({0, NUM_NODES - 1} | {e.src for e in self.edges} | {e.dst for e in self.edges})
        steps: list[Step] = []
        for j in active:
            into = [e for e in self.edges if e.dst == j]
            fwd = tuple(_edge_key(e) for e in into if not e.backward)
            steps.append(junction(f"node{j}", *((IN,) if j == 0 else ()), *fwd,
                                  back=tuple(_edge_key(e) for e in into if e.backward)))
            out = sorted((e for e in self.edges if e.src == j), key=lambda e: (e.backward, e.dst))
            steps.extend(Step(_edge_key(e), f"ops.{_edge_key(e)}", (f"node{j}",)) for e in out)
        text = " ".join("".join(str(v) for v in r) for r in self.matrix)
        return Wiring(tuple(steps), output=f"node{NUM_NODES - 1}", title=f"cell {text!r}",
                      labels={f"node{j}": f"node {j}" for j in active})

    def wiring(self) -> Wiring:
        return self._wiring

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] != self.channels:
            raise ValueError(
                f"SNASCell({self.channels} channels) expects [T, B, {self.channels}, H, W], got {tuple(x.shape)}"
            )
        return run_wiring(self, self._wiring, x)

    def extra_repr(self) -> str:
        text = " ".join("".join(str(v) for v in r) for r in self.matrix)
        return f"cell={text!r}, channels={self.channels}, recurrent={self.recurrent}"
