"""HNS (paper §4.4) as an in-training strategy: TPS's mechanism over neuron *types*, with an energy loss.

Every neuron layer becomes a ``nasflow.snn.hns.HNSNeuron`` over the space's types (LIF, ALIF, analog ReLU). The
schedule is TPS's (``nasflow.strategies.tps``: warm-up with the model's own types, then weights and ``γ`` trained on
one loss, a search step every ``every`` batches that keeps each layer's type of largest ``γ`` and resets ``γ``). The
loss is REFERENCE.md §4's convex combination

    ``L = (1 - λ_E)·L_task + λ_E · E_pred / E_ref``,  ``E_pred = Σ_layers Σ_k softmax(γ)_k · e_k(layer)``,

where ``e_k(layer)`` is the layer's energy as type ``k`` (``hwmodels.hybrid``): with ``factors="hw"`` the chip's
prices applied to the layer's measured load (its consumers' synapses from the exported graph, its neurons, and each
type's activity measured since the last search step, so the terms are refreshed every search step); with
``factors="paper"`` the paper's constants 1 and 4.26 per outgoing synapse. ``E_ref`` is the all-ReLU network's
``Σ_layers e_relu(layer)`` (where a layer cannot be ReLU: its most expensive allowed type). ``accounting`` says
whether analog layers compute at every step (``per-step``) or once per inference (``per-inference``, the paper's).
The energy terms depend on ``γ`` only (activities are measured without gradient).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from hwmodels.graph import build_layer_table
from hwmodels.hybrid import ACCOUNTINGS, hybrid_prices, layer_loads, paper_energy, type_energy
from hwmodels.profiles import load_profile
from nasflow.snn.hns import HNSNeuron
from nasflow.snn.neuron_types import type_layers
from nasflow.snn.tps import TemporalArch, parse_temporal
from nasflow.spaces.temporal import HybridSpace
from nasflow.strategies.tps import TPSStrategy

__all__ = ["FACTORS", "HNSStrategy"]

FACTORS = ("hw", "paper")


def _not_exportable(model: nn.Module, names: list[str], types: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Per layer, the types whose network would not export to NIR, with the exporter's reason (a ReLU feeding a
    spiking max-pool, whose NIR form is exact on binary input only): HNS never offers them, so every decoded
    network deploys."""
    from exporters.nir_export import to_nir
    from nasflow.snn.neuron_types import make_type

    out: dict[str, dict[str, str]] = {}
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        original = getattr(owner, child)
        for kind in types:
            if kind == "alif":  # exported as a LIF (no NIR node for the adaptation): the structure is the same
                continue
            setattr(owner, child, make_type(original, kind))
            try:
                to_nir(model, dt=1e-3, allow_lossy=True, validate=False)
            except ValueError as err:
                out.setdefault(name, {})[kind] = str(err).splitlines()[0]
            finally:
                setattr(owner, child, original)
    return out


class HNSStrategy(TPSStrategy):
    """Hybrid neuron search during training (module docstring)."""

    name = "hns"
    space_type: type = HybridSpace

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, lambda_e: float = 0.0,
                 chip: str = "generic-45nm-fp32", factors: str = "hw", accounting: str = "per-step",
                 **kwargs: Any) -> None:
        if not (isinstance(lambda_e, (int, float)) and math.isfinite(lambda_e) and 0.0 <= lambda_e <= 1.0):
            raise ValueError(f"lambda_e must lie in [0, 1] (the energy term's weight), got {lambda_e!r}")
        if factors not in FACTORS:
            raise ValueError(f"energy factors {factors!r}: use one of {', '.join(FACTORS)}")
        if accounting not in ACCOUNTINGS:
            raise ValueError(f"accounting {accounting!r}: use one of {', '.join(ACCOUNTINGS)}")
        super().__init__(in_shape, num_classes, **kwargs)
        self.lambda_e, self.chip, self.factors, self.accounting = float(lambda_e), chip, factors, accounting
        self.profile = load_profile(chip)
        self.loads: dict[str, Any] = {}
        self.energy: torch.Tensor | None = None  # [layers, types]
        self.e_ref = 0.0
        self.excluded: dict[str, dict[str, str]] = {}

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "lambda_e": self.lambda_e, "chip": self.chip, "factors": self.factors,
                "accounting": self.accounting}

    def _wrap(self, model: nn.Module, space: Any) -> dict[str, nn.Module]:
        from exporters.nir_export import to_nir

        prices = hybrid_prices(self.profile, analog="relu" in space.types)  # refused before any training
        self.prices = prices
        names = type_layers(model)
        if not names:
            raise ValueError(f"model {space.model!r} has no LIF/ALIF/ReLU layer whose type HNS could search")
        graph = to_nir(model, dt=1e-3, allow_lossy=True, validate=False)  # structure only: node ids = module names
        self.loads = layer_loads(build_layer_table(graph), names)
        self.excluded = _not_exportable(model, names, space.types)
        wrapped: dict[str, nn.Module] = {}
        for name in names:
            allowed = [t for t in space.types if t not in self.excluded.get(name, {})]
            wrapper = HNSNeuron(model.get_submodule(name), space.types, allowed)
            wrapper.stop()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, wrapper)
            wrapped[name] = wrapper
        self.energy = None
        return wrapped

    # -- energy -------------------------------------------------------------------------------
    def energy_terms(self, activities: dict[str, list[float]] | None = None) -> torch.Tensor:
        """``e_k(layer)`` as a ``[layers, types]`` tensor: the paper's constants, or the chip's prices on each
        layer's load at ``activities`` (per layer, one per type; default: measured since the last refresh)."""
        assert self.space is not None
        types = self.space.types
        rows = []
        for name, w in self.layers.items():
            load = self.loads[name]
            if self.factors == "paper":
                rows.append([paper_energy(load, t, self.steps, self.accounting) for t in types])
                continue
            act = (activities or {}).get(name) or w.take_activity()
            if act is None:
                raise RuntimeError(f"layer {name!r}: no activity measured yet to price its types")
            rows.append([type_energy(load, t, float(a), self.steps, self.prices, self.accounting)
                         for t, a in zip(types, act)])
        return torch.tensor(rows, dtype=torch.float64)

    def _refresh(self) -> None:
        assert self.space is not None
        self.energy = self.energy_terms()
        types = self.space.types
        ref = [row[types.index("relu")] if "relu" in w.allowed else max(row[types.index(t)] for t in w.allowed)
               for row, w in zip(self.energy.tolist(), self.layers.values())]
        self.e_ref = float(sum(ref))
        if not self.e_ref > 0:
            raise ValueError("the reference (all-ReLU) energy is 0: the layers have no load to price")

    def predicted_energy(self) -> torch.Tensor:
        """``E_pred = Σ_layers Σ_k softmax(γ)_k e_k(layer)`` (differentiable in γ)."""
        assert self.energy is not None
        w = torch.stack([layer.weights() for layer in self.layers.values()])
        return (w.to(self.energy.dtype) * self.energy.to(w.device)).sum()

    def decoded_energy(self) -> float:
        """The energy terms of the committed types, summed over layers."""
        assert self.energy is not None
        return float(sum(self.energy[i, w.choice] for i, w in enumerate(self.layers.values())))

    def _loss(self, out: torch.Tensor, y: torch.Tensor, searching: bool) -> torch.Tensor:
        task = self.task.loss(out, y)
        if not searching:
            return task
        if self.energy is None:
            self._refresh()
        if self.lambda_e == 0.0:
            return task
        e = self.predicted_energy().to(task.dtype) / self.e_ref
        return (1.0 - self.lambda_e) * task + self.lambda_e * e

    def _commit_layers(self) -> None:
        for w in self.layers.values():
            w.commit()
        self._refresh()  # every search step: the activities measured since the last one

    def _search_step(self) -> None:
        super()._search_step()
        self._history[-1]["energy_ratio"] = self.decoded_energy() / self.e_ref

    def temporal(self) -> TemporalArch:
        """The committed type of every searched layer."""
        return TemporalArch(tuple((name, "type", w.type) for name, w in self.layers.items()))

    def energy_report(self) -> dict[str, Any]:
        """Per-layer energy terms, weights and committed types, with the settings they were computed under."""
        assert self.space is not None
        types = self.space.types
        unit = "joules per sample" if self.factors == "hw" else "AC-equivalents per sample (paper factors)"
        report: dict[str, Any] = {"chip": self.chip, "factors": self.factors, "accounting": self.accounting,
                                  "lambda_e": self.lambda_e, "unit": unit, "types": list(types),
                                  "excluded": self.excluded}
        if self.energy is None:
            return report
        report.update(e_ref=self.e_ref, e_decoded=self.decoded_energy(),
                      e_ratio=self.decoded_energy() / self.e_ref, layers={
                          name: {"type": w.type, "terms": dict(zip(types, self.energy[i].tolist())),
                                 "neurons": self.loads[name].neurons, "synapses": self.loads[name].synapses}
                          for i, (name, w) in enumerate(self.layers.items())})
        return report

    def evaluate(self, loader) -> dict[str, Any]:
        out = super().evaluate(loader)
        if self.energy is not None:
            out["costs"]["energy_ratio"] = self.decoded_energy() / self.e_ref
        return out

    # -- resume -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "energy": None if self.energy is None else self.energy.tolist(),
                "e_ref": self.e_ref,
                "activity": {n: (w._activity.tolist(), w._passes) for n, w in self.layers.items()}}

    def _restore_layers(self, state: dict[str, Any]) -> None:
        pass

    def _restore_values(self, state: dict[str, Any]) -> None:
        for layer, _, kind in parse_temporal(state["temporal"]).values:
            self.layers[layer].set_type(str(kind))
        self.energy = None if state["energy"] is None else torch.tensor(state["energy"], dtype=torch.float64)
        self.e_ref = float(state["e_ref"])
        for name, (acc, passes) in state["activity"].items():
            self.layers[name]._activity = torch.tensor(acc, dtype=torch.float64)
            self.layers[name]._passes = int(passes)
