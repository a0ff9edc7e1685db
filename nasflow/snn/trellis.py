"""The layer trellis as modules: resampling between resolution levels and the cell inputs built from them.

The trellis itself (levels, moves, paths, Viterbi) is declared in ``nasflow.spaces.trellis``; the decoded
network of one path is ``TrellisPathNet``. Moving between
levels is a 1x1 conv + BN per part of the source cell (its nodes, as ``nasflow.snn.dhs.Preprocess`` does), with
stride ``s`` to go ``s`` times coarser, or followed by nearest-neighbour up-sampling by ``s`` to go finer
(the paper keeps maps binary with nearest up-sampling; a 1x1 conv and BN commute with it, so up-sampling the
current instead of the spikes costs ``s²`` fewer synaptic ops and computes the same).

``MixedInput`` is a cell input fed by several sources: the neuron receives ``Σ_src w_src · Resample_src(src)``.
In the relaxed trellis the weights are the β probabilities of the moves into the node, so the sources mix at the
membrane of the cell's input neuron, the paper's choice for ops (one cell per node rather than Auto-DeepLab's one
cell per incoming move: three times less compute, and the decoded path is the same chain of cells). On a
decoded path every input has one source and weight 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nasflow.snn.blocks import NeuronSpec
from nasflow.snn.dhs import SPIKEDHS_NEURON, DHSCell, Nodes, SpikingOp, cell_steps
from nasflow.snn.layers import TimeDistributed
from nasflow.snn.wiring import IN, Step, Wired, Wiring, run_wiring, step
from nasflow.spaces.trellis import Trellis, check_path

__all__ = ["MixedInput", "Resample", "TrellisPathNet", "level_factor", "mixed_input_steps"]


def level_factor(rates: Sequence[int], src: int, dst: int) -> int:
    """The resolution ratio between levels ``src`` and ``dst`` (at least 1 either way): the product of the rates
    between them (``rates[k]`` divides level ``k - 1`` into level ``k``)."""
    lo, hi = sorted((src, dst))
    return math.prod(int(r) for r in rates[lo + 1: hi + 1])


class Resample(nn.Module):
    """``Σ_m BN_m(conv1x1_m(part_m))`` from level ``src`` to ``dst``: stride down, nearest up-sampling up."""

    def __init__(self, parts: Sequence[int], c: int, rates: Sequence[int], src: int, dst: int) -> None:
        super().__init__()
        factor = level_factor(rates, src, dst)
        self.src, self.dst, self.factor = int(src), int(dst), factor
        stride = factor if dst > src else 1
        self.parts = nn.ModuleList(
            TimeDistributed(nn.Sequential(*(
                [nn.Conv2d(p, c, 1, stride=stride, bias=False), nn.BatchNorm2d(c)]
                + ([nn.Upsample(scale_factor=factor, mode="nearest")] if dst < src else [])
            )))
            for p in parts
        )

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(xs) != len(self.parts):
            raise ValueError(f"Resample expects {len(self.parts)} part(s), got {len(xs)}")
        return sum(m(x) for m, x in zip(self.parts, xs, strict=True))  # type: ignore[return-value]


class MixedInput(nn.Module):
    """A cell input: ``neuron(Σ_src w_src · Resample_src(parts_src))`` over the sources named in ``sources``.

    ``sources`` maps a source key (e.g. ``"0"`` for level 0) to ``(parts, src_level)``; every source is brought to
    ``level`` at ``c`` channels."""

    def __init__(self, sources: Mapping[str, tuple[Sequence[int], int]], c: int, level: int, rates: Sequence[int],
                 neuron: NeuronSpec) -> None:
        super().__init__()
        if not sources:
            raise ValueError("a trellis cell input needs at least one source")
        self.level = int(level)
        self.sources = nn.ModuleDict({k: Resample(parts, c, rates, src, level) for k, (parts, src) in sources.items()})
        self.sn = neuron.build()

    def forward(self, xs: Mapping[str, Sequence[torch.Tensor]],
                weights: Mapping[str, torch.Tensor | float] | None = None) -> torch.Tensor:
        """``xs[key]`` the parts of each source; ``weights[key]`` its weight (1 for every source if ``None``)."""
        missing = [k for k in self.sources if k not in xs]
        if missing:
            raise ValueError(f"trellis input at level {self.level} is missing source(s) {missing}")
        total = sum((1.0 if weights is None else weights[k]) * m(xs[k]) for k, m in self.sources.items())
        return self.sn(total)


def mixed_input_steps(prefix: str, module: str, sources: Mapping[str, Sequence[str]], steps: list[Step]) -> str:
    """Append the wiring steps of a ``MixedInput`` with weight 1 per source (a decoded path's input) fed the
    part values ``sources[key]``; returns its value name."""
    terms = []
    for key, values in sources.items():
        for m, v in enumerate(values):
            steps.append(Step(f"{prefix}.{key}.{m}", f"{module}.sources.{key}.parts.{m}", (v,)))
            terms.append(f"{prefix}.{key}.{m}")
    steps.append(Step(prefix, f"{module}.sn", tuple(terms)))
    return prefix


class TrellisPathNet(Wired):
    """The decoded feature network of a trellis path: the stem, then one cell per layer at the path's level (the
    cell genotype's edges and node neurons, ``DHSCell`` without its own preprocessing), its ``s1`` the previous
    path node and its ``s0`` the node two layers back, each resampled (``MixedInput`` with one source), and a
    head of ``features`` neurons fed by a 1x1 conv-BN of the last node *at its own level*. Input
    ``[T, B, C, H, W]`` (events), output spikes ``[T, B, features, h_last, w_last]``; the host brings them to level
    0 by nearest up-sampling (``output_factor``). That equals the relaxed head, which up-samples the current
    before its neurons: per-pixel BN and neurons commute with nearest up-sampling, and NIR has no up-sampling
    node, so the chip stops before it. Module names follow ``RelaxedTrellisNet``'s per node, so searched weights
    carry over (``TrellisStereoStrategy.decoded_network``)."""

    def __init__(self, cell: Nodes, path: Sequence[int], trellis: Trellis, in_shape: Sequence[int],
                 channels: int = 8, features: int | None = None, neuron: NeuronSpec | None = None) -> None:
        super().__init__()
        neuron = neuron or SPIKEDHS_NEURON
        self.path = check_path(path, trellis)
        c_in, h, w = (int(s) for s in in_shape)
        trellis.sizes(min(h, w))
        self.trellis, self.in_shape, self.cell = trellis, (c_in, h, w), cell
        self.features = int(features or channels)
        rates, nodes = trellis.rates, len(cell)

        def width(level: int) -> int:
            return channels * 2 ** level

        self.stem = SpikingOp(TimeDistributed(nn.Sequential(
            nn.Conv2d(c_in, width(0), 3, stride=rates[0], padding=1, bias=False), nn.BatchNorm2d(width(0)))),
            neuron.build())

        def parts(layer: int) -> tuple[list[int], int]:
            return ([width(0)], 0) if layer < 0 else ([width(self.path[layer])] * nodes, self.path[layer])

        self.in0, self.in1, self.cells = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for layer, level in enumerate(self.path):
            c = width(level)
            p1, src1 = parts(layer - 1)
            p0, src0 = parts(layer - 2)
            self.in1.append(MixedInput({str(src1): (p1, src1)}, c, level, rates, neuron))
            self.in0.append(MixedInput({str(src0): (p0, src0)}, c, level, rates, neuron))
            self.cells.append(DHSCell(cell, "membrane", [], [], c, False, False, neuron, preprocess=False))
        p_last, last = parts(len(self.path) - 1)
        self.head = MixedInput({str(last): (p_last, last)}, self.features, last, rates, neuron)
        self.output_factor = level_factor(rates, 0, last)
        self._wiring = self._build_wiring()

    def _build_wiring(self) -> Wiring:
        steps: list[Step] = [step("stem", IN)]
        outs: list[list[str]] = []

        def values(layer: int) -> tuple[str, list[str]]:
            return ("0", ["stem"]) if layer < 0 else (str(self.path[layer]), outs[layer])

        for layer in range(len(self.path)):
            k1, v1 = values(layer - 1)
            k0, v0 = values(layer - 2)
            s1 = mixed_input_steps(f"l{layer}.s1", f"in1.{layer}", {k1: v1}, steps)
            s0 = mixed_input_steps(f"l{layer}.s0", f"in0.{layer}", {k0: v0}, steps)
            outs.append(cell_steps(self.cells[layer], f"l{layer}", f"cells.{layer}", [s0, s1], steps))
        k, v = values(len(self.path) - 1)
        mixed_input_steps("head", "head", {k: v}, steps)
        return Wiring(tuple(steps), title=f"spikedhs trellis path {','.join(map(str, self.path))}")

    def wiring(self) -> Wiring:
        return self._wiring

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or tuple(x.shape[2:]) != self.in_shape:
            raise ValueError(f"the trellis path network expects [T, B, {', '.join(map(str, self.in_shape))}], "
                             f"got {tuple(x.shape)}")
        return run_wiring(self, self._wiring, x)
