"""A NIR graph compiled once into what every backend consumes: populations and the linear paths between them.

A *population* is a neuron node (``kinds.NEURON_TYPES``): what a chip places on cores and Lava runs as one
process. Between populations sit linear nodes (weights, Scale, Flatten, pooling) that collapse into
connections. A *linear path* runs from a source (an Input, a population, or a node no linear map
explains, such as a Delay) through linear nodes only, into a population or an Output; ``n_back`` counts
the back edges it crosses (each delays delivery by one step, REFERENCE.md §6). A node fed by several
paths sums them (fan-in).

The torch reference steps the ``topology``; the Lava backend and netx turn ``paths`` into connection
processes; ``hwmodels`` turns populations into layers and the weight nodes on the paths into synapses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import nir
import numpy as np

from exporters.core.conventions import Conventions
from exporters.core.errors import NIRFormatError
from exporters.core.kinds import ACTIVATION_KEY, NodeKind, kind_of
from exporters.core.shapes import infer_shapes
from exporters.core.traversal import (
    Topology,
    check_finite_parameters,
    flatten_graph,
    input_ids,
    output_ids,
    require_input,
    topology,
)

__all__ = ["CompiledGraph", "LinearPath", "Population", "compile_graph"]


@dataclass(frozen=True)
class Population:
    """A neuron node: its id, kind and shape (without batch and time)."""

    node_id: str
    kind: NodeKind
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n


@dataclass(frozen=True)
class LinearPath:
    """Linear nodes ``nodes`` (in signal order) from ``source`` into ``target``, crossing ``n_back`` back edges."""

    source: str
    target: str
    nodes: tuple[str, ...]
    n_back: int


@dataclass(frozen=True)
class CompiledGraph:
    """A flattened, shape-checked graph with its order, conventions, populations and linear paths."""

    graph: nir.NIRGraph
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    topology: Topology
    conventions: Conventions
    populations: dict[str, Population]

    def kind(self, node_id: str) -> NodeKind:
        """The kind-table entry of node ``node_id``."""
        return kind_of(self.graph.nodes[node_id], node_id)

    def is_source(self, node_id: str) -> bool:
        """Whether paths start at ``node_id`` (anything that is not a linear node or an Output)."""
        kind = self.kind(node_id)
        return kind.category != "linear" and kind.name != "Output"

    @cached_property
    def paths(self) -> tuple[LinearPath, ...]:
        """Every linear path into every population, Output, Delay and dangling linear node (one whose output goes
        nowhere), by target in topological order.

        Paths into one target come in depth-first order over its incoming edges (edge order), so that the
        connections built from them come out in the same order every time. Raises ``NIRFormatError`` for a
        cycle through linear nodes only (no neuron holds its state).
        """
        out: list[LinearPath] = []
        succs = self.topology.succs
        for target in self.topology.order:
            kind = self.kind(target)
            if (target in self.populations or kind.name in ("Output", "Delay")
                    or (kind.category == "linear" and not succs[target])):
                out.extend(self._paths_into(target))
        return tuple(out)

    def paths_into(self, target: str) -> list[LinearPath]:
        """The paths ending at ``target``."""
        return list(self._by_target.get(target, ()))

    @cached_property
    def _by_target(self) -> dict[str, list[LinearPath]]:
        out: dict[str, list[LinearPath]] = {}
        for p in self.paths:
            out.setdefault(p.target, []).append(p)
        return out

    def _paths_into(self, target: str) -> list[LinearPath]:
        found: list[LinearPath] = []
        sources = self.topology.sources

        def walk(node: str, trail: list[str], n_back: int, seen: frozenset[str]) -> None:
            for src, is_back in sources[node]:
                nb = n_back + int(is_back)
                if self.is_source(src):
                    found.append(LinearPath(src, target, tuple(trail[::-1]), nb))
                    continue
                if src in seen:
                    raise NIRFormatError(f"node {src!r}: a cycle through linear nodes only has no neuron to break it")
                walk(src, trail + [src], nb, seen | {src})

        walk(target, [], 0, frozenset())
        return found


def _check_pass_through(nid: str, node: nir.NIRNode) -> None:
    """An analog ReLU's ``LI`` carrier must pass its input through (``r = 1``, ``v_leak = 0``; ``τ`` is not read)."""
    r, v_leak = np.asarray(node.r, dtype=np.float64), np.asarray(node.v_leak, dtype=np.float64)
    if not (np.all(r == 1.0) and np.all(v_leak == 0.0)):
        raise NIRFormatError(f"node {nid!r}: an analog ReLU (LI marked {ACTIVATION_KEY}=relu) must have r = 1 and "
                             "v_leak = 0 (it computes max(0, x)); fold any gain or offset into the weights before it")


def compile_graph(graph: nir.NIRGraph, dt: float | None = None) -> CompiledGraph:
    """Check, flatten and compile ``graph`` (``NIRFormatError`` naming the node on any problem).

    ``dt`` (seconds) overrides ``graph.metadata["dt"]``.
    """
    require_input(graph)
    check_finite_parameters(graph)
    flat = flatten_graph(graph)
    for nid, node in flat.nodes.items():
        if kind_of(node, nid).name == "ReLU":
            _check_pass_through(nid, node)
    shapes = {k: tuple(int(s) for s in v) for k, v in infer_shapes(flat).items()}
    conventions = Conventions.from_metadata(flat.metadata)
    if dt is not None:
        conventions = replace(conventions, dt=float(dt))
    topo = topology(flat)
    kinds = {nid: kind_of(flat.nodes[nid], nid) for nid in topo.order}
    populations = {nid: Population(nid, kinds[nid], shapes[nid]) for nid in topo.order
                   if kinds[nid].category == "neuron"}
    return CompiledGraph(flat, tuple(input_ids(flat)), tuple(output_ids(flat)), shapes, topo, conventions,
                         populations)
