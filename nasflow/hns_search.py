"""An HNS run: TPS's run (``nasflow.tps_search``) over neuron types, with the energy loss and its chip.

``HNSConfig`` adds to ``TPSConfig`` the types (``lif,alif,relu``), ``lambda_e``, the chip (``cost``, the AutoSNN
search's syntax ``energy:CHIP``), the factor source (``hw``: the chip's prices on measured loads; ``paper``: the
constants 1 and 4.26) and the accounting (``per-step`` / ``per-inference``). A chip that cannot run analog layers
with ReLU among the types is refused before any work, naming what the chip lacks. ``run_tps_search`` runs it;
``search.json`` adds ``energy`` (settings, per-layer terms, committed types, ``E_decoded / E_ref``), and with
``retrain_epochs`` the retrained hybrid is costed on the chip by ``hwmodels`` from its measured test activity
(analog layers as MACs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwmodels.hybrid import ACCOUNTINGS, HybridError, require_analog
from hwmodels.profiles import ProfileError, load_profile
from nasflow.config import ConfigError, from_dict
from nasflow.evaluators.hw_cost import HardwareSearchCost, split_cost
from nasflow.snn.neuron_types import TYPES, check_types
from nasflow.spaces.temporal import HybridSpace
from nasflow.strategies.hns import FACTORS, HNSStrategy
from nasflow.tps_search import TPSConfig

__all__ = ["HNSConfig", "hns_config_from_args"]


@dataclass
class HNSConfig(TPSConfig):
    """One HNS search (TPS's keys, plus the types and the energy loss's)."""

    types: list[str] = field(default_factory=lambda: list(TYPES))
    lambda_e: float = 0.0
    cost: str = "energy:generic-45nm-fp32"
    energy_factors: str = "hw"
    accounting: str = "per-step"

    def __post_init__(self) -> None:
        metric, chip = split_cost(self.cost)
        if metric != "energy" or not chip:
            raise ConfigError(f"cost {self.cost!r}: HNS's energy loss needs energy:CHIP "
                              "(e.g. energy:generic-45nm-fp32)")
        if not (0.0 <= float(self.lambda_e) <= 1.0):
            raise ConfigError(f"lambda_e={self.lambda_e!r}: the energy term's weight must lie in [0, 1]")
        if self.energy_factors not in FACTORS:
            raise ConfigError(f"energy_factors={self.energy_factors!r}: use one of {', '.join(FACTORS)}")
        if self.accounting not in ACCOUNTINGS:
            raise ConfigError(f"accounting={self.accounting!r}: use one of {', '.join(ACCOUNTINGS)}")
        try:
            self.types = list(check_types(self.types))
            profile = load_profile(chip)
            if "relu" in self.types:
                require_analog(profile)
        except (ValueError, ProfileError, HybridError) as err:
            raise ConfigError(str(err)) from None
        super().__post_init__()

    @property
    def chip(self) -> str:
        return split_cost(self.cost)[1] or ""

    def space(self) -> HybridSpace:  # type: ignore[override]
        try:
            return HybridSpace(self.model, self.arch, tuple(self.types), dict(self.options))
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def strategy(self, in_shape: tuple[int, ...], num_classes: int, steps: int, event_input: bool) -> HNSStrategy:
        return HNSStrategy(in_shape, num_classes, lambda_e=float(self.lambda_e), chip=self.chip,
                           factors=self.energy_factors, accounting=self.accounting,
                           **self._strategy_kwargs(steps, event_input))

    def retrain_costs(self, model_path: Path, result: dict[str, Any]) -> dict[str, Any]:
        """The retrained hybrid on the chip: energy, cores, traffic and latency per sample from its measured test
        activity (``nasflow.evaluators.hw_cost``; ALIF's adaptation has no NIR node, its layer maps as a LIF)."""
        from nasflow.models import load_model

        model, _ = load_model(model_path)
        costs = HardwareSearchCost(self.chip, allow_lossy=True)(model, {"layers": result["layers"]})
        return {"chip": self.chip, **costs}


def hns_config_from_args(base: dict[str, Any]) -> HNSConfig:
    """A checked config from a flat mapping (CLI flags, YAML); ``types`` may be ``lif,relu``."""
    base = dict(base)
    if isinstance(base.get("types"), str):
        base["types"] = [t.strip() for t in base["types"].split(",") if t.strip()]
    return from_dict(HNSConfig, base)
