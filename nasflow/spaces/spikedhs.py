"""SpikeDHS's cell space (REFERENCE.md §4; paper §4.1-4.2): declarations, genotypes and decoding, no modules.

A cell is a DAG of ``n`` nodes (3 or 4). Its inputs are the outputs of the two previous cells (``s0`` from
cell k-2, ``s1`` from cell k-1); node ``j`` may read ``s0``, ``s1`` and every earlier node, so it has ``j + 2``
incoming edges, and the cell's output is all of its nodes (DARTS' concatenation; ``n·C`` channels). Every edge
of the relaxed cell mixes the ops of a registry with ``softmax(α)``; normal and reduction cells have their own
α (paper §4.1.2) and reduction cells apply stride 2 on the edges that leave ``s0``/``s1``.

Two presets say *where* the mixture happens:

* ``paper`` (default): **at the membrane**. Each op yields a current ``BN(op(x))`` (``skip`` the input spikes
  themselves, ``zero`` nothing) and the node sums the ``softmax(α)``-weighted currents into one node neuron.
  Since one neuron serves the node, the ops differ in what they compute: ``conv3x3``, ``conv5x5``,
  ``dil_conv3x3`` (dilation 2), ``avg_pool3x3`` (a fixed 1/9 depthwise window, then BN), ``skip``, ``zero``.
* ``released``: what the authors' released search executes: ``skip``, ``snn_b3``, ``snn_b5`` (conv3x3+BN+its own
  neuron with Dspike temperature 3 or 5), mixed **at spikes** (the node is the weighted spike sum, no neuron).
  Its decoded network mixes at the membrane, as the released retrain model does (``snn_b3``/``snn_b5`` become
  conv3x3-BN currents into the node neuron): a node fed the sum of two spike trains would put a weight layer
  behind two sources, which chips (and ``hwmodels``) do not accept.

The classification macro keeps the paper's layout with fixed down-sampling: a stem (conv3x3-BN-neuron at
``stem_multiplier·C`` channels) and ``layers`` cells with reduction cells at ``layers // 3`` and
``2·layers // 3`` (DARTS' and SpikeDHS-CLA's positions; 8 layers → reductions at 2 and 5), then global average
pooling and a linear read-out whose membrane is averaged over T (the released code's read-out). On 8x8 digits
the two reductions give 8 → 4 → 2 (the same two halvings the paper's 32x32 CIFAR layout makes, so no cell runs
below 2x2); the digits default uses 5 layers (reductions at 1 and 3) to fit the search in minutes on 2 cores.

Decoding (``decode_cell``): per node, the two incoming edges with the largest strength (the max over non-``zero``
ops of ``softmax(α)``; ties by edge index), each with its argmax non-``zero`` op. A genotype's string form
(``format_genotype``) reads back with ``parse_genotype``::

    paper:normal=conv3x3@1+skip@0,conv5x5@2+skip@1,...;reduce=...

``op@k`` names an edge by its input: 0 = ``s0``, 1 = ``s1``, ``k >= 2`` = node ``k - 2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nasflow.snn.dhs import SPIKEDHS_NEURON

__all__ = [
    "BASELINE", "DEFAULT_NEURON", "NODE_CHOICES", "OPS", "PRESETS", "CellGenotype", "Genotype", "SpikeDHSSpace",
    "decode_cell", "format_genotype", "parse_cell", "parse_genotype", "reduction_layers",
]

#: Every op the cell ops can be built from, with what it computes (help texts and error messages).
OPS: dict[str, str] = {
    "zero": "no connection",
    "skip": "the input spikes (stride 2: conv1x1-BN)",
    "conv3x3": "conv 3x3 + BN",
    "conv5x5": "conv 5x5 + BN",
    "dil_conv3x3": "conv 3x3, dilation 2 + BN",
    "avg_pool3x3": "average over a 3x3 window (fixed depthwise conv) + BN",
    "snn_b3": "conv 3x3 + BN + own neuron, Dspike b = 3",
    "snn_b5": "conv 3x3 + BN + own neuron, Dspike b = 5",
}


@dataclass(frozen=True)
class Preset:
    """Where ops are mixed and which ops a preset offers (``ops`` in registry order)."""

    name: str
    mix: str  # membrane | spikes
    ops: tuple[str, ...]


PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", "membrane", ("conv3x3", "conv5x5", "dil_conv3x3", "avg_pool3x3", "skip", "zero")),
    "released": Preset("released", "spikes", ("skip", "snn_b3", "snn_b5")),
}
NODE_CHOICES = (3, 4)
#: A hand-made genotype (every node: conv3x3 from its two nearest inputs): the ``spikedhs`` model's default.
BASELINE = ("paper:normal=conv3x3@1+conv3x3@0,conv3x3@2+conv3x3@1,conv3x3@3+conv3x3@2;"
            "reduce=conv3x3@1+conv3x3@0,conv3x3@2+conv3x3@1,conv3x3@3+conv3x3@2")

#: The neuron a SpikeDHS network uses unless the config names another (``nasflow.snn.dhs.SPIKEDHS_NEURON``).
DEFAULT_NEURON = SPIKEDHS_NEURON


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Positions of the reduction cells among ``layers`` cells (``layers // 3`` and ``2·layers // 3``)."""
    if layers < 3:
        raise ValueError(f"the SpikeDHS macro needs at least 3 layers (two reductions and a normal cell), got {layers}")
    return (layers // 3, 2 * layers // 3)


def _check_preset(preset: str) -> Preset:
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown SpikeDHS preset {preset!r}; choose one of {', '.join(PRESETS)}") from None


def _check_nodes(nodes: int) -> int:
    if nodes not in NODE_CHOICES:
        raise ValueError(f"SpikeDHS cells have 3 or 4 nodes (paper §4.1), got --nodes {nodes}")
    return int(nodes)


def check_ops(preset: str, ops: Sequence[str] | None) -> tuple[str, ...]:
    """The op list of a search: ``ops`` (a subset of the preset's, kept in registry order) or the preset's."""
    p = _check_preset(preset)
    if ops is None:
        return p.ops
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        raise ValueError(f"unknown SpikeDHS op(s) {unknown}; known: {', '.join(OPS)}")
    foreign = [o for o in ops if o not in p.ops]
    if foreign:
        raise ValueError(f"op(s) {foreign} do not belong to the {preset!r} preset (its ops: {', '.join(p.ops)})")
    chosen = tuple(o for o in p.ops if o in ops)
    if not [o for o in chosen if o != "zero"]:
        raise ValueError("a SpikeDHS op list needs at least one op other than 'zero'")
    return chosen


@dataclass(frozen=True)
class CellGenotype:
    """A decoded cell: per node, its ``(op, input)`` edges (input 0 = s0, 1 = s1, k >= 2 = node k - 2)."""

    nodes: tuple[tuple[tuple[str, int], ...], ...]

    def __post_init__(self) -> None:
        _check_nodes(len(self.nodes))
        for j, edges in enumerate(self.nodes):
            if not edges:
                raise ValueError(f"node {j} of the cell has no incoming edge")
            inputs = [k for _, k in edges]
            if len(set(inputs)) != len(inputs):
                raise ValueError(f"node {j} reads input {inputs} more than once")
            for op, k in edges:
                if not 0 <= k < j + 2:
                    raise ValueError(f"node {j} cannot read input {k}: node {j} reads s0 (0), s1 (1) or nodes 0.."
                                     f"{j - 1} (2..{j + 1})")
                if op not in OPS or op == "zero":
                    raise ValueError(f"node {j}: {op!r} is not an op of a decoded cell (ops: "
                                     f"{', '.join(o for o in OPS if o != 'zero')})")

    def format(self) -> str:
        return ",".join("+".join(f"{op}@{k}" for op, k in edges) for edges in self.nodes)


@dataclass(frozen=True)
class Genotype:
    """A decoded SpikeDHS architecture: the preset it was searched in and its normal and reduction cells."""

    preset: str
    normal: CellGenotype
    reduce: CellGenotype

    def __post_init__(self) -> None:
        p = _check_preset(self.preset)
        if len(self.normal.nodes) != len(self.reduce.nodes):
            raise ValueError(f"normal and reduction cells must have the same node count, got "
                             f"{len(self.normal.nodes)} and {len(self.reduce.nodes)}")
        for kind, cell in (("normal", self.normal), ("reduce", self.reduce)):
            foreign = sorted({op for edges in cell.nodes for op, _ in edges} - set(p.ops))
            if foreign:
                raise ValueError(f"{kind} cell uses {foreign}, not ops of the {self.preset!r} preset "
                                 f"({', '.join(p.ops)})")

    @property
    def nodes(self) -> int:
        return len(self.normal.nodes)

    def __str__(self) -> str:
        return format_genotype(self)


def format_genotype(g: Genotype) -> str:
    """``preset:normal=…;reduce=…`` (see the module docstring); ``parse_genotype`` reads it back."""
    return f"{g.preset}:normal={g.normal.format()};reduce={g.reduce.format()}"


def parse_cell(text: str, where: str = "cell") -> CellGenotype:
    """The cell ``CellGenotype.format`` wrote (``op@k+op@k,...``); a ``ValueError`` naming ``where`` otherwise."""
    nodes = []
    for j, node in enumerate(text.split(",")):
        edges = []
        for part in node.split("+"):
            op, sep, k = part.strip().partition("@")
            if not sep or not k.strip().lstrip("-").isdigit():
                raise ValueError(f"{where}: node {j} edge {part!r} is not 'op@input' (e.g. conv3x3@1)")
            edges.append((op.strip(), int(k)))
        nodes.append(tuple(edges))
    try:
        return CellGenotype(tuple(nodes))
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def parse_genotype(text: str) -> Genotype:
    """The genotype ``text`` spells (``format_genotype``'s form); a ``ValueError`` naming the bad part otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"a SpikeDHS genotype is a string, got {type(text).__name__}")
    preset, sep, rest = text.strip().partition(":")
    if not sep:
        raise ValueError(f"SpikeDHS genotype {text!r} must start with its preset ('paper:' or 'released:')")
    _check_preset(preset)
    parts = dict(p.partition("=")[::2] for p in rest.split(";"))
    if set(parts) != {"normal", "reduce"}:
        raise ValueError(f"SpikeDHS genotype {text!r} needs exactly 'normal=...' and 'reduce=...' separated by ';'")
    try:
        normal, reduce = parse_cell(parts["normal"], "normal cell"), parse_cell(parts["reduce"], "reduce cell")
        return Genotype(preset, normal, reduce)
    except ValueError as err:
        raise ValueError(f"SpikeDHS genotype {text!r}: {err}") from None


def edge_index(nodes: int) -> list[tuple[int, int]]:
    """``(node, input)`` of every edge of an ``nodes``-node cell, in α-row order (node by node, inputs ascending)."""
    return [(j, k) for j in range(_check_nodes(nodes)) for k in range(j + 2)]


def _softmax(row: Sequence[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def decode_cell(alpha: Sequence[Sequence[float]], ops: Sequence[str], nodes: int, keep: int = 2) -> CellGenotype:
    """The cell a matrix of logits selects (rows: ``edge_index(nodes)``, columns: ``ops``).

    Per node the ``keep`` incoming edges of largest strength (max over non-``zero`` ops of ``softmax(α)``, ties
    broken by the lower edge index), each with its argmax non-``zero`` op (ties: the earlier op).
    """
    index = edge_index(nodes)
    if len(alpha) != len(index) or any(len(r) != len(ops) for r in alpha):
        raise ValueError(f"α must be {len(index)}x{len(ops)} for a {nodes}-node cell over {len(ops)} ops")
    live = [i for i, o in enumerate(ops) if o != "zero"]
    cell = []
    for j in range(nodes):
        rows = [(e, _softmax(alpha[e])) for e, (n, _) in enumerate(index) if n == j]
        strength = [(max(p[i] for i in live), e, p) for e, p in rows]
        best = sorted(strength, key=lambda t: (-t[0], t[1]))[:keep]
        chosen = []
        for _, e, p in sorted(best, key=lambda t: t[1]):
            i = max(live, key=lambda i: (p[i], -i))
            chosen.append((ops[i], index[e][1]))
        cell.append(tuple(chosen))
    return CellGenotype(tuple(cell))


@dataclass(frozen=True)
class SpikeDHSSpace:
    """One SpikeDHS search: preset, node count, op list and macro (checked on construction).

    The relaxed network of this space is built by ``nasflow.snn.dhs.RelaxedDHSNet``, a decoded genotype by the
    ``spikedhs`` model (``nasflow.snn.dhs.DHSNet``).
    """

    preset: str = "paper"
    nodes: int = 3
    ops: tuple[str, ...] | None = None
    layers: int = 5
    stem_multiplier: int = 2

    def __post_init__(self) -> None:
        _check_nodes(self.nodes)
        object.__setattr__(self, "ops", check_ops(self.preset, self.ops))
        reduction_layers(self.layers)
        if self.stem_multiplier < 1:
            raise ValueError(f"stem_multiplier must be >= 1, got {self.stem_multiplier}")

    @property
    def name(self) -> str:
        return "spikedhs"

    @property
    def mix(self) -> str:
        return PRESETS[self.preset].mix

    def edges(self) -> list[tuple[int, int]]:
        return edge_index(self.nodes)

    def decode(self, alpha_normal: Sequence[Sequence[float]], alpha_reduce: Sequence[Sequence[float]]) -> Genotype:
        """The genotype two α matrices select."""
        assert self.ops is not None
        return Genotype(self.preset, decode_cell(alpha_normal, self.ops, self.nodes),
                        decode_cell(alpha_reduce, self.ops, self.nodes))

    def fingerprint(self) -> dict[str, Any]:
        return {"space": "spikedhs", "preset": self.preset, "nodes": self.nodes, "ops": list(self.ops or ()),
                "layers": self.layers, "stem_multiplier": self.stem_multiplier}
