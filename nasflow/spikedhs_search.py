"""A SpikeDHS cell search run: config, data halves, the in-training loop, and the retraining of the winner.

``run_spikedhs_search(cfg, out_dir)`` searches (``nasflow.strategies.spikedhs`` through ``run_in_training``:
``intraining.pt`` after every epoch, exact resume, ``search.json``) and, with ``retrain_epochs > 0``, retrains
the decoded genotype from scratch with nasflow's trainer (``retrain/``: ``model.pt``, ``result.json``). The
bi-level split is the training split cut in two stratified halves (``val_split = 0.5``): half A trains the
weights, half B the architecture; the test split is never seen by the search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporters.core.jsonio import write_json
from hwmodels.profiles import load_profile
from nasflow.config import ConfigError, DataConfig, ModelConfig, TrainRunConfig, from_dict, to_dict
from nasflow.data import make_loaders
from nasflow.snn.blocks import NeuronSpec
from nasflow.snn.dhs import SPIKEDHS_NEURON
from nasflow.spaces.spikedhs import OPS, SpikeDHSSpace
from nasflow.strategies.intraining import run_in_training
from nasflow.strategies.spikedhs import SpikeDHSStrategy
from nasflow.train.run import run_training
from nasflow.train.trainer import TrainConfig, resolve_device

__all__ = ["SpikeDHSConfig", "retrain_genotype", "run_spikedhs_search", "search_config_from_args"]


@dataclass
class SpikeDHSConfig:
    """One SpikeDHS search (and the retraining of its winner); every field is a config key.

    Defaults are sized for digits on 2 CPU cores (one search about 5 minutes): C = 8, T = 6 (the paper's T),
    5 cells (reductions at cells 1 and 3), 3-node cells, 20 epochs of which 5 warm-up.
    """

    preset: str = "paper"
    nodes: int = 3
    ops: list[str] | None = None
    layers: int = 5
    stem_multiplier: int = 2
    channels: int = 8
    steps: int = 6
    epochs: int = 20
    warmup: int = 5
    batch_size: int = 64
    lr_w: float = 0.05
    lr_min: float = 1e-3
    lr_alpha: float = 1e-3
    cost: str | None = None  # energy:CHIP: the differentiable hardware term (with lam_hw > 0)
    lam_hw: float = 0.0
    neuron: NeuronSpec | None = None  # None: the SpikeDHS neuron
    retrain_epochs: int = 30
    retrain_channels: int | None = None  # C of the retrained winner (None: the search's C); DARTS retrains wider
    retrain_lr: float = 0.05
    seed: int = 0
    dataset: str = "digits"
    data_dir: str | None = None
    augment: str = "none"
    device: str = "auto"
    progress: bool = True
    max_samples: int | None = None  # keep the first N samples of each half: quick runs and tests

    def __post_init__(self) -> None:
        self.space()  # checks preset, nodes, ops and layers with their own messages
        checks = {"channels": self.channels >= 1, "steps": self.steps >= 1, "epochs": self.epochs >= 1,
                  "warmup": 0 <= self.warmup, "batch_size": self.batch_size >= 1, "lr_w": self.lr_w > 0,
                  "lr_alpha": self.lr_alpha > 0, "lam_hw": math.isfinite(self.lam_hw) and self.lam_hw >= 0,
                  "retrain_epochs": self.retrain_epochs >= 0, "retrain_lr": self.retrain_lr > 0,
                  "retrain_channels": self.retrain_channels is None or self.retrain_channels >= 1,
                  "augment": self.augment in ("none", "standard", "cutout"),
                  "max_samples": self.max_samples is None or self.max_samples >= 2}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            raise ConfigError(f"invalid SpikeDHS config value(s): {values}")
        if self.lam_hw > 0 and self.cost is None:
            raise ConfigError("lam_hw > 0 needs a hardware cost: set cost to energy:CHIP (e.g. --cost energy:loihi)")
        self.chip()

    def space(self) -> SpikeDHSSpace:
        try:
            return SpikeDHSSpace(self.preset, self.nodes, tuple(self.ops) if self.ops else None, self.layers,
                                 self.stem_multiplier)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def chip(self) -> str:
        """The chip whose prices the hardware term uses (``cost = energy:CHIP``; loihi when no cost is set)."""
        if self.cost is None:
            return "loihi"
        metric, sep, chip = self.cost.partition(":")
        if metric != "energy" or not sep or not chip:
            raise ConfigError(f"SpikeDHS's in-search hardware cost is energy:CHIP (per-op energy is what a "
                              f"softmax over ops can weigh), got cost={self.cost!r}")
        load_profile(chip)  # raises ProfileError (a ValueError) naming the chip
        return chip


def search_config_from_args(base: dict[str, Any]) -> SpikeDHSConfig:
    """Build a checked config from a flat mapping (CLI flags, YAML)."""
    if isinstance(base.get("ops"), str):
        base = {**base, "ops": [o.strip() for o in base["ops"].split(",") if o.strip()]}
    unknown = [o for o in base.get("ops") or () if o not in OPS]
    if unknown:
        raise ConfigError(f"unknown SpikeDHS op(s) {unknown}; known: {', '.join(OPS)}")
    return from_dict(SpikeDHSConfig, base)


def search_loaders(cfg: SpikeDHSConfig):
    from nasflow.data.loaders import first_samples

    loaders = make_loaders(cfg.dataset, cfg.batch_size, data_dir=cfg.data_dir, seed=cfg.seed, val_split=0.5)
    if loaders.spec.kind != "static":
        raise ConfigError(f"dataset {cfg.dataset!r} is an event dataset; the SpikeDHS search runs static data here")
    if cfg.max_samples is not None:
        loaders = loaders._replace(train=first_samples(loaders.train, cfg.max_samples, True, cfg.seed),
                                   val=first_samples(loaders.val, cfg.max_samples, False, cfg.seed))
    return loaders


def retrain_genotype(cfg: SpikeDHSConfig, genotype: str, out_dir: str | Path, epochs: int | None = None,
                     dgs: list[str] | None = None, temporal: str | None = None) -> dict[str, Any]:
    """Train ``genotype`` from scratch in ``out_dir`` (resumable) with the same recipe for every winner: SGD
    (momentum 0.9, weight decay 3e-4), cosine from ``retrain_lr``, cross-entropy, the search's T and layers and
    ``retrain_channels`` (default: the search's C) on the full training split; returns ``result.json``'s content."""
    run_cfg = TrainRunConfig(
        data=DataConfig(name=cfg.dataset, data_dir=cfg.data_dir, augment=cfg.augment),
        model=ModelConfig(name="spikedhs", arch=genotype, channels=cfg.retrain_channels or cfg.channels,
                          steps=cfg.steps,
                          neuron=cfg.neuron or SPIKEDHS_NEURON,
                          options={"layers": cfg.layers, "stem_multiplier": cfg.stem_multiplier}, temporal=temporal),
        train=TrainConfig(epochs=epochs or cfg.retrain_epochs, batch_size=cfg.batch_size, optimizer="sgd",
                          lr=cfg.retrain_lr, momentum=0.9, weight_decay=3e-4, schedule="cosine", loss="ce",
                          seed=cfg.seed, device=cfg.device, progress=cfg.progress, dgs=list(dgs or [])),
    )
    return run_training(run_cfg, out_dir)


def run_spikedhs_search(cfg: SpikeDHSConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) the search, then (``retrain_epochs > 0``) retrain the winner; returns ``search.json``."""
    out_dir = Path(out_dir)
    loaders = search_loaders(cfg)
    spec = loaders.spec
    strategy = SpikeDHSStrategy(spec.image_shape, spec.num_classes, channels=cfg.channels, steps=cfg.steps,
                                epochs=cfg.epochs, warmup=cfg.warmup, lr_w=cfg.lr_w, lr_min=cfg.lr_min,
                                lr_alpha=cfg.lr_alpha, lam_hw=cfg.lam_hw, chip=cfg.chip(), neuron=cfg.neuron,
                                device=resolve_device(cfg.device))
    out = run_in_training(strategy, cfg.space(), loaders, out_dir, cfg.epochs, seed=cfg.seed,
                          progress=cfg.progress, extra={"dataset": cfg.dataset, "config": to_dict(cfg)})
    if cfg.retrain_epochs > 0:
        res = retrain_genotype(cfg, out["best"]["arch"], out_dir / "retrain")
        out["retrain"] = {k: res[k] for k in ("test_accuracy", "test_samples", "spikes_per_sample",
                                              "synops_per_sample", "neuron_updates_per_sample", "epochs")}
        out["retrain"]["model"] = str(out_dir / "retrain" / "model.pt")
        write_json(out_dir / "search.json", out, indent=2)
    return out
