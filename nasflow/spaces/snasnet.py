"""SNASNet search space and macro network (REFERENCE.md §3; papers/snasnet.txt).

A candidate is one 4-node cell (``nasflow.snn.cells``), written in matrix notation as four rows of
digits, e.g. ``"0303 0030 2002 0200"``: entry ``[i][j]`` (row ``i``, column ``j``) with ``i < j`` is
the forward edge ``i → j``, with ``i > j`` the backward edge from node ``i`` (step ``t-1``) to node
``j`` (step ``t``). Ops: 0 zeroize, 1 skip, 2 LIF-conv1x1-BN, 3 LIF-conv3x3-BN, 4 avgpool3x3.

Sampling follows the released code: every pair ``i < j`` draws an op uniformly from the five and, in
the backward space, a direction (forward or backward, 50/50); draws without a direct input → output
edge (``[0][3] = 0``) are redrawn. Nodes off every path from node 0 to node 3 are pruned; a cell's
canonical form has their entries zeroed, so two draws that build the same network compare equal.

The macro network (``SNASNet``, registered as ``create_model("snasnet", ...)``): direct-coding stem
``conv3x3-BN`` (analog), cell at C, reduction, ``AvgPool2d(2)``, the same cell at 2C, ``BN-LIF``,
``AvgPool2d(second_pool)``, ``Dropout(0.5)-Linear(→1024)-LIF-Linear(→vote·classes)``, voting over
``vote`` neurons, output averaged over T. Reduction ``"paper"``: ``conv3x3(C→2C)-BN-LIF``;
``"code"`` (released code): ``BN-LIF-conv3x3(C→2C)-BN``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nasflow.models import register_model
from nasflow.snn.blocks import NeuronSpec
from nasflow.snn.cells import NUM_NODES, OPS, CellError, SNASCell, active_edges, check_matrix
from nasflow.snn.layers import DirectEncoder, Flatten, SpikingAvgPool2d, TimeDistributed, VotingLayer
from nasflow.snn.wiring import Wired, Wiring, run_wiring

__all__ = [
    "CELL_KINDS",
    "REDUCTIONS",
    "RELEASED_CELLS",
    "SNASNET_NEURON",
    "CellError",
    "SNASNet",
    "SNASNetSpace",
    "canonical_cell",
    "cell_kind",
    "deployment_problem",
    "format_cell",
    "parse_cell",
    "sample_cell",
    "search_space_size",
]

CELL_KINDS = ("forward", "backward")
REDUCTIONS = ("paper", "code")
# LIF τ = 4/3 with decay_input (V = 0.25 V + 0.75 X), v_th = 1, hard reset to 0, detached reset,
# ATan surrogate; fires on H > v_th (the paper's Eq. 3, and NIR's convention).
SNASNET_NEURON = NeuronSpec(kind="lif", tau=4.0 / 3.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                            detach_reset=True, strict=True)
RELEASED_CELLS = {"cifar10": "0303 0030 2002 0200", "cifar100": "0302 0030 3003 0000"}

Matrix = tuple[tuple[int, ...], ...]


def parse_cell(text: str | Sequence[Sequence[int]]) -> Matrix:
    """``"0303 0030 2002 0200"`` (rows separated by spaces, commas, ``_`` or ``/``) → a checked matrix.

    Raises ``CellError`` naming the problem: wrong row count or length, a character that is not an op
    digit, both directions on one pair, or no path from node 0 to node 3.
    """
    if isinstance(text, str):
        rows = [r for r in re.split(r"[\s,_/]+", text.strip()) if r]
        if len(rows) != NUM_NODES or any(len(r) != NUM_NODES for r in rows):
            raise CellError(
                f"cell {text!r}: expected {NUM_NODES} rows of {NUM_NODES} digits (e.g. '0303 0030 2002 0200')"
            )
        bad = sorted({ch for r in rows for ch in r if ch not in "01234"})
        if bad:
            raise CellError(f"cell {text!r}: {bad} are not ops; ops are digits 0-4 {OPS}")
        matrix = tuple(tuple(int(ch) for ch in r) for r in rows)
    else:
        matrix = tuple(tuple(int(v) for v in r) for r in text)
    try:
        check_matrix(matrix)
        active_edges(matrix)
    except CellError as err:
        raise CellError(f"cell {format_cell_unchecked(matrix)!r}: {err}") from None
    return matrix


def format_cell_unchecked(matrix: Sequence[Sequence[int]]) -> str:
    return " ".join("".join(str(int(v)) for v in row) for row in matrix)


def format_cell(matrix: Sequence[Sequence[int]]) -> str:
    """The matrix notation of a cell (``parse_cell`` reads it back)."""
    return format_cell_unchecked(check_matrix(matrix))


def canonical_cell(cell: str | Sequence[Sequence[int]]) -> Matrix:
    """The cell with the entries of pruned edges (nodes off every input → output path) zeroed."""
    matrix = parse_cell(cell)
    out = [[0] * NUM_NODES for _ in range(NUM_NODES)]
    for e in active_edges(matrix):
        out[e.src][e.dst] = e.op
    return tuple(tuple(r) for r in out)


def cell_kind(cell: str | Sequence[Sequence[int]]) -> str:
    """``"backward"`` when the (pruned) cell has a backward edge, else ``"forward"``."""
    return "backward" if any(e.backward for e in active_edges(parse_cell(cell))) else "forward"


def sample_cell(rng: random.Random, kind: str = "backward") -> Matrix:
    """One random cell in canonical form (the released code's sampler; see the module docstring)."""
    if kind not in CELL_KINDS:
        raise ValueError(f"cell kind must be one of {CELL_KINDS}, got {kind!r}")
    while True:
        m = [[0] * NUM_NODES for _ in range(NUM_NODES)]
        for i in range(NUM_NODES):
            for j in range(i + 1, NUM_NODES):
                op = rng.randrange(len(OPS))
                if kind == "backward" and rng.random() < 0.5:
                    m[j][i] = op
                else:
                    m[i][j] = op
        if m[0][NUM_NODES - 1]:
            return canonical_cell(m)


def search_space_size(kind: str = "backward") -> int:
    """Matrices the sampler can draw before pruning: 4·5^5 = 12,500 forward; 4·9^5 = 236,196 backward."""
    per_pair = len(OPS) if kind == "forward" else 1 + 2 * (len(OPS) - 1)
    pairs = NUM_NODES * (NUM_NODES - 1) // 2
    return (len(OPS) - 1) * per_pair ** (pairs - 1)


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))


class SNASNet(Wired):
    """SNASNet's macro network around one searched cell (used twice, at C and 2C channels).

    Takes ``[B, C, H, W]`` (direct coding) or ``[T, B, C, H, W]`` (``event_input``) and returns the
    voting layer's output averaged over T, ``[B, classes]`` (train with CE on it).

    ``classifier_bn=True`` (not in the paper) puts a BatchNorm1d between ``fc1`` and its LIF. With the
    paper's head that LIF's input has a standard deviation near 0.1 at init (pooled spikes through a
    default-initialised Linear) against a threshold of 1, so it never fires and short trainings stay at
    chance; with BN it starts in the same regime as every other (BN-fed) LIF of the network. BN folds
    into the Linear for export.
    """

    def __init__(
        self,
        cell: str | Sequence[Sequence[int]] = RELEASED_CELLS["cifar10"],
        in_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        channels: int = 256,
        steps: int = 5,
        reduction: str = "code",
        second_pool: int = 4,
        vote: int = 10,
        hidden: int = 1024,
        dropout: float = 0.5,
        neuron: NeuronSpec | None = None,
        event_input: bool = False,
        count_include_pad: bool = False,
        classifier_bn: bool = False,
    ) -> None:
        super().__init__()
        matrix = parse_cell(cell)
        if reduction not in REDUCTIONS:
            raise ValueError(f"SNASNet reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if len(in_shape) != 3:
            raise ValueError(f"SNASNet needs an input shape (C, H, W), got {tuple(in_shape)}")
        c_in, h, w = (int(s) for s in in_shape)
        if second_pool < 1 or h % (2 * second_pool) or w % (2 * second_pool):
            raise ValueError(
                f"SNASNet: input {h}x{w} must be divisible by 2·second_pool = {2 * second_pool}; "
                "choose second_pool 2 (8x8 digits) or 4 (32x32 CIFAR)"
            )
        neuron = neuron or SNASNET_NEURON
        self.in_shape, self.steps, self.event_input = (c_in, h, w), steps, event_input
        self.config: dict[str, Any] = dict(
            cell=format_cell(matrix), in_shape=[c_in, h, w], num_classes=num_classes, channels=channels,
            steps=steps, reduction=reduction, second_pool=second_pool, vote=vote, hidden=hidden, dropout=dropout,
            neuron=neuron.to_dict(), event_input=event_input, count_include_pad=count_include_pad,
            classifier_bn=classifier_bn,
        )
        c = channels
        self.stem = TimeDistributed(_conv_bn(c_in, c)) if event_input else DirectEncoder(_conv_bn(c_in, c), steps)
        self.cell1 = SNASCell(matrix, c, neuron.build, count_include_pad)
        self.reduction = reduction
        if reduction == "code":
            self.reduce_bn = TimeDistributed(nn.BatchNorm2d(c))
        self.reduce_sn = neuron.build()
        self.reduce_conv = TimeDistributed(_conv_bn(c, 2 * c))
        self.pool1 = SpikingAvgPool2d(2)
        self.cell2 = SNASCell(matrix, 2 * c, neuron.build, count_include_pad)
        self.head_bn = TimeDistributed(nn.BatchNorm2d(2 * c))
        self.head_sn = neuron.build()
        self.pool2 = SpikingAvgPool2d(second_pool)
        self.flatten = Flatten()
        self.dropout = nn.Dropout(dropout)
        features = 2 * c * (h // (2 * second_pool)) * (w // (2 * second_pool))
        fc1: nn.Module = nn.Linear(features, hidden)
        if classifier_bn:
            fc1 = nn.Sequential(fc1, nn.BatchNorm1d(hidden))
        self.fc1 = TimeDistributed(fc1)
        self.fc1_sn = neuron.build()
        self.fc2 = TimeDistributed(nn.Linear(hidden, vote * num_classes))
        self.vote = VotingLayer(vote)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for inputs of the wrong shape or with NaN/inf values."""
        want = (self.steps, "B", *self.in_shape) if self.event_input else ("B", *self.in_shape)
        sample = tuple(x.shape[2:] if self.event_input else x.shape[1:])
        if x.dim() != len(want) or sample != self.in_shape:
            raise ValueError(f"SNASNet expects input of shape {want}, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("SNASNet got an input with NaN or infinite values")

    def wiring(self) -> Wiring:
        """Stem, cell, reduction (``code``: BN-LIF-conv-BN; ``paper``: conv-BN-LIF), pool, cell, head BN-LIF,
        pool, classifier and voting."""
        reduce = ("reduce_bn", "reduce_sn", "reduce_conv") if self.reduction == "code" else ("reduce_conv", "reduce_sn")
        return Wiring.chain("stem", "cell1", *reduce, "pool1", "cell2", "head_bn", "head_sn", "pool2", "flatten",
                            "dropout", "fc1", "fc1_sn", "fc2", "vote")

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Voting-layer output over time, ``[T, B, classes]``."""
        self.check_input(x)
        return run_wiring(self, self.wiring(), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(x).mean(0)


@register_model("snasnet")
def snasnet(arch: str | None = None, **kwargs: Any) -> SNASNet:
    """SNASNet macro network; ``cell`` (or ``arch``, the name every other model uses) in matrix notation (default:
    the released CIFAR-10 cell)."""
    if arch is not None:
        kwargs["cell"] = arch
    return SNASNet(**kwargs)


def deployment_problem(cell: str) -> str | None:
    """Why the network of ``cell`` cannot be exported to NIR and run on Lava, or None when it can.

    Checked on a tiny instance (C = 2, T = 2, 8x8 input): the graph structure does not depend on sizes.
    """
    from exporters.lava import build_plan
    from exporters.nir_export import to_nir

    try:
        model = SNASNet(cell, in_shape=(1, 8, 8), num_classes=10, channels=2, steps=2).eval()
        build_plan(to_nir(model, validate=False))
    except ValueError as err:  # ExportError and LavaBackendError are ValueErrors naming the node
        return str(err).splitlines()[0]
    return None


# Rejected draws in a row before sample() gives up on finding a deployable cell.
MAX_REJECTS = 10_000


class SNASNetSpace:
    """SNASNet's cell space as a ``SearchSpace``: an architecture is a canonical cell string.

    ``sample`` is the released code's sampler (``sample_cell``) in canonical matrix notation; with
    ``deployable_only`` it skips cells whose network has no NIR/Lava form, so what is searched is
    what can be deployed (skipping draws no random numbers, so the sequence of kept cells is the
    sampler's own). ``mutate`` changes node pairs (op and, in the backward space, direction) and
    re-canonicalises; ``crossover`` splices the rows of two parents. ``size`` counts the matrices
    the sampler draws from; cells that prune to the same network count once per matrix there.
    """

    def __init__(self, cell_kind: str = "backward", deployable_only: bool = False, reduction: str = "code",
                 second_pool: int = 0, classifier_bn: bool = False) -> None:
        if cell_kind not in CELL_KINDS:
            raise ValueError(f"cell kind must be one of {CELL_KINDS}, got {cell_kind!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.cell_kind, self.deployable_only = cell_kind, deployable_only
        self.reduction, self.second_pool, self.classifier_bn = reduction, second_pool, classifier_bn
        self.name = f"snasnet-{cell_kind}"
        self._problems: dict[str, str | None] = {}

    def _allowed(self, cell: str) -> bool:
        if not self.deployable_only:
            return True
        if cell not in self._problems:
            self._problems[cell] = deployment_problem(cell)
        return self._problems[cell] is None

    def sample(self, rng: random.Random) -> str:
        for _ in range(MAX_REJECTS):
            cell = format_cell(sample_cell(rng, self.cell_kind))
            if self._allowed(cell):
                return cell
        raise ValueError(f"no deployable {self.cell_kind} cell in {MAX_REJECTS} draws; set deployable_only: false")

    def _states(self) -> list[tuple[int, int]]:
        """(forward op, backward op) a node pair can hold; at most one of them is non-zero."""
        ops = range(len(OPS))
        states = [(op, 0) for op in ops]
        if self.cell_kind == "backward":
            states += [(0, op) for op in ops if op]
        return states

    def _accept(self, matrix: list[list[int]]) -> str | None:
        """The canonical cell of ``matrix`` when it is one the sampler could draw (and deployable)."""
        if not matrix[0][NUM_NODES - 1]:
            return None
        try:
            cell = format_cell(canonical_cell(matrix))
        except CellError:
            return None
        if self.cell_kind == "forward" and cell_kind(cell) == "backward":
            return None
        return cell if self._allowed(cell) else None

    def mutate(self, arch: str, rng: random.Random, prob: float) -> str:
        """Each node pair changes with probability ``prob`` to a different state, and at least one pair
        does (an unchanged child would only be rejected as a duplicate); retried until valid."""
        pairs = [(i, j) for i in range(NUM_NODES) for j in range(i + 1, NUM_NODES)]
        states = self._states()
        for _ in range(100):
            m = [list(r) for r in parse_cell(arch)]
            chosen = [p for p in pairs if rng.random() < prob] or [rng.choice(pairs)]
            for i, j in chosen:
                new = rng.choice([s for s in states if s != (m[i][j], m[j][i])])
                m[i][j], m[j][i] = new
            cell = self._accept(m)
            if cell is not None:
                return cell
        return arch

    def crossover(self, a: str, b: str, rng: random.Random) -> str:
        """Rows ``0..i-1`` of ``a`` and ``i..3`` of ``b`` (first valid ``i`` in a random order; else ``a``)."""
        ma, mb = parse_cell(a), parse_cell(b)
        points = list(range(1, NUM_NODES))
        rng.shuffle(points)
        for i in points:
            cell = self._accept([list(r) for r in ma[:i] + mb[i:]])
            if cell is not None:
                return cell
        return a

    def key(self, arch: str) -> str:
        return arch

    def format(self, arch: str) -> str:
        return arch

    def parse(self, text: str) -> str:
        """A cell in matrix notation → its canonical spelling; errors name the bad row, op or edge."""
        cell = format_cell(canonical_cell(text))
        if self.cell_kind == "forward" and cell_kind(cell) == "backward":
            raise CellError(f"cell {text!r} has a backward edge; the forward space has none")
        return cell

    def size(self) -> int:
        return search_space_size(self.cell_kind)

    def second_pool_for(self, in_shape: Sequence[int]) -> int:
        """The second pooling size: as configured, or 4 for inputs of 32 pixels or more, else 2."""
        return self.second_pool or (4 if int(in_shape[-1]) >= 32 else 2)

    def build(self, arch: str, *, in_shape: Any, num_classes: int, channels: int, steps: int,
              neuron: Any = None, **kw: Any) -> nn.Module:
        return SNASNet(cell=arch, in_shape=in_shape, num_classes=num_classes, channels=channels, steps=steps,
                       reduction=self.reduction, second_pool=self.second_pool_for(in_shape),
                       classifier_bn=self.classifier_bn, neuron=neuron, **kw)

    def fingerprint(self) -> dict[str, Any]:
        return {"space": self.name, "deployable_only": self.deployable_only, "reduction": self.reduction,
                "classifier_bn": self.classifier_bn}
