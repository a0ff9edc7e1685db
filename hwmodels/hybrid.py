"""Hybrid networks (spiking and analog layers) on a chip: who can run them, and HNS's per-layer energy terms.

**Which chips.** An analog (ReLU) layer sends graded values, so its consumers multiply: a chip must price MACs
(``e_mac``) and, if it is neuromorphic, carry graded spikes (``graded_spike_bits``). The 45 nm AC/MAC profiles
do; Loihi 2 does with flagged estimates; Loihi, TrueNorth, SpiNNaker 2 (no MAC price in its profile) and Speck do
not. ``analog_support`` says why not, ``require_analog`` refuses, naming the chip and what it lacks.

**HNS energy terms** (paper §4.4, REFERENCE.md §4). For one neuron layer of ``N`` neurons whose consumers hold
``S`` synapses in all (the sum of its outgoing fan-out over every consumer, ``C`` consumer connections), over
``T`` steps, the energy per sample of each neuron type ``k`` (``type_energy``):

* spiking (``lif``, ``alif``) at measured firing rate ``r_k`` (spikes per neuron per step):
  ``r_k·N·T·(S/N·E_AC + C·E_msg) + N·T·E_update``: its consumers' ACs, one message per spike and consumer,
  its own neuron updates (ALIF is priced as LIF at its own rate);
* analog (``relu``) with measured non-zero fraction ``a`` (the effective-op count, REFERENCE.md §8):
  ``P·(a·S·E_MAC + a·N·C·E_msg + N·E_update)`` with ``P = T`` passes (``per-step``: a time-stepped deployment
  computes the analog layer at every step) or ``P = 1`` (``per-inference``: the paper's accounting, one MAC
  pass per inference).

E_AC is ``e_ac`` (accelerators) or ``e_synop`` (neuromorphic); E_msg is 0 on accelerators. The paper's own
constants (``paper_energy``): ``E = f_k·S`` with ``f_lif = f_alif = 1`` and ``f_relu = 4.26`` per inference
(= 4.6 / (0.9·T·fr), T = 6, fr = 0.2), or ``4.26·T`` per step (the MAC pass repeated T times).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hwmodels.graph import LayerTable
from hwmodels.numerics import fanout_map
from hwmodels.profiles import ChipProfile, load_profile

__all__ = [
    "ACCOUNTINGS", "PAPER_FACTORS", "HybridError", "HybridPrices", "LayerLoad", "analog_support", "check_analog",
    "hybrid_prices", "layer_loads", "paper_energy", "require_analog", "type_energy",
]

ACCOUNTINGS = ("per-step", "per-inference")
PAPER_FACTORS = {"lif": 1.0, "alif": 1.0, "relu": 4.26}
_SPIKING = ("lif", "alif")


class HybridError(ValueError):
    """A hybrid network or an HNS setting a chip or the energy model cannot serve; the message says why."""


def analog_support(profile: ChipProfile | str) -> str | None:
    """Why ``profile`` cannot run analog layers, or None when it can."""
    profile = load_profile(profile)
    if profile.kind == "speck":
        return "its cores are integrate-and-fire only (no graded values, no MACs)"
    if profile.kind == "neuromorphic" and not profile.get("graded_spike_bits"):
        return "it has no graded spikes (graded_spike_bits): its neurons send binary spikes only"
    if profile.get("e_mac") is None:
        return "its profile has no MAC price (e_mac): analog layers' consumers multiply"
    return None


def require_analog(profile: ChipProfile | str, what: str = "an analog (ReLU) layer") -> ChipProfile:
    """``profile`` loaded, or a ``HybridError`` naming the chip and what it lacks to run ``what``."""
    profile = load_profile(profile)
    why = analog_support(profile)
    if why is not None:
        raise HybridError(f"chip {profile.name!r} cannot run {what}: {why}; use a chip that can "
                          "(generic-45nm-fp32, generic-45nm-int8, loihi2) or only spiking neuron types")
    return profile


def check_analog(table: LayerTable, profile: ChipProfile | str) -> None:
    """Refuse a graph with analog (ReLU) layers on a chip that cannot run them (``require_analog``)."""
    analog = [nid for nid, layer in table.layers.items() if layer.type == "ReLU"]
    if analog:
        require_analog(profile, f"analog (ReLU) layer {analog[0]!r}")


@dataclass(frozen=True)
class HybridPrices:
    """Joules per AC, per MAC, per neuron update and per message (0 where the chip has none)."""

    ac: float
    mac: float
    update: float
    message: float


def hybrid_prices(profile: ChipProfile | str, analog: bool = True) -> HybridPrices:
    """The prices HNS's energy terms use on ``profile``; with ``analog`` (the types include ReLU) refused where
    analog layers cannot run, without it the MAC price is 0 (spiking types only)."""
    profile = require_analog(profile) if analog else load_profile(profile)
    g = lambda key: None if profile.get(key) is None else float(profile.get(key))  # noqa: E731
    ac = g("e_ac") if profile.kind == "accelerator" else g("e_synop")
    update = g("e_update_active") if g("e_update_active") is not None else g("e_update_inactive")
    message = g("e_message") if profile.kind == "neuromorphic" else None
    if ac is None:
        raise HybridError(f"chip {profile.name!r} has no price for an accumulate (e_ac / e_synop)")
    return HybridPrices(ac, float(g("e_mac") or 0.0), update or 0.0, message or 0.0)


@dataclass(frozen=True)
class LayerLoad:
    """One neuron layer's load on its consumers: ``neurons`` N, ``synapses`` S (outgoing, all consumers) and
    ``consumers`` C (outgoing connections)."""

    neurons: int
    synapses: float
    consumers: int


def layer_loads(table: LayerTable, layers: Iterable[str]) -> dict[str, LayerLoad]:
    """``LayerLoad`` of each named layer of ``table`` (a ``HybridError`` naming a layer the graph lacks)."""
    out = {}
    for name in layers:
        layer = table.layers.get(name)
        if layer is None:
            raise HybridError(f"layer {name!r} is not a neuron layer of the graph (layers: "
                              f"{', '.join(list(table.layers)[:8])}, ...)")
        conns = table.outgoing(name)
        out[name] = LayerLoad(int(layer.n_neurons), float(sum(float(np.sum(fanout_map(c))) for c in conns)),
                              len(conns))
    return out


def _check(kind: str, steps: int, accounting: str) -> None:
    if kind not in PAPER_FACTORS:
        raise HybridError(f"unknown neuron type {kind!r}; known: {', '.join(PAPER_FACTORS)}")
    if accounting not in ACCOUNTINGS:
        raise HybridError(f"unknown accounting {accounting!r}; known: {', '.join(ACCOUNTINGS)}")
    if steps < 1:
        raise HybridError(f"steps must be >= 1, got {steps}")


def type_energy(load: LayerLoad, kind: str, activity: float, steps: int, prices: HybridPrices,
                accounting: str = "per-step") -> float:
    """Joules per sample of ``load``'s layer as type ``kind`` at ``activity`` (spikes per neuron per step, or the
    analog output's non-zero fraction) over ``steps`` (module docstring)."""
    _check(kind, steps, accounting)
    if not 0.0 <= activity <= 1.0:
        raise HybridError(f"activity must lie in [0, 1] (per neuron and step), got {activity}")
    n, s, c = load.neurons, load.synapses, load.consumers
    if kind in _SPIKING:
        events = activity * n * steps
        fan = s / n if n else 0.0
        return events * (fan * prices.ac + c * prices.message) + n * steps * prices.update
    passes = steps if accounting == "per-step" else 1
    return passes * (activity * s * prices.mac + activity * n * c * prices.message + n * prices.update)


def paper_energy(load: LayerLoad, kind: str, steps: int, accounting: str = "per-step") -> float:
    """The paper's constant-factor energy of ``load``'s layer as ``kind`` (module docstring), in AC units."""
    _check(kind, steps, accounting)
    passes = steps if (kind not in _SPIKING and accounting == "per-step") else 1
    return PAPER_FACTORS[kind] * load.synapses * passes
