"""Hardware costs as search costs: export the candidate to NIR, cost its measured activity on a chip.

``HardwareSearchCost`` is a ``cost_fn`` for ``SupernetEvaluator``: given the supernet (its active path
set) and the ``ActivityMonitor`` summary of the candidate on D_val, it exports the active path with
``exporters.nir_export.to_nir`` (node ids are the supernet's module names, the same names the monitor
uses), maps the graph on the chip with ``hwmodels.HardwareCost`` and prices the per-node totals. It
returns one cost per metric, keyed ``metric:chip`` (``energy:loihi`` in joules per sample,
``cores:loihi``, ``traffic:loihi`` = busiest core's messages per step, ``latency:loihi`` in seconds per
step), so a journal never mixes two chips' numbers under one name.
"""

from __future__ import annotations

from typing import Any

import torch

from hwmodels import HardwareCost, load_profile

__all__ = ["HW_METRICS", "HardwareSearchCost", "is_hardware_cost", "split_cost"]

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


class HardwareSearchCost:
    """Cost function ``(supernet, summary) -> {"energy:chip": J, "cores:chip": n, ...}`` for one chip."""

    def __init__(self, chip: str, dt: float = 1e-3) -> None:
        self.profile = load_profile(chip)  # unknown chip: a clear error before any evaluation
        self.chip = chip
        self.dt = dt

    def __call__(self, net: torch.nn.Module, summary: dict[str, Any]) -> dict[str, float]:
        from exporters.nir_export import to_nir

        graph = to_nir(net, dt=self.dt, validate=False)  # the space was validated by its tests
        steps = int(net.steps)
        totals = {
            name: {"spikes_per_sample": row["spikes_per_sample"]}
            for name, row in summary["layers"].items() if row["kind"] in ("neuron", "pool")
        }
        result = HardwareCost(graph, self.profile, steps=steps).evaluate(totals, steps)
        return {f"{metric}:{self.chip}": float(result[key] if result[key] is not None else float("nan"))
                for metric, key in HW_METRICS.items()}
