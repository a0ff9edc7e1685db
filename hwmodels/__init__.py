"""Hardware models: map a NIR graph onto a chip and cost it (depends on numpy and nir only; the graph checks
come from the NIR core ``exporters.core`` / ``exporters.nir_io``, which import neither torch nor Lava)."""

from hwmodels.cost import HardwareCost
from hwmodels.energy import energy_and_latency, link_loads
from hwmodels.graph import GraphError, build_layer_table
from hwmodels.mapping import Mapping, Violation, map_layers
from hwmodels.profiles import ChipProfile, ProfileError, list_profiles, load_profile
from hwmodels.report import HwReport, hw_report, load_activity, read_graph, write_report
from hwmodels.traffic import ActivityError

__all__ = [
    "ActivityError",
    "ChipProfile",
    "GraphError",
    "HardwareCost",
    "HwReport",
    "Mapping",
    "ProfileError",
    "energy_and_latency",
    "link_loads",
    "Violation",
    "build_layer_table",
    "hw_report",
    "list_profiles",
    "load_activity",
    "load_profile",
    "map_layers",
    "read_graph",
    "write_report",
]
