"""DGS: differentiable search of a neuron layer's surrogate temperature during training (SpikeDHS Algorithm 2).

Every ``every`` epochs (not before the first), for each named layer, over at most ``batches`` training batches:

1. for each candidate temperature ``b + δ_i`` (δ from the surrogate's row of ``TEMPERATURES``), a copy of *that
   layer's* weights takes one SGD step (the trainer's current learning rate, no momentum) on the batch's loss
   computed with that temperature;
2. a combine pass runs the network with the layer's neurons fed ``Σ_i softmax(α)_i · u_i``, ``u_i`` the neuron's
   input current (its membrane drive) under candidate ``i``'s weights; ``α`` (zeros at the start of every search)
   takes one Adam step (lr 0.01) on that pass's loss, and ``softmax(α)`` is added to an accumulator;
3. after the batches, ``b ← clamp(b + δ[argmax accumulator], lo, hi)`` (``select_temperature``).

The network's own weights and BN statistics are unchanged by the search (the copies are probes), so a run with
DGS differs from one without only through the temperatures. A *layer* is any module that holds neurons and
trainable weights (``stem``, ``cells.4``, ``features.2``): all of its neurons share one temperature and its
weights are the ones copied. The temperature is the surrogate's shape parameter:

========== ============ ============================== ==========
surrogate  parameter    δ                              clamp
========== ============ ============================== ==========
dspike     b            -0.4, -0.2, 0, 0.2, 0.4        [1, 6] (the paper's)
atan       alpha        -0.4, -0.2, 0, 0.2, 0.4        [0.5, 8]
sigmoid    alpha        -1, -0.5, 0, 0.5, 1            [1, 16]
triangle   width        -0.2, -0.1, 0, 0.1, 0.2        [0.1, 2]
superspike beta         -4, -2, 0, 2, 4                [1, 50]
========== ============ ============================== ==========
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from nasflow.snn.fused import fusion
from nasflow.snn.neurons import Neuron, reset_states
from nasflow.snn.surrogate import SURROGATES, Surrogate

__all__ = [
    "DGS", "TEMPERATURES", "Temperature", "candidate_layers", "plot_history", "select_temperature", "temperature_of",
]

ALPHA_LR = 0.01


class Temperature(NamedTuple):
    """A surrogate's searched shape parameter, its candidate offsets and its range."""

    param: str
    deltas: tuple[float, ...]
    lo: float
    hi: float


TEMPERATURES: dict[str, Temperature] = {
    "dspike": Temperature("b", (-0.4, -0.2, 0.0, 0.2, 0.4), 1.0, 6.0),
    "atan": Temperature("alpha", (-0.4, -0.2, 0.0, 0.2, 0.4), 0.5, 8.0),
    "sigmoid": Temperature("alpha", (-1.0, -0.5, 0.0, 0.5, 1.0), 1.0, 16.0),
    "triangle": Temperature("width", (-0.2, -0.1, 0.0, 0.1, 0.2), 0.1, 2.0),
    "superspike": Temperature("beta", (-4.0, -2.0, 0.0, 2.0, 4.0), 1.0, 50.0),
}


def _surrogate_name(s: Surrogate) -> str:
    for name, cls in SURROGATES.items():
        if type(s) is cls:
            return name
    raise ValueError(f"DGS has no temperature for surrogate {type(s).__name__}; known: {', '.join(TEMPERATURES)}")


def temperature_of(neuron: Neuron) -> tuple[Temperature, float]:
    """The searched parameter of ``neuron``'s surrogate and its current value."""
    spec = TEMPERATURES[_surrogate_name(neuron.surrogate)]
    return spec, float(getattr(neuron.surrogate, spec.param))


def _set_temperature(neurons: Sequence[Neuron], spec: Temperature, value: float) -> None:
    for n in neurons:
        n.surrogate = dataclasses.replace(n.surrogate, **{spec.param: float(value)})


def select_temperature(b: float, accumulated: Sequence[float], spec: Temperature) -> float:
    """``clamp(b + δ[argmax accumulated], lo, hi)`` (ties: the first candidate)."""
    acc = list(accumulated)
    if len(acc) != len(spec.deltas):
        raise ValueError(f"{len(acc)} accumulated weights for {len(spec.deltas)} candidates")
    best = max(range(len(acc)), key=lambda i: (acc[i], -i))
    return min(max(b + spec.deltas[best], spec.lo), spec.hi)


class _Layer:
    """A named layer: its module, neurons, searched weights and temperature spec."""

    def __init__(self, model: nn.Module, name: str) -> None:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"DGS layer {name!r} is not a module of {type(model).__name__}; layers: "
                             f"{', '.join(candidate_layers(model))}") from None
        self.neurons = [m for m in module.modules() if isinstance(m, Neuron)]
        self.params = {k: p for k, p in module.named_parameters() if p.requires_grad}
        if not self.neurons or not self.params:
            raise ValueError(f"DGS layer {name!r} needs neurons and trainable weights (it has {len(self.neurons)} "
                             f"neuron(s), {len(self.params)} weight tensor(s)); layers: "
                             f"{', '.join(candidate_layers(model))}")
        specs = {temperature_of(n) for n in self.neurons}
        if len(specs) != 1:
            raise ValueError(f"DGS layer {name!r}: its neurons' surrogates differ ({sorted(map(str, specs))}); "
                             "one temperature per layer needs one surrogate and value")
        (self.spec, self.value), = specs
        self.name, self.module = name, module


def candidate_layers(model: nn.Module) -> list[str]:
    """Top-level children (and cells) that hold neurons and trainable weights: the names ``--dgs`` accepts."""
    out = []
    for name, m in model.named_modules():
        if not name or name.count(".") > 1:
            continue
        if any(isinstance(x, Neuron) for x in m.modules()) and any(p.requires_grad for p in m.parameters()):
            out.append(name)
    return out


class DGS:
    """The DGS search of ``layers`` (module names) of ``model``; ``search`` runs one round (module docstring)."""

    def __init__(self, model: nn.Module, layers: Sequence[str], batches: int = 200) -> None:
        self.model, self.batches = model, int(batches)
        self.layers = [_Layer(model, n) for n in layers]
        self.initial = self.temperatures()
        self.history: list[dict[str, Any]] = []

    def temperatures(self) -> dict[str, float]:
        return {la.name: la.value for la in self.layers}

    def state_dict(self) -> dict[str, Any]:
        return {"temperatures": self.temperatures(), "initial": dict(self.initial), "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for la in self.layers:
            la.value = float(state["temperatures"][la.name])
            _set_temperature(la.neurons, la.spec, la.value)
        self.history = list(state["history"])

    def search(self, loader: Iterable, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lr: float,
               device: torch.device, epoch: int) -> dict[str, Any]:
        """One DGS round for every layer; returns ``{layer: {"b": new value, "weights": accumulated softmax}}``."""
        row: dict[str, Any] = {}
        for la in self.layers:
            acc = self._search_layer(la, loader, loss_fn, lr, device)
            old = la.value
            la.value = select_temperature(old, acc, la.spec)
            _set_temperature(la.neurons, la.spec, la.value)
            row[la.name] = {"before": old, "after": la.value, "weights": acc}
        self.history.append({"epoch": epoch, **{k: v["after"] for k, v in row.items()}})
        return row

    def _search_layer(self, la: _Layer, loader: Iterable, loss_fn, lr: float, device: torch.device) -> list[float]:
        model, spec = self.model, la.spec
        base = {k: p.detach().clone() for k, p in la.params.items()}
        buffers = {k: b.detach().clone() for k, b in model.named_buffers()}  # every forward here moves BN stats
        alpha = torch.zeros(len(spec.deltas), device=device, requires_grad=True)
        opt = torch.optim.Adam([alpha], lr=ALPHA_LR)
        acc = torch.zeros(len(spec.deltas))
        model.train()
        try:
            with fusion(False):
                for n, (x, y) in enumerate(loader):
                    if n >= self.batches:
                        break
                    x, y = x.to(device), y.to(device)
                    cands = [self._candidate(la, base, la.value + d, x, y, loss_fn, lr) for d in spec.deltas]
                    _set_temperature(la.neurons, spec, la.value)
                    currents = self._currents(la, cands, x)
                    self._restore(model, la, base, buffers)
                    weights = torch.softmax(alpha, 0)
                    mixed = [sum(w * c for w, c in zip(weights, per)) for per in currents]
                    hooks = [nrn.register_forward_pre_hook(lambda _m, args, m=m: (m,) + args[1:])
                             for m, nrn in zip(mixed, la.neurons)]
                    try:
                        reset_states(model)
                        loss = loss_fn(model(x), y)
                    finally:
                        for h in hooks:
                            h.remove()
                    opt.zero_grad(set_to_none=True)
                    loss.backward(inputs=[alpha])
                    opt.step()
                    acc += torch.softmax(alpha.detach(), 0).cpu()
                    self._restore(model, la, base, buffers)
        finally:
            _set_temperature(la.neurons, spec, la.value)
            self._restore(model, la, base, buffers)
            model.zero_grad(set_to_none=True)
        return acc.tolist()

    @staticmethod
    def _restore(model: nn.Module, la: _Layer, base: dict[str, torch.Tensor],
                 buffers: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, p in la.params.items():
                p.copy_(base[k])
            for k, b in model.named_buffers():
                b.copy_(buffers[k])

    def _candidate(self, la: _Layer, base, value: float, x, y, loss_fn, lr: float) -> dict[str, torch.Tensor]:
        """The layer's weights after one SGD step on ``(x, y)`` with the surrogate at ``value``."""
        _set_temperature(la.neurons, la.spec, value)
        with torch.no_grad():
            for k, p in la.params.items():
                p.copy_(base[k])
        reset_states(self.model)
        loss = loss_fn(self.model(x), y)
        grads = torch.autograd.grad(loss, list(la.params.values()), allow_unused=True)
        return {k: (base[k] - lr * g.detach()) if g is not None else base[k]
                for (k, _), g in zip(la.params.items(), grads)}

    def _currents(self, la: _Layer, cands: list[dict[str, torch.Tensor]], x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per neuron of the layer, its input current under each candidate's weights (constants for α's step).

        Each candidate runs the whole network (no gradient), so a layer needs no forward of its own: a cell whose
        data flow its network's wiring spells out works like a ``stem`` module.
        """
        out: list[list[torch.Tensor]] = [[] for _ in la.neurons]
        for cand in cands:
            with torch.no_grad():
                for k, p in la.params.items():
                    p.copy_(cand[k])
                hooks = [nrn.register_forward_pre_hook(lambda _m, args, i=i: out[i].append(args[0].detach()))
                         for i, nrn in enumerate(la.neurons)]
                try:
                    reset_states(self.model)
                    self.model(x)
                finally:
                    for h in hooks:
                        h.remove()
        if any(len(o) != len(cands) for o in out):
            raise ValueError(f"DGS layer {la.name!r}: a neuron ran more or less than once per forward pass; DGS "
                             "mixes one input current per neuron and candidate")
        return out


def plot_history(history: Sequence[dict[str, Any]], initial: dict[str, float], path: Any) -> None:
    """A PNG of every layer's temperature from ``initial`` through each DGS round (the epoch it ran before)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3))
    ax = fig.subplots()
    for name, first in initial.items():
        xs = [0] + [h["epoch"] for h in history]
        ys = [first] + [h[name] for h in history]
        ax.step(xs, ys, where="post", marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("surrogate temperature")
    ax.set_title("DGS temperature per layer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
