"""Search feedback: a chip mapping made once per candidate, then costed quickly for each activity."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from hwmodels.energy import DEFAULT_TERMS, energy_and_latency
from hwmodels.graph import build_layer_table
from hwmodels.hybrid import check_analog
from hwmodels.mapping import Mapping, map_layers
from hwmodels.profiles import ChipProfile, load_profile
from hwmodels.traffic import counts_from_activity, counts_from_totals, node_stats

__all__ = ["HardwareCost", "summarise"]


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
        estimate_unmeasured: bool = False,
    ) -> None:
        self.profile = load_profile(profile)
        # Per-node totals with measured synops for only some connections: estimate the rest instead of refusing
        # (``counts_from_totals``); the search sets it, a simulate.json that lost records stays an error.
        self.estimate_unmeasured = estimate_unmeasured
        self.table = build_layer_table(graph)
        check_analog(self.table, self.profile)
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
            return counts_from_totals(
                self.mapping, activity, int(t), self._stats, self.input_spiking, self.estimate_unmeasured
            )
        return counts_from_activity(self.mapping, {k: np.asarray(v) for k, v in activity.items()}, self.input_spiking)

    def evaluate(self, activity: dict[str, Any], steps: int | None = None) -> dict[str, Any]:
        """Energy, busiest-core traffic, latency and cores for one activity (per sample)."""
        c = self.counts(activity, steps)
        e = energy_and_latency(self.mapping, c, self.terms, self.update_pricing)
        return summarise(self.mapping, c, e)

