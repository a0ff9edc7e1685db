"""TPS (paper §4.3, Algorithm 3) as an in-training strategy: train a network while searching its neuron dynamics.

``relax`` builds the space's network and wraps every neuron layer that has a searched parameter in a
``nasflow.snn.tps.TPSNeuron``. For ``warmup`` epochs the network trains with its parameters fixed. After that,
each batch trains the weights (SGD, momentum 0.9, cosine from ``lr_w``) and the mixture weights ``γ`` (Adam,
``lr_gamma``) on the same loss, the layers' outputs being ``Σ_k softmax(γ)_k S_k`` over the candidates; every
``every`` batches is one search step: each layer takes its candidate of largest ``γ`` and ``γ`` is reset. With
several parameters (``decay``, ``alif.beta``, ``alif.rho``) the search steps take them in turn, each layer skipping
those it does not have. PLIF's learnable decay is frozen while a layer searches its ``decay``.

``decode`` returns the committed values as one ``nasflow.spaces.temporal.TemporalArch`` string; ``evaluate`` runs
the network with its committed values (no mixture) and the weights trained so far. The per-layer history of
committed values is ``history()``, kept in the strategy's state so a killed search resumes exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from nasflow.snn.blocks import NeuronSpec
from nasflow.snn.neurons import reset_states
from nasflow.snn.tps import TemporalArch, TPSNeuron, accepts, get_param, neuron_layers, parse_temporal, set_param
from nasflow.spaces.temporal import TemporalSpace
from nasflow.strategies.intraining import InTrainingStrategy
from nasflow.strategies.spikedhs import set_cosine_lr
from nasflow.train.tasks import ClassificationTask
from nasflow.train.trainer import evaluate

__all__ = ["TPSStrategy"]


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


class TPSStrategy(InTrainingStrategy):
    """Temporal parameter search during training (module docstring)."""

    name = "tps"
    space_type: type = TemporalSpace

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, channels: int = 8, steps: int = 6,
                 epochs: int = 20, warmup: int = 5, every: int = 50, lr_w: float = 0.05, lr_min: float = 1e-3,
                 lr_gamma: float = 0.01, weight_decay: float = 3e-4, loss: str = "ce",
                 neuron: NeuronSpec | None = None, event_input: bool = False,
                 device: torch.device | str = "cpu") -> None:
        checks = {"epochs": epochs >= 1, "warmup": 0 <= warmup, "every": every >= 1, "lr_w": lr_w > 0,
                  "lr_gamma": lr_gamma > 0, "lr_min": 0 <= lr_min <= lr_w, "steps": steps >= 1,
                  "channels": channels >= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid TPS setting(s): {', '.join(bad)}")
        self.in_shape, self.num_classes = tuple(int(s) for s in in_shape), int(num_classes)
        self.channels, self.steps, self.epochs, self.warmup, self.every = channels, steps, epochs, warmup, every
        self.lr_w, self.lr_min, self.lr_gamma, self.weight_decay = lr_w, lr_min, lr_gamma, weight_decay
        self.task = ClassificationTask(loss, num_classes)
        self.neuron, self.event_input, self.device = neuron, event_input, torch.device(device)
        self.model: nn.Module | None = None
        self.space: TemporalSpace | None = None
        self.layers: dict[str, Any] = {}  # layer name → its wrapper (TPSNeuron here)
        self.epoch = self.batches = self.search_steps = 0
        self._history: list[dict[str, Any]] = []

    def settings(self) -> dict[str, Any]:
        return {"in_shape": list(self.in_shape), "num_classes": self.num_classes, "channels": self.channels,
                "steps": self.steps, "epochs": self.epochs, "warmup": self.warmup, "every": self.every,
                "lr_w": self.lr_w, "lr_min": self.lr_min, "lr_gamma": self.lr_gamma,
                "weight_decay": self.weight_decay, "loss": self.task.kind,
                "neuron": self.neuron.to_dict() if self.neuron else None, "event_input": self.event_input}

    def relax(self, space: Any) -> nn.Module:
        if not isinstance(space, self.space_type):
            raise TypeError(f"{self.name.upper()} searches a {self.space_type.__name__}, got {type(space).__name__}")
        self.space = space
        model = space.build(in_shape=self.in_shape, num_classes=self.num_classes, channels=self.channels,
                            steps=self.steps, neuron=self.neuron, event_input=self.event_input)
        self.layers = self._wrap(model, space)
        self.model = model.to(self.device)
        gammas = {id(w.gamma) for w in self.layers.values()}
        self.opt_w = torch.optim.SGD([p for p in model.parameters() if id(p) not in gammas and p.requires_grad],
                                     lr=self.lr_w, momentum=0.9, weight_decay=self.weight_decay)
        self._make_gamma_optimizer()
        self.epoch = self.batches = self.search_steps = 0
        self._history = [{"search_step": 0, "values": self.decode()[0]}]
        return self.model

    def _wrap(self, model: nn.Module, space: Any) -> dict[str, nn.Module]:
        """Wrap every neuron layer that has a searched parameter in a ``TPSNeuron`` (in place)."""
        layers = [n for n in dict.fromkeys(n for p in space.params for n in neuron_layers(model, p))]
        if not layers:
            raise ValueError(f"model {space.model!r} has no neuron layer with {', '.join(space.params)} to search")
        wrapped: dict[str, nn.Module] = {}
        for name in layers:
            neuron = model.get_submodule(name)
            param = next(p for p in space.params if accepts(neuron, p))
            wrapper = TPSNeuron(neuron, param, space.candidate_set(param))  # type: ignore[arg-type]
            wrapper.stop()
            _replace(model, name, wrapper)
            wrapped[name] = wrapper
        return wrapped

    def _loss(self, out: torch.Tensor, y: torch.Tensor, searching: bool) -> torch.Tensor:
        """The one loss the weights and γ train on (TPS: the task's)."""
        return self.task.loss(out, y)

    def _make_gamma_optimizer(self) -> None:
        self.opt_gamma = torch.optim.Adam([w.gamma for w in self.layers.values()], lr=self.lr_gamma)

    def _model(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("call relax(space) before using the strategy")
        return self.model

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        set_cosine_lr(self.opt_w, epoch, self.epochs, self.lr_w, self.lr_min)
        for w in self.layers.values():
            if epoch >= self.warmup:
                w.start()
            else:
                w.stop()

    def step(self, batch_train, batch_val) -> dict[str, float]:
        model = self._model()
        model.train()
        x, y = (t.to(self.device) for t in batch_train)
        reset_states(model)
        out = model(x)
        searching = self.epoch >= self.warmup
        loss = self._loss(out, y, searching)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.name.upper()} training loss became {float(loss)} at epoch "
                                     f"{self.epoch + 1}; lower lr_w")
        weights = [p for g in self.opt_w.param_groups for p in g["params"] if p.requires_grad]  # PLIF's w frozen
        gammas = [w.gamma for w in self.layers.values()] if searching else []
        self.opt_w.zero_grad(set_to_none=True)
        self.opt_gamma.zero_grad(set_to_none=True)
        loss.backward(inputs=weights + gammas)  # one loss: the weights keep training while γ learns
        nn.utils.clip_grad_norm_(weights, 5.0)
        self.opt_w.step()
        logs = {"train_loss": float(loss), "lr_w": self.opt_w.param_groups[0]["lr"],
                **self.task.metrics(self.task.tally(out.detach(), y))}
        if searching:
            self.opt_gamma.step()
            self.batches += 1
            if self.batches % self.every == 0:
                self._search_step()
        return logs

    def _search_step(self) -> None:
        """Commit every layer to its best candidate, reset γ (and its optimiser), record the history."""
        self.search_steps += 1
        self._commit_layers()
        self._make_gamma_optimizer()
        self._history.append({"search_step": self.search_steps, "epoch": self.epoch + 1,
                              "values": self.decode()[0]})

    def _commit_layers(self) -> None:
        """Each layer takes its best candidate and moves on to the next parameter in turn."""
        assert self.space is not None
        params = self.space.params
        for w in self.layers.values():
            w.commit()
            nxt = [p for p in params[self.search_steps % len(params):] + params if accepts(w.neuron, p)][0]
            if nxt != w.param:
                w.retarget(nxt, self.space.candidate_set(nxt))

    def temporal(self) -> TemporalArch:
        """The committed values of every searched parameter in every wrapped layer."""
        assert self.space is not None
        return TemporalArch(tuple((name, p, round(get_param(w.neuron, p), 6)) for name, w in self.layers.items()
                                  for p in self.space.params if accepts(w.neuron, p)))

    def decode(self) -> tuple[str, ...]:
        return (str(self.temporal()),)

    def arch_weights(self) -> list[list[float]]:
        return [w.weights().detach().cpu().tolist() for w in self.layers.values()]

    def history(self) -> list[dict[str, Any]]:
        """The committed values after every search step (step 0: the start)."""
        return list(self._history)

    def evaluate(self, loader: Iterable) -> dict[str, Any]:
        model = self._model()
        was = {name: w.searching for name, w in self.layers.items()}
        for w in self.layers.values():
            w.searching = False
        try:
            ev = evaluate(model, loader, self.device, task=self.task)
        finally:
            for name, w in self.layers.items():
                w.searching = was[name]
        return {"accuracy": ev["accuracy"], "costs": {"spikes": ev["spikes_per_sample"],
                                                      "synops": ev["synops_per_sample"],
                                                      "neuron_updates": ev["neuron_updates_per_sample"]}}

    def state_dict(self) -> dict[str, Any]:
        # a LIF's τ is a plain attribute (not in the module's state_dict): the committed values travel as text
        return {"model": self._model().state_dict(), "opt_w": self.opt_w.state_dict(),
                "opt_gamma": self.opt_gamma.state_dict(), "temporal": self.decode()[0],
                "params": {n: getattr(w, "param", None) for n, w in self.layers.items()}, "epoch": self.epoch,
                "batches": self.batches, "search_steps": self.search_steps, "history": self._history}

    def _restore_layers(self, state: dict[str, Any]) -> None:
        """Put every wrapper back on the parameter it was searching (before the model's tensors are loaded)."""
        assert self.space is not None
        for name, param in state["params"].items():
            w = self.layers[name]
            if w.param != param:
                w.retarget(param, self.space.candidate_set(param))

    def _restore_values(self, state: dict[str, Any]) -> None:
        for layer, param, value in parse_temporal(state["temporal"]).values:
            set_param(self.layers[layer].neuron, param, float(value))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restore_layers(state)
        self._make_gamma_optimizer()
        self._model().load_state_dict(state["model"])
        self._restore_values(state)
        self.opt_w.load_state_dict(state["opt_w"])
        self.opt_gamma.load_state_dict(state["opt_gamma"])
        self.epoch, self.batches = int(state["epoch"]), int(state["batches"])
        self.search_steps, self._history = int(state["search_steps"]), list(state["history"])

