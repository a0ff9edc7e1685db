"""SpikeDHS's layer level (paper §4.1.2; REFERENCE.md §4): the resolution trellis, its paths and Viterbi decoding.

The network is ``layers`` cells, each at one of ``levels`` resolutions. Level 0 is the stem's resolution after
the first down-sampling; level ``k`` divides it further by ``rates[1] · ... · rates[k]`` (the stereo task uses
``rates = (3, 2, 2, 2)``: 48 → 16 → 8 → 4 → 2). Between consecutive layers a path moves **down** (one level
coarser), stays the **same**, or moves **up** (one level finer); it never jumps two levels, and it starts from
the stem at level 0, so layer ``l`` reaches levels ``0 … min(l + 1, levels - 1)``.

``β`` holds one logit per (layer, source level, move): ``beta[l][k][m]`` scores leaving level ``k`` of layer
``l - 1`` (the stem for ``l = 0``) by move ``MOVES[m]``. As in Auto-DeepLab, the probabilities of the moves that
leave one node are ``softmax`` over its *valid* moves (those that stay inside ``0 … levels - 1``), so a path's
probability is the product of its moves' probabilities and the decoded path (``viterbi``) is the most probable
one, found by dynamic programming (greedy choices can miss it). The released code never decodes β: its path is
hard-coded (``RELEASED_PATH``).

Declarations only (no modules): the relaxed trellis network is ``nasflow.strategies.spikedhs_trellis``, its
resampling modules ``nasflow.snn.trellis``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nasflow.spaces.spikedhs import PRESETS, CellGenotype, SpikeDHSSpace, decode_cell, parse_cell

__all__ = [
    "MOVES", "RELEASED_PATH", "Trellis", "TrellisArch", "TrellisSpace", "check_path", "level_sizes",
    "parse_trellis_arch", "path_log_prob", "released_path", "viterbi",
]

#: The moves between consecutive layers and their level change.
MOVES: tuple[tuple[str, int], ...] = (("down", 1), ("same", 0), ("up", -1))

#: The path the released code hard-codes (``LEAStereo.py``) for its 8 layers.
RELEASED_PATH: tuple[int, ...] = (0, 0, 1, 1, 1, 2, 2, 2)


def level_sizes(size: int, rates: Sequence[int]) -> list[int]:
    """Spatial size at every level for an input of ``size`` pixels; a rate that does not divide fails clearly."""
    sizes, cur = [], int(size)
    for k, r in enumerate(rates):
        if r < 1:
            raise ValueError(f"trellis rate {k} must be >= 1, got {r}")
        if cur % r or cur // r < 1:
            fix = f"use --levels {k}" if k else f"use an input size divisible by {r}"
            raise ValueError(
                f"an input of {size} pixels allows {k} trellis level(s) with rates {list(rates)} ({cur} is not "
                f"divisible by {r}); {fix} or a larger input")
        cur //= r
        sizes.append(cur)
    return sizes


def _softmax(xs: Sequence[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return [v / s for v in e]


@dataclass(frozen=True)
class Trellis:
    """``layers`` cell positions over ``levels`` resolutions; ``rates[0]`` is the stem's down-sampling.

    ``up=False`` leaves out the moves to a finer level: every path then exports to NIR whole (NIR has no
    up-sampling node, so a decoded path with an up move runs its up-sampling nowhere but on the host)."""

    layers: int = 8
    levels: int = 4
    rates: tuple[int, ...] = (3, 2, 2, 2)
    up: bool = True

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise ValueError(f"a trellis needs at least one layer, got layers={self.layers}")
        if self.levels < 1:
            raise ValueError(f"a trellis needs at least one level, got levels={self.levels}")
        if len(self.rates) < self.levels:
            raise ValueError(f"{self.levels} levels need {self.levels} down-sampling rates, got {list(self.rates)}")
        object.__setattr__(self, "rates", tuple(int(r) for r in self.rates[: self.levels]))

    def sizes(self, size: int) -> list[int]:
        """The spatial size of each level for an input of ``size`` pixels (fails if ``levels`` is too many)."""
        return level_sizes(size, self.rates)

    def reachable(self, layer: int) -> list[int]:
        """Levels a path can occupy at ``layer`` (it starts at level 0 and moves one level per layer)."""
        return list(range(min(layer + 1, self.levels - 1) + 1))

    def moves(self, level: int) -> list[int]:
        """Indices into ``MOVES`` valid from ``level``."""
        return [m for m, (_, d) in enumerate(MOVES) if 0 <= level + d < self.levels and (self.up or d >= 0)]

    def can_move(self, src: int, dst: int) -> bool:
        """Whether one move leads from level ``src`` to level ``dst``."""
        return any(src + MOVES[m][1] == dst for m in self.moves(src))

    def sources(self, layer: int) -> list[int]:
        """Levels a node of ``layer`` can be entered from (the stem's level 0 for layer 0)."""
        return [0] if layer == 0 else self.reachable(layer - 1)

    def move_probs(self, beta: Sequence[Sequence[Sequence[float]]], layer: int, level: int) -> dict[int, float]:
        """``softmax`` over the valid moves leaving ``level`` towards ``layer``: {target level: probability}."""
        valid = self.moves(level)
        probs = _softmax([float(beta[layer][level][m]) for m in valid])
        return {level + MOVES[m][1]: p for m, p in zip(valid, probs, strict=True)}

    def check_beta(self, beta: Sequence[Sequence[Sequence[float]]]) -> None:
        shape = (self.layers, self.levels, len(MOVES))
        ok = len(beta) == shape[0] and all(len(r) == shape[1] and all(len(c) == shape[2] for c in r) for r in beta)
        if not ok:
            raise ValueError(f"β must have shape {list(shape)} (layers, levels, moves down/same/up)")


def released_path(trellis: Trellis) -> tuple[int, ...]:
    """``RELEASED_PATH`` mapped onto ``trellis``: layer ``i`` of ``L`` takes the released level at the same relative
    depth, ``RELEASED_PATH[floor(i · 8 / L)]``, capped at the trellis's last level. For ``L = 8`` with 3 or more
    levels it is the released path itself; for the default 6 layers it is ``0,0,1,1,2,2``."""
    n = len(RELEASED_PATH)
    path = [min(RELEASED_PATH[i * n // trellis.layers], trellis.levels - 1) for i in range(trellis.layers)]
    return check_path(path, trellis)


def check_path(path: Sequence[int], trellis: Trellis) -> tuple[int, ...]:
    """A path as a tuple of levels, one per layer; one clear error for a wrong length, level or jump."""
    path = tuple(int(k) for k in path)
    if len(path) != trellis.layers:
        raise ValueError(f"a path over {trellis.layers} layers needs {trellis.layers} levels, got {len(path)}: "
                         f"{list(path)}")
    prev = 0
    for layer, k in enumerate(path):
        if not 0 <= k < trellis.levels:
            raise ValueError(f"path level {k} at layer {layer} is outside 0..{trellis.levels - 1}")
        src = "the stem (level 0)" if layer == 0 else f"level {prev} at layer {layer - 1}"
        if abs(k - prev) > 1:
            raise ValueError(f"path {list(path)} jumps from {src} to level {k} at layer {layer}; consecutive "
                             f"levels may differ by at most one")
        if not trellis.can_move(prev, k):
            raise ValueError(f"path {list(path)} moves up from {src} to level {k} at layer {layer}, and this "
                             f"trellis has no up moves (up=False)")
        prev = k
    return path


def path_log_prob(beta: Sequence[Sequence[Sequence[float]]], path: Sequence[int], trellis: Trellis) -> float:
    """``log P(path)``: the sum of its moves' log-probabilities under ``β``."""
    trellis.check_beta(beta)
    total, prev = 0.0, 0
    for layer, k in enumerate(check_path(path, trellis)):
        total += math.log(trellis.move_probs(beta, layer, prev)[k])
        prev = k
    return total


def viterbi(beta: Sequence[Sequence[Sequence[float]]], trellis: Trellis) -> tuple[int, ...]:
    """The most probable path under ``β`` (ties: the finer level, then the earlier predecessor)."""
    trellis.check_beta(beta)
    best: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}  # level -> (log prob, path so far), the stem
    for layer in range(trellis.layers):
        nxt: dict[int, tuple[float, tuple[int, ...]]] = {}
        for src in sorted(best):
            score, path = best[src]
            for dst, p in trellis.move_probs(beta, layer, src).items():
                cand = (score + math.log(p), (*path, dst))
                if dst not in nxt or cand[0] > nxt[dst][0] + 1e-12:
                    nxt[dst] = cand
        best = nxt
    top = max(best.values(), key=lambda v: v[0])[0]
    return min((v for v in best.values() if v[0] >= top - 1e-12), key=lambda v: v[1][-1])[1]


@dataclass(frozen=True)
class TrellisArch:
    """A decoded layer-level architecture: one cell genotype (every node of the path uses it) and the path.

    String form ``paper:cell=conv3x3@1+skip@0,...;path=0,0,1,1,1,2,2,2`` (``parse_trellis_arch`` reads it)."""

    preset: str
    cell: CellGenotype
    path: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown SpikeDHS preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        foreign = sorted({op for edges in self.cell.nodes for op, _ in edges} - set(PRESETS[self.preset].ops))
        if foreign:
            raise ValueError(f"the cell uses {foreign}, not ops of the {self.preset!r} preset")

    def __str__(self) -> str:
        return f"{self.preset}:cell={self.cell.format()};path={','.join(map(str, self.path))}"


def parse_trellis_arch(text: str, trellis: Trellis | None = None) -> TrellisArch:
    """The architecture ``text`` spells; with ``trellis`` its path is checked against it (``check_path``)."""
    preset, sep, rest = str(text).strip().partition(":")
    parts = dict(p.partition("=")[::2] for p in rest.split(";")) if sep else {}
    if set(parts) != {"cell", "path"}:
        raise ValueError(f"trellis architecture {text!r} must read 'PRESET:cell=...;path=l0,l1,...'")
    try:
        path = tuple(int(k) for k in parts["path"].split(","))
    except ValueError:
        raise ValueError(f"trellis architecture {text!r}: the path must be comma-separated levels") from None
    arch = TrellisArch(preset, parse_cell(parts["cell"], "trellis cell"), path)
    if trellis is not None:
        check_path(arch.path, trellis)
    return arch


@dataclass(frozen=True)
class TrellisSpace:
    """SpikeDHS's joint search space for dense prediction: the cell space (its normal cell; resampling happens in
    the trellis, so no reduction cell) and the trellis of resolutions."""

    cells: SpikeDHSSpace
    trellis: Trellis

    @property
    def name(self) -> str:
        return "spikedhs-trellis"

    def decode(self, alpha: Sequence[Sequence[float]], beta: Sequence[Sequence[Sequence[float]]]) -> TrellisArch:
        """The cell ``alpha`` selects (``decode_cell``) and the most probable path under ``beta`` (``viterbi``)."""
        assert self.cells.ops is not None
        return TrellisArch(self.cells.preset, decode_cell(alpha, self.cells.ops, self.cells.nodes),
                           viterbi(beta, self.trellis))

    def fingerprint(self) -> dict[str, Any]:
        return {**self.cells.fingerprint(), "space": self.name, "trellis": {
            "layers": self.trellis.layers, "levels": self.trellis.levels, "rates": list(self.trellis.rates),
            **({} if self.trellis.up else {"up": False})}}
