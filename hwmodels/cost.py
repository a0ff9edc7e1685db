"""Search feedback: a cached hardware cost per candidate, cost specs, and the rate-linear energy model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from hwmodels.energy import DEFAULT_TERMS, RateEnergyModel, energy_and_latency
from hwmodels.graph import build_layer_table
from hwmodels.mapping import Mapping, map_layers
from hwmodels.profiles import ChipProfile, load_profile
from hwmodels.traffic import counts_from_activity, counts_from_totals, node_stats

__all__ = ["HardwareCost", "CostSpec", "parse_cost_spec", "rate_energy_model", "summarise"]

_METRICS = {
    "energy": "energy_per_sample_j",
    "cores": "cores_used",
    "traffic": "max_core_messages_per_step",
    "latency": "latency_per_step_s",
    "spikes": "spikes_per_sample",
}


@dataclass(frozen=True)
class CostSpec:
    """``metric[:chip]``: which number of :meth:`HardwareCost.evaluate` a search minimises."""

    metric: str
    chip: str | None

    @property
    def key(self) -> str:
        return _METRICS[self.metric]


def parse_cost_spec(spec: str) -> CostSpec:
    """Parse ``energy:loihi``, ``cores:loihi``, ``traffic:loihi``, ``latency:speck`` or ``spikes``."""
    metric, _, chip = str(spec).partition(":")
    if metric not in _METRICS:
        raise ValueError(f"cost {spec!r}: metric must be one of {', '.join(_METRICS)} (e.g. energy:loihi)")
    if metric == "spikes":
        if chip:
            raise ValueError(f"cost {spec!r}: 'spikes' takes no chip")
        return CostSpec(metric, None)
    if not chip:
        raise ValueError(f"cost {spec!r}: name a chip, e.g. {metric}:loihi")
    load_profile(chip)  # fail now on an unknown chip
    return CostSpec(metric, chip)


def summarise(m: Mapping, counts, energy: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one costing (per sample)."""
    return {
        "energy_per_sample_j": energy["energy_per_sample_j"],
        "energy_terms_j": energy["energy_terms_j"],
        "synops_per_sample": float(sum(counts.acs.values())),
        "macs_per_sample": float(sum(counts.macs.values())),
        "neuron_updates_per_sample": float(counts.updates.sum()),
        "spikes_per_sample": float(
            sum(
                v
                for k, v in counts.spikes.items()
                if k not in m.table.input_ids and m.table.layers[k].type != "Threshold"
            )
        ),
        "messages_per_sample": float(sum(v.sum() for v in counts.pair_msgs.values())),
        "max_core_messages_per_step": float(counts.msgs_in_step.max()) if counts.msgs_in_step.size else 0.0,
        "latency_per_step_s": energy["latency_per_step_s"],
        "cores_used": m.cores_used,
        "chips_needed": m.chips_needed,
        "fits": m.fits,
    }


class HardwareCost:
    """Map ``graph`` on ``profile`` once, then cost activities quickly (for use inside a search loop)."""

    def __init__(
        self,
        graph: nir.NIRGraph,
        profile: str | ChipProfile,
        steps: int | None = None,
        placement: str = "greedy",
        terms: tuple[str, ...] = DEFAULT_TERMS,
        update_pricing: str = "split",
        input_spiking: bool | None = None,
    ) -> None:
        self.profile = load_profile(profile)
        self.table = build_layer_table(graph)
        self.mapping = map_layers(self.table, self.profile, placement)
        self.steps, self.terms, self.update_pricing, self.input_spiking = steps, terms, update_pricing, input_spiking
        self._stats = node_stats(self.mapping)

    def counts(self, activity: dict[str, Any], steps: int | None = None):
        """Counts from per-neuron arrays ``{node: [T, B, ...]}``, per-node totals ``{node: {...}}`` or a whole
        simulate.json dict (``{"steps": T, "nodes": {...}}``)."""
        if isinstance(activity.get("nodes"), dict) and "steps" in activity:
            steps, activity = steps or int(activity["steps"]), activity["nodes"]
        if activity and all(isinstance(v, dict) for v in activity.values()):
            t = steps or self.steps or next((v.get("steps") for v in activity.values() if "steps" in v), None)
            if not t:
                raise ValueError("per-node totals need the number of time steps: pass steps=T")
            return counts_from_totals(self.mapping, activity, int(t), self._stats, self.input_spiking)
        return counts_from_activity(self.mapping, {k: np.asarray(v) for k, v in activity.items()}, self.input_spiking)

    def evaluate(self, activity: dict[str, Any], steps: int | None = None) -> dict[str, Any]:
        """Energy, busiest-core traffic, latency and cores for one activity (per sample)."""
        c = self.counts(activity, steps)
        e = energy_and_latency(self.mapping, c, self.terms, self.update_pricing)
        return summarise(self.mapping, c, e)


def rate_energy_model(
    graph: nir.NIRGraph | HardwareCost, profile: str | ChipProfile | None = None, steps: int = 1, **kwargs: Any
) -> RateEnergyModel:
    """Per spiking node coefficients (J per unit firing rate) and a constant so that energy per sample ≈
    Σ coeff_l · rate_l + const, where rate_l = spikes / (neurons · steps). Exact for per-node totals: it is the
    same linear model, probed at zero and at unit rates."""
    hc = graph if isinstance(graph, HardwareCost) else HardwareCost(graph, profile, steps=steps, **kwargs)
    table = hc.table
    spiking = [n for n, lay in table.layers.items() if lay.spiking]

    def probe(rates: dict[str, float]) -> float:
        totals = {n: {"spikes_per_sample": r * table.layers[n].n_neurons * steps} for n, r in rates.items()}
        return hc.evaluate(totals, steps)["energy_per_sample_j"]

    base = probe({n: 0.0 for n in spiking})
    if base is None:
        raise ValueError(f"chip {hc.profile.name!r} prices no energy term; choose a chip with per-event energies")
    coeffs = {n: probe({k: (1.0 if k == n else 0.0) for k in spiking}) - base for n in spiking}
    return RateEnergyModel(coeffs, base, steps)
