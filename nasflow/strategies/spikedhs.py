"""SpikeDHS cell search (paper §4.1-4.2): a relaxed spiking cell network, first-order bi-level, hardware cost inside.

The relaxed network (``RelaxedDHSNet``) is the decoded network's macro (``nasflow.snn.dhs.DHSNet``: stem, cells
with two reductions, head, membrane read-out) in which every cell edge runs *every* op of the space and mixes
them with ``softmax(α)``; normal and reduction cells have their own ``α`` (rows: ``SpikeDHSSpace.edges()``,
columns: the op list). Mixing follows the preset (``nasflow.spaces.spikedhs``): at the membrane (one neuron per
node fed ``Σ_e Σ_op softmax(α_e)_op · BN(op(x))``) or at spikes (the node is the weighted sum of each op's own
spikes).

Per pair of batches (``run_in_training``), after ``warmup`` epochs with α frozen, α takes one Adam step (lr 1e-3,
weight decay 1e-3, betas (0.5, 0.999)) on a batch of half B of the training split, then the weights take one SGD
step (momentum 0.9, weight decay 3e-4, gradient norm clipped at 5, learning rate cosine from ``lr_w`` to
``lr_min`` over ``epochs``) on a batch of half A. The loss is cross-entropy on the read-out.

The optional hardware term adds ``λ_hw · Σ_cells Σ_edges Σ_ops softmax(α)_op · cost_op / cost_uniform`` to the α
loss. ``cost_op`` is the chip energy per sample of that op at the *measured* firing rate of its input (refreshed
from the first α batch of every epoch; constants to the optimiser, so the gradient reaches α through the
probabilities): synaptic ops (input spikes × the op's mean fan-out, ``exporters.core.fanout``), one message per
input spike (the op's target is one population) and, for ops with their own neuron (the released preset), their
neuron updates, priced with ``hwmodels.energy.event_prices`` of the chip. ``skip`` is not free: a 1:1 synapse and
a message per spike. ``cost_uniform`` is the same sum under uniform op probabilities, so the term is 1 at the
start and ``λ_hw`` is comparable across datasets and widths.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from exporters.core.fanout import conv_fanout
from hwmodels.energy import EventPrices, event_prices
from hwmodels.profiles import load_profile
from nasflow.models import create_model
from nasflow.snn.blocks import NeuronSpec
from nasflow.snn.dhs import (
    SPIKEDHS_NEURON,
    MembraneReadout,
    Preprocess,
    SpikingOp,
    macro_layout,
    make_head,
    make_op,
    make_stem,
)
from nasflow.snn.neurons import reset_states
from nasflow.spaces.spikedhs import SpikeDHSSpace, reduction_layers
from nasflow.strategies.intraining import InTrainingStrategy
from nasflow.train.supernet import path_costs
from nasflow.train.trainer import evaluate

__all__ = ["ALPHA_INIT_STD", "RelaxedDHSCell", "RelaxedDHSNet", "SpikeDHSStrategy", "op_fanout", "set_cosine_lr",
           "weight_step"]

ALPHA_INIT_STD = 1e-3


def set_cosine_lr(opt: torch.optim.Optimizer, epoch: int, epochs: int, lr_max: float, lr_min: float) -> float:
    """Set ``opt``'s learning rate for ``epoch`` on a cosine from ``lr_max`` to ``lr_min`` over ``epochs``; a
    function of the epoch alone, so a resumed search sets the same rate."""
    lr = lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * min(epoch, epochs) / epochs))
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def weight_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter], what: str) -> None:
    """The weight half of a bi-level step: refuse a non-finite loss (naming ``what``), backward into ``params``
    only (the architecture's gradients stay untouched), clip the norm at 5, step."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} weight loss became {float(loss)}; lower lr_w")
    opt.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    nn.utils.clip_grad_norm_(params, 5.0)
    opt.step()


class RelaxedDHSCell(nn.Module):
    """A cell whose every edge runs all non-``zero`` ops (``edges[n{j}_{k}][op]``) and mixes them by weight.

    ``preprocess=False`` leaves out the two input neurons' preprocessing: the caller passes the cell's two input
    states themselves (the layer trellis builds them from several resolutions, ``nasflow.snn.trellis``)."""

    def __init__(self, space: SpikeDHSSpace, parts0: Sequence[int], parts1: Sequence[int], c: int, reduction: bool,
                 reduction_prev: bool, neuron: NeuronSpec, preprocess: bool = True) -> None:
        super().__init__()
        self.space, self.reduction, self.c = space, reduction, c
        self.ops = tuple(space.ops or ())
        if preprocess:
            self.pre0 = Preprocess(parts0, c, 2 if reduction_prev else 1, neuron)
            self.pre1 = Preprocess(parts1, c, 1, neuron)
        self.preprocess = preprocess
        self.edges = nn.ModuleDict()
        for j, k in space.edges():
            stride = 2 if reduction and k < 2 else 1
            self.edges[f"n{j}_{k}"] = nn.ModuleDict(
                {op: make_op(op, c, stride, space.mix, neuron) for op in self.ops if op != "zero"})
        self.nodes = nn.ModuleList(neuron.build() for _ in range(space.nodes)) if space.mix == "membrane" else None

    def forward(self, s0: Sequence[torch.Tensor], s1: Sequence[torch.Tensor], weights: torch.Tensor,
                rates: list[tuple[float, tuple[int, ...]]] | None = None) -> list[torch.Tensor]:
        """The cell's nodes; with a ``rates`` list, appends each state's (mean value per neuron and step, shape)."""
        states = [self.pre0(s0), self.pre1(s1)] if self.preprocess else [s0[0], s1[0]]
        if rates is not None:
            rates.extend((float(s.detach().mean()), tuple(s.shape[2:])) for s in states)
        for e, (j, k) in enumerate(self.space.edges()):
            if k == 0:
                terms = []
            ops = self.edges[f"n{j}_{k}"]
            terms += [weights[e, i] * ops[op](states[k]) for i, op in enumerate(self.ops) if op != "zero"]
            if k == j + 1:  # the node's last incoming edge
                total = sum(terms)
                node = self.nodes[j](total) if self.nodes is not None else total
                states.append(node)
                if rates is not None:
                    rates.append((float(node.detach().mean()), tuple(node.shape[2:])))
        return states[2:]


class RelaxedDHSNet(nn.Module):
    """The relaxed SpikeDHS network of ``space`` (module names as in ``DHSNet``, so weights carry over)."""

    def __init__(self, space: SpikeDHSSpace, in_shape: Sequence[int], num_classes: int, channels: int, steps: int,
                 neuron: NeuronSpec | None = None) -> None:
        super().__init__()
        neuron = neuron or SPIKEDHS_NEURON
        self.space, self.steps = space, int(steps)
        c_stem = space.stem_multiplier * channels
        self.stem = make_stem(int(in_shape[0]), c_stem, steps, neuron)
        slots = macro_layout(space.layers, reduction_layers(space.layers), channels, c_stem, space.nodes)
        self.cells = nn.ModuleList(RelaxedDHSCell(space, s.parts0, s.parts1, s.c, s.reduction, s.reduction_prev,
                                                  neuron) for s in slots)
        self.head = make_head([slots[-1].c] * space.nodes, num_classes)
        self.readout = MembraneReadout(steps)
        n_edges, n_ops = len(space.edges()), len(space.ops or ())
        self.alpha_normal = nn.Parameter(ALPHA_INIT_STD * torch.randn(n_edges, n_ops))
        self.alpha_reduce = nn.Parameter(ALPHA_INIT_STD * torch.randn(n_edges, n_ops))
        self.record_rates = False  # set for the forward pass whose rates price the ops (one host sync per state)
        self.rates: list[list[tuple[float, tuple[int, ...]]]] = []

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch and p.requires_grad]

    def probabilities(self) -> tuple[torch.Tensor, torch.Tensor]:
        return F.softmax(self.alpha_normal, dim=-1), F.softmax(self.alpha_reduce, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Read-out membrane at the last step ``[B, classes]``; with ``record_rates``, ``self.rates`` holds every
        cell's state rates."""
        p_normal, p_reduce = self.probabilities()
        s = self.stem(x)
        prev0 = prev1 = [s]
        if self.record_rates:
            self.rates = []
        for cell in self.cells:
            rates: list[tuple[float, tuple[int, ...]]] | None = [] if self.record_rates else None
            nodes = cell(prev0, prev1, p_reduce if cell.reduction else p_normal, rates)
            if rates is not None:
                self.rates.append(rates)
            prev0, prev1 = prev1, nodes
        head = self.head
        out = sum(head["fc"][m](head["flat"][m](head["gap"][m](v))) for m, v in enumerate(prev1))
        return self.readout(out)[-1]


def op_fanout(op: str, c: int, in_hw: tuple[int, int], stride: int) -> float:
    """Mean number of synapses one input spike of ``op`` drives (borders and stride included; 0 for ``zero``)."""
    if op == "zero":
        return 0.0
    if op == "skip" and stride == 1:
        return 1.0
    if op == "avg_pool3x3":
        mask, pads, dil, groups = np.ones((c, 1, 3, 3)), ((1, 1), (1, 1)), (1, 1), c
    elif op == "skip":
        mask, pads, dil, groups = np.ones((c, c, 1, 1)), ((0, 0), (0, 0)), (1, 1), 1
    elif op == "conv5x5":
        mask, pads, dil, groups = np.ones((c, c, 5, 5)), ((2, 2), (2, 2)), (1, 1), 1
    elif op == "dil_conv3x3":
        mask, pads, dil, groups = np.ones((c, c, 3, 3)), ((2, 2), (2, 2)), (2, 2), 1
    else:  # conv3x3, snn_b3, snn_b5
        mask, pads, dil, groups = np.ones((c, c, 3, 3)), ((1, 1), (1, 1)), (1, 1), 1
    return float(conv_fanout(mask, (c, *in_hw), (stride, stride), pads, dil, groups).mean())


def _own_neurons(op: str, mix: str, stride: int) -> bool:
    return mix == "spikes" and op != "zero" and not (op == "skip" and stride == 1)


def op_costs(net: RelaxedDHSNet, prices: EventPrices) -> tuple[torch.Tensor, torch.Tensor]:
    """Per ``(edge, op)`` energy (J per sample) summed over the normal and over the reduction cells, from the
    rates of ``net``'s last forward pass."""
    space = net.space
    ops = tuple(space.ops or ())
    edges = space.edges()
    out = {False: np.zeros((len(edges), len(ops))), True: np.zeros((len(edges), len(ops)))}
    for cell, rates in zip(net.cells, net.rates):
        for e, (_, k) in enumerate(edges):
            rate, (_, h, w) = rates[k]
            stride = 2 if cell.reduction and k < 2 else 1
            spikes = rate * cell.c * h * w * net.steps
            for i, op in enumerate(ops):
                if op == "zero":
                    continue
                energy = spikes * (op_fanout(op, cell.c, (h, w), stride) * prices.synop + prices.message)
                if _own_neurons(op, space.mix, stride):
                    energy += cell.c * (h // stride) * (w // stride) * net.steps * prices.update
                out[cell.reduction][e, i] += energy
    return torch.tensor(out[False], dtype=torch.float32), torch.tensor(out[True], dtype=torch.float32)


class SpikeDHSStrategy(InTrainingStrategy):
    """SpikeDHS's first-order bi-level cell search (see the module docstring)."""

    name = "spikedhs"

    def __init__(self, in_shape: Sequence[int], num_classes: int, channels: int = 8, steps: int = 6,
                 epochs: int = 20, warmup: int = 5, lr_w: float = 0.05, lr_min: float = 1e-3,
                 lr_alpha: float = 1e-3, weight_decay: float = 3e-4, alpha_weight_decay: float = 1e-3,
                 lam_hw: float = 0.0, chip: str = "loihi", neuron: NeuronSpec | None = None,
                 device: torch.device | str = "cpu") -> None:
        checks = {"channels": channels >= 1, "steps": steps >= 1, "epochs": epochs >= 1, "warmup": warmup >= 0,
                  "lr_w": lr_w > 0, "lr_min": 0 <= lr_min <= lr_w, "lr_alpha": lr_alpha > 0,
                  "lam_hw": math.isfinite(lam_hw) and lam_hw >= 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid SpikeDHS search setting(s): {', '.join(bad)}")
        self.in_shape, self.num_classes = tuple(int(s) for s in in_shape), int(num_classes)
        self.channels, self.steps, self.epochs, self.warmup = int(channels), int(steps), int(epochs), int(warmup)
        self.lr_w, self.lr_min, self.lr_alpha = float(lr_w), float(lr_min), float(lr_alpha)
        self.weight_decay, self.alpha_weight_decay = float(weight_decay), float(alpha_weight_decay)
        self.lam_hw, self.chip = float(lam_hw), chip
        self.prices = event_prices(load_profile(chip))
        self.neuron = neuron or SPIKEDHS_NEURON
        self.device = torch.device(device)
        self.network: RelaxedDHSNet | None = None
        self.space: SpikeDHSSpace | None = None
        self.epoch, self.updates = 0, 0
        self.costs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._refresh = True

    def settings(self) -> dict[str, Any]:
        return {"in_shape": list(self.in_shape), "num_classes": self.num_classes, "channels": self.channels,
                "steps": self.steps, "epochs": self.epochs, "warmup": self.warmup, "lr_w": self.lr_w,
                "lr_min": self.lr_min, "lr_alpha": self.lr_alpha, "weight_decay": self.weight_decay,
                "alpha_weight_decay": self.alpha_weight_decay, "lam_hw": self.lam_hw, "chip": self.chip,
                "neuron": self.neuron.to_dict()}

    def relax(self, space: Any) -> RelaxedDHSNet:
        if not isinstance(space, SpikeDHSSpace):
            raise TypeError(f"the SpikeDHS strategy searches a SpikeDHSSpace, got {type(space).__name__}")
        self.space = space
        self.network = RelaxedDHSNet(space, self.in_shape, self.num_classes, self.channels, self.steps,
                                     self.neuron).to(self.device)
        self.opt_w = torch.optim.SGD(self.network.weight_parameters(), lr=self.lr_w, momentum=0.9,
                                     weight_decay=self.weight_decay)
        self.opt_alpha = torch.optim.Adam(self.network.arch_parameters(), lr=self.lr_alpha, betas=(0.5, 0.999),
                                          weight_decay=self.alpha_weight_decay)
        self.epoch, self.updates, self.costs, self._refresh = 0, 0, None, True
        return self.network

    def _net(self) -> RelaxedDHSNet:
        if self.network is None:
            raise RuntimeError("call relax(space) before using the strategy")
        return self.network

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        set_cosine_lr(self.opt_w, epoch, self.epochs, self.lr_w, self.lr_min)
        self._refresh = True

    def hw_term(self) -> tuple[torch.Tensor, float]:
        """``Σ softmax(α)·cost / cost_uniform`` (differentiable in α) and the expected energy in joules."""
        net = self._net()
        if self.costs is None:
            raise RuntimeError("no measured costs yet: run a forward pass first")
        c_normal, c_reduce = (c.to(self.device) for c in self.costs)
        p_normal, p_reduce = net.probabilities()
        expected = (p_normal * c_normal).sum() + (p_reduce * c_reduce).sum()
        uniform = float(c_normal.mean(1).sum() + c_reduce.mean(1).sum())
        return (expected / uniform if uniform > 0 else expected * 0), float(expected)

    def step(self, batch_train, batch_val) -> dict[str, float]:
        net = self._net()
        net.train()
        logs: dict[str, float] = {}
        search = self.epoch >= self.warmup
        if search or self._refresh:
            xv, yv = (t.to(self.device) for t in batch_val)
            reset_states(net)
            net.record_rates = self._refresh
            try:
                with torch.set_grad_enabled(search):
                    out_v = net(xv)
            finally:
                net.record_rates = False
            if self._refresh:
                self.costs = op_costs(net, self.prices)
                self._refresh = False
            term, energy = self.hw_term()
            logs["expected_energy_j"] = energy
            if search:
                loss_v = F.cross_entropy(out_v, yv)
                loss_alpha = loss_v + self.lam_hw * term if self.lam_hw else loss_v
                self.opt_alpha.zero_grad(set_to_none=True)
                loss_alpha.backward(inputs=net.arch_parameters())
                self.opt_alpha.step()
                logs.update(val_loss=float(loss_v), val_accuracy=float((out_v.argmax(1) == yv).float().mean()),
                            hw_term=float(term))
        xt, yt = (t.to(self.device) for t in batch_train)
        reset_states(net)
        out_t = net(xt)
        loss_t = F.cross_entropy(out_t, yt)
        weight_step(self.opt_w, loss_t, net.weight_parameters(), "SpikeDHS")
        self.updates += 1
        logs.update(train_loss=float(loss_t), train_accuracy=float((out_t.argmax(1) == yt).float().mean()),
                    lr_w=self.opt_w.param_groups[0]["lr"])
        return logs

    def genotype(self):
        """The genotype the current α select (``SpikeDHSSpace.decode``)."""
        net = self._net()
        assert self.space is not None
        return self.space.decode(net.alpha_normal.detach().cpu().tolist(), net.alpha_reduce.detach().cpu().tolist())

    def decode(self) -> tuple[str, ...]:
        return (str(self.genotype()),)

    def arch_weights(self) -> list[list[float]]:
        p_normal, p_reduce = self._net().probabilities()
        return p_normal.detach().cpu().tolist() + p_reduce.detach().cpu().tolist()

    def decoded_network(self) -> nn.Module:
        """The decoded network (``spikedhs`` model) with the weights it inherits from the relaxed network."""
        net, space = self._net(), self.space
        assert space is not None
        model = create_model("spikedhs", arch=self.decode()[0], in_shape=self.in_shape, num_classes=self.num_classes,
                             channels=self.channels, steps=self.steps, layers=space.layers,
                             stem_multiplier=space.stem_multiplier, neuron=self.neuron).to(self.device)
        model.stem.load_state_dict(net.stem.state_dict())
        model.head.load_state_dict(net.head.state_dict())
        for mine, theirs in zip(model.cells, net.cells):
            for part in ("pre0", "pre1"):
                getattr(mine, part).load_state_dict(getattr(theirs, part).state_dict())
            if mine.nodes is not None:
                mine.nodes.load_state_dict(theirs.nodes.state_dict())
            for j, node in enumerate(mine.genotype):
                for op, k in node:
                    source = theirs.edges[f"n{j}_{k}"][op]
                    if isinstance(source, SpikingOp) and not isinstance(mine.edges[f"n{j}_{k}"], SpikingOp):
                        source = source.conv  # searched at spikes, deployed at the membrane: the current part
                    mine.edges[f"n{j}_{k}"].load_state_dict(source.state_dict())
        return model

    def evaluate(self, loader: Iterable) -> dict[str, Any]:
        ev = evaluate(self.decoded_network(), loader, self.device)
        return {"accuracy": ev["accuracy"], "costs": path_costs(ev)}

    def state_dict(self) -> dict[str, Any]:
        return {"network": self._net().state_dict(), "opt_w": self.opt_w.state_dict(),
                "opt_alpha": self.opt_alpha.state_dict(), "updates": self.updates, "epoch": self.epoch,
                "costs": list(self.costs) if self.costs is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._net().load_state_dict(state["network"])
        self.opt_w.load_state_dict(state["opt_w"])
        self.opt_alpha.load_state_dict(state["opt_alpha"])
        self.updates, self.epoch = int(state["updates"]), int(state["epoch"])
        self.costs = tuple(state["costs"]) if state["costs"] is not None else None  # type: ignore[assignment]
