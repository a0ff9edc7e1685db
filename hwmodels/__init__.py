"""Hardware models: map a NIR graph onto a chip and cost it (depends on numpy and nir only; the graph checks
come from ``exporters.graph`` / ``exporters.nir_io``, which import neither torch nor Lava)."""

from hwmodels.cost import CostSpec, HardwareCost, parse_cost_spec, rate_energy_model
from hwmodels.energy import RateEnergyModel, energy_and_latency, link_loads
from hwmodels.graph import GraphError, build_layer_table
from hwmodels.mapping import Mapping, Violation, map_layers
from hwmodels.profiles import ChipProfile, ProfileError, list_profiles, load_profile
from hwmodels.report import hw_report, load_activity, read_graph, write_report
from hwmodels.traffic import ActivityError

__all__ = [
    "ActivityError",
    "ChipProfile",
    "CostSpec",
    "GraphError",
    "HardwareCost",
    "Mapping",
    "ProfileError",
    "RateEnergyModel",
    "energy_and_latency",
    "link_loads",
    "Violation",
    "build_layer_table",
    "hw_report",
    "list_profiles",
    "load_activity",
    "load_profile",
    "map_layers",
    "parse_cost_spec",
    "rate_energy_model",
    "read_graph",
    "write_report",
]
