"""The main job's temporal step: TPS or HNS on the winner of the space's search (``search.temporal=tps|hns``).

After the space's search, ``run_temporal_step`` runs TPS (per-layer decays) or HNS (per-layer neuron types with the
energy loss, priced on the main job's ``chip``) on the winning network with the run's data, T, C and neuron, and
``train_winner`` retrains the winner with what it found (``ModelConfig.temporal``); ``none`` (the default) skips it.
``check_temporal`` refuses, before any work, what the rest of the job could not deploy: ReLU layers on a chip that
cannot run analog layers (the chip and what it lacks are named), and ALIF layers, which NIR cannot express (the
job exports the winner). A hybrid winner's Lava runs are skipped with the backend's reason (Lava runs spiking
layers only); the torch reference, the NIR file and the hardware report cover it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nasflow.config import ConfigError

__all__ = ["TEMPORAL_METHODS", "RunSearch", "TemporalStep", "check_temporal", "run_temporal_step"]

TEMPORAL_METHODS = ("none", "tps", "hns")


@dataclass
class RunSearch:
    """What the main job searches on its winner after the space's search (``none``: nothing)."""

    temporal: str = "none"  # none | tps | hns
    temporal_epochs: int = 10
    every: int = 50  # batches per search step
    params: str = "decay"  # TPS: comma-separated parameters
    types: str = "lif,relu"  # HNS: comma-separated neuron types
    lambda_e: float = 0.3
    accounting: str = "per-step"
    energy_factors: str = "hw"


@dataclass(frozen=True)
class TemporalStep:
    """The temporal step's outcome: the method, the per-layer values or types found (None: skipped)."""

    method: str
    arch: str | None
    dir: str | None = None
    val_accuracy: float | None = None
    energy: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemporalStep:
        return cls(**data)


def _config(cfg: Any, arch: str, out_dir: Path | None = None):
    """The TPS/HNS config of the run's winner (``cfg`` is the ``PipelineConfig``)."""
    from nasflow.hns_search import HNSConfig
    from nasflow.snn.dhs import SPIKEDHS_NEURON
    from nasflow.tps_search import TPSConfig

    s = cfg.search
    epochs = int(s.temporal_epochs)
    if cfg.space == "autosnn":
        model, neuron, options = "autosnn", cfg.autosnn.neuron, {}
    elif cfg.space == "snasnet":
        from nasflow.data.registry import dataset_spec
        from nasflow.snasnet_search import snasnet_space

        sn = cfg.snasnet
        model, neuron = "snasnet", sn.neuron
        space = snasnet_space(sn)
        options = {"reduction": sn.reduction, "classifier_bn": sn.classifier_bn,
                   "second_pool": space.second_pool_for(dataset_spec(cfg.data.dataset).image_shape)}
    else:
        model, neuron = "spikedhs", cfg.spikedhs.neuron or SPIKEDHS_NEURON
        options = {"layers": cfg.spikedhs.layers, "stem_multiplier": cfg.spikedhs.stem_multiplier}
    common = {"dataset": cfg.data.dataset, "data_dir": cfg.data.data_dir, "model": model, "arch": arch,
              "options": options, "neuron": neuron, "channels": cfg.model.channels, "steps": cfg.model.steps,
              "epochs": epochs, "warmup": min(5, epochs // 4), "every": int(s.every), "seed": cfg.seed,
              "device": cfg.device, "progress": cfg.progress}
    if s.temporal == "tps":
        return TPSConfig(**common, params=[p.strip() for p in s.params.split(",") if p.strip()])
    return HNSConfig(**common, types=[t.strip() for t in s.types.split(",") if t.strip()], lambda_e=s.lambda_e,
                     cost=f"energy:{cfg.chip}", energy_factors=s.energy_factors, accounting=s.accounting)


def check_temporal(cfg: Any) -> None:
    """Refuse a temporal search the main job could not run or deploy, before any work (``ConfigError``)."""
    from hwmodels.hybrid import HybridError, require_analog
    from nasflow.snn.neuron_types import check_types

    s = cfg.search
    if s.temporal not in TEMPORAL_METHODS:
        raise ConfigError(f"search.temporal must be one of {', '.join(TEMPORAL_METHODS)}, got {s.temporal!r}")
    if s.temporal_epochs < 2:
        raise ConfigError(f"search.temporal_epochs must be >= 2 (warm-up and search), got {s.temporal_epochs}")
    if s.temporal != "hns":
        return
    try:
        types = check_types([t.strip() for t in s.types.split(",") if t.strip()])
    except ValueError as err:
        raise ConfigError(f"search.types: {err}") from None
    if "alif" in types:
        raise ConfigError("search.types: the main job exports its winner to NIR, which has no adaptive-threshold "
                          "(ALIF) node; search lif and relu here, or ALIF with 'nasflow search hns'")
    if "relu" in types:
        try:
            require_analog(cfg.chip, "the HNS winner's analog (ReLU) layers")
        except HybridError as err:
            raise ConfigError(f"search.temporal=hns: {err} (set chip=...)") from None


def run_temporal_step(cfg: Any, arch: str, out_dir: Path) -> TemporalStep:
    """Run the configured temporal search on the winner ``arch`` (nothing for ``none``)."""
    from nasflow.tps_search import run_tps_search

    method = cfg.search.temporal
    if method == "none":
        return TemporalStep("none", None)
    out = run_tps_search(_config(cfg, arch), out_dir)
    return TemporalStep(method, out["best"]["arch"], str(out_dir), out["best"]["accuracy"], out.get("energy"))
