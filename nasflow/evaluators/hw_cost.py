"""Hardware costs as search costs: export the candidate to NIR, cost its measured activity on a chip.

``HardwareSearchCost`` is a ``cost_fn`` for ``SupernetEvaluator``: given the supernet (its active path
set) and the ``ActivityMonitor`` summary of the candidate on D_val, it exports the active path with
``exporters.nir_export.to_nir`` (node ids are the supernet's module names, the same names the monitor
uses), maps the graph on the chip with ``hwmodels.HardwareCost`` and prices the per-node totals. The
totals carry the monitor's measured ACs/MACs per weight node (``measured_totals``), so the synaptic-op
energy and latency use the same counts the journal records for the candidate instead of hwmodels'
uniform-rate re-estimate (REFERENCE.md §8: one count); spikes per layer still drive the traffic. It
returns one cost per metric, keyed ``metric:chip`` (``energy:loihi`` in joules per sample,
``cores:loihi``, ``traffic:loihi`` = busiest core's messages per step, ``latency:loihi`` in seconds per
step), so a journal never mixes two chips' numbers under one name.
"""

from __future__ import annotations

from typing import Any

import torch

from hwmodels import HardwareCost, load_profile
from hwmodels.graph import LayerTable

__all__ = ["HW_METRICS", "HardwareSearchCost", "is_hardware_cost", "measured_totals", "split_cost"]

HW_METRICS = {
    "energy": "energy_per_sample_j",
    "cores": "cores_used",
    "traffic": "max_core_messages_per_step",
    "latency": "latency_per_step_s",
}


def split_cost(name: str) -> tuple[str, str | None]:
    """``"energy:loihi"`` → ``("energy", "loihi")``; ``"spikes"`` → ``("spikes", None)``."""
    metric, _, chip = name.partition(":")
    return metric, (chip or None)


def is_hardware_cost(name: str) -> bool:
    """Whether a cost name needs a hardware model (``energy:loihi`` yes, ``spikes`` no)."""
    return split_cost(name)[0] in HW_METRICS


def measured_totals(table: LayerTable, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """hwmodels per-node totals from an ``ActivityMonitor`` summary of the exported model (node id = module name).

    Neuron and pool rows give ``spikes_per_sample`` (what drives traffic), analog rows ``nonzero_per_sample``;
    synapse rows give, for every connection
    of that weight node, the measured ``{"synops": {target: {"source", "acs_per_sample", "macs_per_sample"}}}``
    record that ``nasflow simulate`` also writes (``hwmodels.traffic.measured_synops``), so hwmodels prices these
    counts instead of re-estimating them. A weight node feeding several targets is one synapse per target, each
    seeing the same input, hence the same count. A synapse row the graph does not have is an error: dropping it
    silently would price a different network than the one the search measured.
    """
    weights: dict[str, list] = {}
    for conn in table.connections:
        weights.setdefault(conn.node_id, []).append(conn)
    totals: dict[str, dict[str, Any]] = {}
    for name, row in summary["layers"].items():
        if row["kind"] in ("neuron", "pool"):
            totals[name] = {"spikes_per_sample": row["spikes_per_sample"]}
        elif row["kind"] == "analog":  # graded values: events for traffic, MACs for its consumers
            totals[name] = {"nonzero_per_sample": row["nonzero_per_sample"]}
        elif row["kind"] == "synapse":
            if name not in weights:
                raise ValueError(f"the activity summary has synapse layer {name!r}, which the exported graph lacks "
                                 f"(weight nodes: {', '.join(weights)})")
            totals[name] = {"synops": {
                conn.target: {"source": conn.source, "acs_per_sample": row["synops_per_sample"],
                              "macs_per_sample": row["macs_per_sample"]}
                for conn in weights[name]}}
    return totals


class HardwareSearchCost:
    """Cost function ``(supernet, summary) -> {"energy:chip": J, "cores:chip": n, ...}`` for one chip."""

    def __init__(self, chip: str, dt: float = 1e-3, allow_lossy: bool = False) -> None:
        self.profile = load_profile(chip)  # unknown chip: a clear error before any evaluation
        self.chip = chip
        self.dt = dt
        # ALIF layers export as LIF (no NIR node for the adaptation): the structure hwmodels maps is the same and
        # the activity is measured on the real model, so a caller costing such a network may accept it
        self.allow_lossy = allow_lossy

    def __call__(self, net: torch.nn.Module, summary: dict[str, Any]) -> dict[str, float]:
        from exporters.nir_export import to_nir

        graph = to_nir(net, dt=self.dt, validate=False, allow_lossy=self.allow_lossy)  # spaces validated by tests
        steps = int(net.steps)
        # The export adds synapses the monitor does not see (a max-pool's SumPool2d, the voting Affine): hwmodels
        # estimates those from their source's spikes, exactly so for their uniform fan-out.
        cost = HardwareCost(graph, self.profile, steps=steps, estimate_unmeasured=True)
        result = cost.evaluate(measured_totals(cost.table, summary), steps)
        return {f"{metric}:{self.chip}": float(result[key] if result[key] is not None else float("nan"))
                for metric, key in HW_METRICS.items()}
