"""The layer trellis as modules: resampling between resolution levels and the cell inputs built from them.

The trellis itself (levels, moves, paths, Viterbi) is declared in ``nasflow.spaces.trellis``. Moving between
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
from nasflow.snn.layers import TimeDistributed

__all__ = ["MixedInput", "Resample", "level_factor"]


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
