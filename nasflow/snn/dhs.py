"""SpikeDHS cells as modules: the ops, the decoded network (``spikedhs`` model) and its membrane read-out.

The space (ops, presets, genotypes, macro layout) is declared in ``nasflow.spaces.spikedhs``; this module builds
it from plain structures (the ``spikedhs`` model factory in ``nasflow.models`` parses a genotype string).
``DHSNet`` is the *decoded* network of one genotype, a plain SNN whose whole data flow is one flat
``Wiring`` (stem, every cell's preprocessing, edges and nodes, the head), so the NIR exporter converts it like any
other model. Its parts use the same attribute names as the relaxed network of the search
(``nasflow.strategies.spikedhs``), which is how a decoded network inherits the searched weights.

A cell's output is its ``n`` nodes. Where DARTS concatenates them and applies a 1x1 conv, a cell here feeds each
node to its own ``conv1x1-BN`` and sums the currents into the preprocessing neuron (``Preprocess``): the same
function class as conv-over-concat with per-part BN, and a form NIR can express (it has no concatenation node).
The head likewise sums one linear layer per node of the last cell, after global average pooling.

The read-out (``MembraneReadout``) is the released code's: the linear layer's output accumulated over T and
divided by T, a non-spiking integrator (NIR ``I`` with ``r = 1/T``) whose value at the last step is the class
score; the network returns that value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import torch
from torch import nn

from nasflow.snn.blocks import NeuronSpec, conv_bn
from nasflow.snn.layers import DirectEncoder, Flatten, GlobalAvgPool, TimeDistributed
from nasflow.snn.neurons import Neuron
from nasflow.snn.wiring import IN, Step, Wired, Wiring, junction, run_wiring, step

__all__ = [
    "SPIKEDHS_NEURON", "CellSlot", "DHSCell", "DHSNet", "MembraneReadout", "Nodes", "Preprocess", "SpikingOp",
    "cell_steps", "identity_synapse", "macro_layout", "make_head", "make_op", "make_stem", "op_neuron",
]

#: A decoded cell's structure: per node, its ``(op, input)`` edges (input 0 = s0, 1 = s1, k >= 2 = node k - 2).
Nodes = tuple[tuple[tuple[str, int], ...], ...]

#: The SpikeDHS neuron: ``mem = 0.2·mem·(1 - s) + I``, threshold 0.5, hard reset, reset not detached, Dspike b = 3.
#: That is a LIF without input decay with ``1 - 1/τ = 0.2`` (τ = 1.25); it fires on ``mem > 0.5`` as the
#: released ``SpikeAct`` does.
SPIKEDHS_NEURON = NeuronSpec(kind="lif", tau=1.25, decay_input=False, v_threshold=0.5, v_reset=0.0,
                             detach_reset=False, strict=True, surrogate="dspike", surrogate_params={"b": 3.0})


class SpikingOp(Wired):
    """``conv-BN → neuron`` (the released preset's ``snn_b3``/``snn_b5``, and its stride-2 ``skip``)."""

    def __init__(self, conv: nn.Module, neuron: Neuron) -> None:
        super().__init__()
        self.conv, self.sn = conv, neuron

    def wiring(self) -> Wiring:
        return Wiring.chain("conv", "sn")


class MembraneReadout(nn.Module):
    """Non-spiking read-out: ``v[t] = Σ_{t' <= t} x[t'] / T`` on ``[T, B, classes]`` (NIR ``I`` with ``r = 1/T``).

    ``v[T-1]`` is the mean of the input over the T steps: the released SpikeDHS classifier's output.
    """

    def __init__(self, steps: int) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"MembraneReadout needs steps >= 1, got {steps}")
        self.steps = int(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.cumsum(0) / self.steps

    def extra_repr(self) -> str:
        return f"r=1/{self.steps}"


def _avg_conv(c: int, stride: int) -> nn.Conv2d:
    """A 3x3 average (``count_include_pad=True``) as a frozen depthwise conv, so BN folds into it for export."""
    conv = nn.Conv2d(c, c, 3, stride=stride, padding=1, groups=c, bias=False)
    nn.init.constant_(conv.weight, 1.0 / 9.0)
    conv.weight.requires_grad_(False)
    return conv


def identity_synapse(c: int) -> TimeDistributed:
    """``skip`` into a node neuron on a chip: one fixed synapse of weight 1 per neuron (a frozen depthwise 1x1
    conv). A neuron cannot be wired to a neuron without synapses (NIR would carry a bare edge that chips and
    ``hwmodels`` cannot map), and the search prices ``skip`` as exactly these synapses and their messages."""
    conv = nn.Conv2d(c, c, 1, groups=c, bias=False)
    del conv.weight  # a constant, not state: models saved with a bare skip edge load unchanged
    conv.register_buffer("weight", torch.ones(c, 1, 1, 1), persistent=False)
    return TimeDistributed(conv)


def op_neuron(neuron: NeuronSpec, op: str) -> NeuronSpec:
    """The neuron of a released-preset op: the network's, with Dspike temperature 5 for ``snn_b5`` (3 otherwise)
    when the network's surrogate is Dspike."""
    if neuron.surrogate != "dspike":
        return neuron
    return replace(neuron, surrogate_params={**neuron.surrogate_params, "b": 5.0 if op == "snn_b5" else 3.0})


def make_op(op: str, c: int, stride: int, mix: str, neuron: NeuronSpec) -> nn.Module | None:
    """The module of ``op`` at ``c`` channels. ``mix="membrane"``: it returns a current (``skip`` at stride 1 the
    spikes themselves; ``snn_b3``/``snn_b5`` their conv3x3-BN); ``"spikes"``: it returns spikes. ``zero`` has no
    module (``None``)."""
    if op == "zero":
        return None
    if op == "skip":
        if stride == 1:
            return nn.Identity()
        conv = conv_bn(c, c, 1, stride)
        return conv if mix == "membrane" else SpikingOp(conv, op_neuron(neuron, "snn_b3").build())
    if op in ("snn_b3", "snn_b5"):
        conv = conv_bn(c, c, 3, stride)
        return conv if mix == "membrane" else SpikingOp(conv, op_neuron(neuron, op).build())
    if op in ("conv3x3", "conv5x5"):
        return conv_bn(c, c, 3 if op == "conv3x3" else 5, stride)
    if op == "dil_conv3x3":
        return TimeDistributed(nn.Sequential(nn.Conv2d(c, c, 3, stride=stride, padding=2, dilation=2, bias=False),
                                             nn.BatchNorm2d(c)))
    if op == "avg_pool3x3":
        return TimeDistributed(nn.Sequential(_avg_conv(c, stride), nn.BatchNorm2d(c)))
    raise ValueError(f"unknown SpikeDHS op {op!r}")


class Preprocess(nn.Module):
    """``neuron(Σ_m BN_m(conv1x1_m(part_m)))``: a cell input made of ``len(parts)`` parts (a previous cell's nodes)."""

    def __init__(self, parts: Sequence[int], c: int, stride: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.parts = nn.ModuleList(conv_bn(p, c, 1, stride) for p in parts)
        self.sn = neuron.build()

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.sn(sum(m(x) for m, x in zip(self.parts, xs)))


class CellSlot(NamedTuple):
    """Where a cell sits in the macro: its inputs' parts (channels), width, and whether it or its predecessor
    reduces."""

    parts0: list[int]
    parts1: list[int]
    c: int
    reduction: bool
    reduction_prev: bool


def macro_layout(layers: int, reductions: Sequence[int], channels: int, c_stem: int, nodes: int) -> list[CellSlot]:
    """The cells of the SpikeDHS macro in order (width doubled at each reduction; a cell's output is its nodes)."""
    parts0 = parts1 = [c_stem]
    c, reduction_prev = channels, False
    slots = []
    for i in range(layers):
        reduction = i in reductions
        c = c * 2 if reduction else c
        slots.append(CellSlot(parts0, parts1, c, reduction, reduction_prev))
        parts0, parts1, reduction_prev = parts1, [c] * nodes, reduction
    return slots


def make_stem(c_in: int, c_stem: int, steps: int, neuron: NeuronSpec, event_input: bool = False) -> SpikingOp:
    """``conv3x3-BN-neuron``; direct coding repeats the analog image's current over ``steps``."""
    conv = nn.Sequential(nn.Conv2d(c_in, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
    return SpikingOp(TimeDistributed(conv) if event_input else DirectEncoder(conv, steps), neuron.build())


def make_head(parts: Sequence[int], num_classes: int) -> nn.ModuleDict:
    """Per node of the last cell: global average pool, flatten, linear (bias on the first only); summed by the
    read-out."""
    return nn.ModuleDict({
        "gap": nn.ModuleList(GlobalAvgPool() for _ in parts),
        "flat": nn.ModuleList(Flatten() for _ in parts),
        "fc": nn.ModuleList(TimeDistributed(nn.Linear(p, num_classes, bias=m == 0)) for m, p in enumerate(parts)),
    })


def edge_key(node: int, src: int) -> str:
    return f"n{node}_{src}"


class DHSCell(nn.Module):
    """A decoded cell: preprocessing of its two inputs, the kept edges (``edges[n{j}_{k}]``) and, mixing at the
    membrane, one neuron per node (``nodes[j]``). Its data flow is written out by ``DHSNet.wiring``."""

    def __init__(self, genotype: Nodes, mix: str, parts0: Sequence[int], parts1: Sequence[int], c: int,
                 reduction: bool, reduction_prev: bool, neuron: NeuronSpec, preprocess: bool = True) -> None:
        super().__init__()
        self.genotype, self.mix, self.reduction = genotype, mix, reduction
        if preprocess:  # without it the owner feeds the two input states (the layer trellis, ``nasflow.snn.trellis``)
            self.pre0 = Preprocess(parts0, c, 2 if reduction_prev else 1, neuron)
            self.pre1 = Preprocess(parts1, c, 1, neuron)
        self.edges = nn.ModuleDict()
        for j, node in enumerate(genotype):
            for op, k in node:
                module = make_op(op, c, 2 if reduction and k < 2 else 1, mix, neuron)
                assert module is not None
                if isinstance(module, nn.Identity) and mix == "membrane":
                    module = identity_synapse(c)
                self.edges[edge_key(j, k)] = module
        self.nodes = nn.ModuleList(neuron.build() for _ in genotype) if mix == "membrane" else None


def cell_steps(cell: DHSCell, prefix: str, module: str, inputs: Sequence[str], steps: list[Step]) -> list[str]:
    """Append the wiring steps of a decoded cell (module path ``module``, value names ``prefix.*``) fed the two
    states ``inputs``; returns its node values."""
    states = list(inputs)
    for j, node in enumerate(cell.genotype):
        terms = []
        for _, k in node:
            key = edge_key(j, k)
            if isinstance(cell.edges[key], nn.Identity):
                terms.append(states[k])
            else:
                steps.append(Step(f"{prefix}.{key}", f"{module}.edges.{key}", (states[k],)))
                terms.append(f"{prefix}.{key}")
        out = f"{prefix}.n{j}"
        steps.append(Step(out, f"{module}.nodes.{j}", tuple(terms)) if cell.nodes is not None
                     else junction(out, *terms))
        states.append(out)
    return states[2:]


class DHSNet(Wired):
    """The decoded SpikeDHS classification network of one genotype (``spikedhs`` in the model registry).

    ``normal``/``reduce`` are the two cells' ``Nodes``, ``mix`` the preset's mixing (``membrane``: a neuron per
    node; ``spikes``: a node is the sum of its ops' spikes), ``reductions`` the positions of reduction cells.
    Takes ``[B, C, H, W]`` (direct coding: the stem sees the analog image every step) or ``[T, B, C, H, W]``
    (``event_input``) and returns the read-out's membrane at the last step, ``[B, classes]`` (train with CE).
    ``channels`` is the first cells' width C (doubled at each reduction); ``neuron=None`` is the SpikeDHS neuron.
    """

    def __init__(self, normal: Nodes, reduce: Nodes, mix: str, reductions: Sequence[int], layers: int,
                 in_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, channels: int = 8, steps: int = 6,
                 stem_multiplier: int = 2, neuron: NeuronSpec | None = None, event_input: bool = False,
                 title: str = "") -> None:
        super().__init__()
        if mix not in ("membrane", "spikes"):
            raise ValueError(f"mix must be 'membrane' or 'spikes', got {mix!r}")
        if len(in_shape) != 3:
            raise ValueError(f"the spikedhs model needs an input shape (C, H, W), got {tuple(in_shape)}")
        c_in, h, w = (int(s) for s in in_shape)
        factor = 2 ** len(reductions)
        if h % factor or w % factor:
            raise ValueError(f"the spikedhs model halves the input {len(reductions)} times; {h}x{w} is not "
                             f"divisible by {factor}")
        if channels < 1 or steps < 1 or stem_multiplier < 1:
            raise ValueError(f"channels, steps and stem_multiplier must be >= 1, got {channels}, {steps}, "
                             f"{stem_multiplier}")
        neuron = neuron or SPIKEDHS_NEURON
        self.steps, self.event_input, self.in_shape, self.title = int(steps), event_input, (c_in, h, w), title
        c_stem = stem_multiplier * channels
        self.stem = make_stem(c_in, c_stem, steps, neuron, event_input)
        slots = macro_layout(layers, reductions, channels, c_stem, len(normal))
        self.cells = nn.ModuleList(DHSCell(reduce if s.reduction else normal, mix, s.parts0, s.parts1, s.c,
                                           s.reduction, s.reduction_prev, neuron) for s in slots)
        self.head = make_head([slots[-1].c] * len(normal), num_classes)
        self.readout = MembraneReadout(steps)
        self._wiring = self._build_wiring()

    def _build_wiring(self) -> Wiring:
        steps: list[Step] = [step("stem", IN)]
        prev0 = prev1 = ["stem"]
        for i, cell in enumerate(self.cells):
            states = []
            for name, parts in (("pre0", prev0), ("pre1", prev1)):
                terms = [f"c{i}.{name}.{m}" for m in range(len(parts))]
                steps.extend(Step(t, f"cells.{i}.{name}.parts.{m}", (v,)) for m, (t, v) in enumerate(zip(terms, parts)))
                steps.append(Step(f"c{i}.{name}", f"cells.{i}.{name}.sn", tuple(terms)))
                states.append(f"c{i}.{name}")
            prev0, prev1 = prev1, cell_steps(cell, f"c{i}", f"cells.{i}", states, steps)
        fcs = []
        for m, v in enumerate(prev1):
            steps += [Step(f"gap{m}", f"head.gap.{m}", (v,)), Step(f"flat{m}", f"head.flat.{m}", (f"gap{m}",)),
                      Step(f"fc{m}", f"head.fc.{m}", (f"flat{m}",))]
            fcs.append(f"fc{m}")
        steps.append(Step("readout", "readout", tuple(fcs)))
        return Wiring(tuple(steps), title=self.title or "spikedhs")

    def wiring(self) -> Wiring:
        return self._wiring

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for inputs of the wrong shape or with NaN/inf values."""
        want = (self.steps, "B", *self.in_shape) if self.event_input else ("B", *self.in_shape)
        sample = tuple(x.shape[2:] if self.event_input else x.shape[1:])
        if x.dim() != len(want) or sample != self.in_shape:
            raise ValueError(f"the spikedhs model expects input of shape {want}, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("the spikedhs model got an input with NaN or infinite values")

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """The read-out membrane over time, ``[T, B, classes]``."""
        self.check_input(x)
        return run_wiring(self, self._wiring, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(x)[-1]
