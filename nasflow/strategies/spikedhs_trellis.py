"""SpikeDHS's joint cell and layer search (paper §4.1.2): the relaxed trellis network.

Every reachable (layer, level) of the trellis (``nasflow.spaces.trellis``) holds one relaxed cell
(``RelaxedDHSCell``, the normal cell's α shared by all of them) of width ``C·2^level``. A node's two inputs:

* ``s1``: the β-weighted mixture, at its input neuron's membrane, of the previous layer's nodes that can move
  into it (down, same, up; the weight is the probability of that move, a softmax over the moves valid from
  the source: Auto-DeepLab's outgoing normalisation), each resampled to the node's level (``MixedInput``);
* ``s0``: the nodes two layers back within two levels, each resampled, mixed by the probability that a path
  through it reaches this node in two moves (normalised over them); the stem for the first two layers. A
  decoded path's ``s0`` is the one node two layers back on the path, so its weights carry over.

The stem (conv3x3 with stride ``rates[0]``, BN, neuron) puts the input at level 0. The output is the sum over
the last layer's levels of each node resampled to level 0 at ``features`` channels, into one neuron: spikes
``[T, B, features, h0, w0]``, the feature map a dense-prediction head (e.g. stereo matching,
``nasflow.snn.stereo``) reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nasflow.snn.blocks import NeuronSpec
from nasflow.snn.dhs import SPIKEDHS_NEURON, SpikingOp
from nasflow.snn.layers import TimeDistributed
from nasflow.snn.trellis import MixedInput
from nasflow.spaces.spikedhs import SpikeDHSSpace
from nasflow.spaces.trellis import MOVES, Trellis
from nasflow.strategies.spikedhs import ALPHA_INIT_STD, RelaxedDHSCell

__all__ = ["RelaxedTrellisNet", "node_key"]


def node_key(layer: int, level: int) -> str:
    return f"l{layer}_k{level}"


class RelaxedTrellisNet(nn.Module):
    """The relaxed trellis feature network of ``space`` (cells) and ``trellis`` (path); input ``[T, B, C, H, W]``.

    ``channels`` is C at level 0; ``features`` the output width (default C)."""

    def __init__(self, space: SpikeDHSSpace, trellis: Trellis, in_shape: Sequence[int], channels: int = 8,
                 features: int | None = None, neuron: NeuronSpec | None = None) -> None:
        super().__init__()
        neuron = neuron or SPIKEDHS_NEURON
        c_in, h, w = (int(s) for s in in_shape)
        trellis.sizes(min(h, w))
        self.space, self.trellis, self.in_shape = space, trellis, (c_in, h, w)
        rates, nodes = trellis.rates, space.nodes
        self.features = int(features or channels)

        def width(level: int) -> int:
            return channels * 2 ** level

        self.stem = SpikingOp(TimeDistributed(nn.Sequential(
            nn.Conv2d(c_in, width(0), 3, stride=rates[0], padding=1, bias=False), nn.BatchNorm2d(width(0)))),
            neuron.build())
        stem_parts = [width(0)]

        def parts(layer: int, level: int) -> list[int]:
            return stem_parts if layer < 0 else [width(level)] * nodes

        self.cells, self.in0, self.in1 = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        for layer in range(trellis.layers):
            for level in trellis.reachable(layer):
                key, c = node_key(layer, level), width(level)
                self.cells[key] = RelaxedDHSCell(space, [], [], c, False, False, neuron, preprocess=False)
                srcs = [s for s in trellis.sources(layer) if trellis.can_move(s, level)]
                self.in1[key] = MixedInput({str(s): (parts(layer - 1, s), s) for s in srcs}, c, level, rates, neuron)
                self.in0[key] = MixedInput({str(s): (parts(layer - 2, s), s) for s in self.s0_levels(layer, level)},
                                           c, level, rates, neuron)
        last = trellis.layers - 1
        self.head = MixedInput({str(k): (parts(last, k), k) for k in trellis.reachable(last)}, self.features, 0,
                               rates, neuron)
        n_edges, n_ops = len(space.edges()), len(space.ops or ())
        self.alpha = nn.Parameter(ALPHA_INIT_STD * torch.randn(n_edges, n_ops))
        self.beta = nn.Parameter(ALPHA_INIT_STD * torch.randn(trellis.layers, trellis.levels, len(MOVES)))

    def s0_levels(self, layer: int, level: int) -> list[int]:
        """Levels two layers back that a path into (layer, level) can come from (the stem's 0 for layers 0, 1)."""
        if layer < 2:
            return [0]
        t = self.trellis
        return [s for s in t.reachable(layer - 2)
                if any(t.can_move(s, mid) and t.can_move(mid, level) for mid in t.reachable(layer - 1))]

    def two_move_weights(self, p_moves: torch.Tensor, layer: int, level: int) -> dict[str, torch.Tensor]:
        """``P(two moves lead from level s at layer - 2 to level at layer)`` normalised over the ``s0`` sources."""
        if layer < 2:
            return {"0": p_moves.new_ones(())}
        raw = {}
        for s in self.s0_levels(layer, level):
            total = p_moves.new_zeros(())
            for mid in self.trellis.reachable(layer - 1):
                if self.trellis.can_move(s, mid) and self.trellis.can_move(mid, level):
                    first = p_moves[layer - 1, s, self._move(s, mid)]
                    total = total + first * p_moves[layer, mid, self._move(mid, level)]
            raw[str(s)] = total
        norm = sum(raw.values())
        return {k: v / norm for k, v in raw.items()}

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha, self.beta]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch and p.requires_grad]

    def move_probabilities(self) -> torch.Tensor:
        """``[layers, levels, moves]``: softmax of β over the moves valid from each level (invalid moves 0)."""
        valid = torch.zeros(self.trellis.levels, len(MOVES), dtype=torch.bool, device=self.beta.device)
        for k in range(self.trellis.levels):
            valid[k, self.trellis.moves(k)] = True
        return F.softmax(self.beta.masked_fill(~valid, float("-inf")), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or tuple(x.shape[2:]) != self.in_shape:
            raise ValueError(f"the trellis network expects [T, B, {', '.join(map(str, self.in_shape))}], "
                             f"got {tuple(x.shape)}")
        p_ops = F.softmax(self.alpha, dim=-1)
        p_moves = self.move_probabilities()
        stem = self.stem(x)
        layers: list[dict[int, list[torch.Tensor]]] = []

        def out(layer: int, level: int) -> list[torch.Tensor]:
            return [stem] if layer < 0 else layers[layer][level]

        for layer in range(self.trellis.layers):
            here: dict[int, list[torch.Tensor]] = {}
            for level in self.trellis.reachable(layer):
                key = node_key(layer, level)
                mixed = self.in1[key]
                xs = {k: out(layer - 1, int(k)) for k in mixed.sources}
                weights = {k: p_moves[layer, int(k), self._move(int(k), level)] for k in mixed.sources}
                s1 = mixed(xs, weights)
                mixed0 = self.in0[key]
                s0 = mixed0({k: out(layer - 2, int(k)) for k in mixed0.sources},
                            self.two_move_weights(p_moves, layer, level))
                here[level] = self.cells[key]([s0], [s1], p_ops)
            layers.append(here)
        last = self.trellis.layers - 1
        return self.head({k: out(last, int(k)) for k in self.head.sources})

    @staticmethod
    def _move(src: int, dst: int) -> int:
        return [m for m, (_, d) in enumerate(MOVES) if src + d == dst][0]
