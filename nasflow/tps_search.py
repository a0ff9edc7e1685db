"""A TPS run: config, loaders, the in-training search, its history plot, and the retraining of what it found.

``run_tps_search(cfg, out_dir)`` searches (``nasflow.strategies.tps`` through ``run_in_training``: per-epoch
checkpoint, exact resume, ``search.json`` whose ``best.arch`` is the per-layer ``TemporalArch`` and whose
``history`` lists the committed values after every search step, also one line per step in ``metrics.jsonl``;
``history.png`` plots them). With
``retrain_epochs > 0`` the found dynamics are retrained **from scratch** (``retrain_temporal``) with the recipe a
handcrafted baseline gets too (``retrain_temporal(cfg, None, ...)``): SGD 0.05 (momentum 0.9, weight decay 3e-4),
cosine, cross-entropy, the same model, C and T, on the full training split, tested on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporters.core.jsonio import write_json
from nasflow.config import ConfigError, DataConfig, ModelConfig, TrainRunConfig, from_dict, to_dict
from nasflow.data import make_loaders
from nasflow.snn.blocks import NeuronSpec
from nasflow.snn.neuron_types import TYPES
from nasflow.snn.tps import parse_temporal
from nasflow.spaces.temporal import TemporalSpace
from nasflow.strategies.intraining import run_in_training
from nasflow.strategies.tps import TPSStrategy
from nasflow.train.run import TimeFirst, run_training
from nasflow.train.trainer import TrainConfig, resolve_device

__all__ = ["TPSConfig", "plot_history", "retrain_temporal", "run_tps_search", "tps_config_from_args",
           "write_history"]


@dataclass
class TPSConfig:
    """One TPS search (and the retraining of what it finds); every field is a config key."""

    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "spikedhs"
    arch: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # further keyword arguments of the model's factory
    neuron: NeuronSpec | None = None  # None: the model's own
    params: list[str] = field(default_factory=lambda: ["decay"])
    candidates: dict[str, list[float]] = field(default_factory=dict)  # per parameter; unset: nasflow's defaults
    channels: int = 8
    steps: int = 6
    epochs: int = 20
    warmup: int = 5
    every: int = 50  # batches per search step
    batch_size: int = 64
    lr_w: float = 0.05
    lr_gamma: float = 0.01
    val_split: float = 0.1
    retrain_epochs: int = 0
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "warmup": 0 <= self.warmup < self.epochs, "every": self.every >= 1,
                  "batch_size": self.batch_size >= 1, "lr_w": self.lr_w > 0, "lr_gamma": self.lr_gamma > 0,
                  "val_split": 0 < self.val_split < 1, "retrain_epochs": self.retrain_epochs >= 0,
                  "channels": self.channels >= 1, "steps": self.steps >= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"invalid TPS value(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)} "
                              "(warmup must leave at least one search epoch)")
        if self.arch is None and self.model not in ("spikedhs", "snasnet"):
            raise ConfigError(f"model {self.model!r} needs an architecture: pass --arch (spikedhs and snasnet have "
                              "defaults)")
        self.space()

    def strategy(self, in_shape: tuple[int, ...], num_classes: int, steps: int, event_input: bool) -> TPSStrategy:
        """The in-training strategy this config runs."""
        return TPSStrategy(in_shape, num_classes, **self._strategy_kwargs(steps, event_input))

    def _strategy_kwargs(self, steps: int, event_input: bool) -> dict[str, Any]:
        return {"channels": self.channels, "steps": steps, "epochs": self.epochs, "warmup": self.warmup,
                "every": self.every, "lr_w": self.lr_w, "lr_gamma": self.lr_gamma, "neuron": self.neuron,
                "event_input": event_input, "device": resolve_device(self.device)}

    def retrain_costs(self, model_path: Path, result: dict[str, Any]) -> dict[str, Any]:
        """Further costs of the retrained network for search.json (TPS: none)."""
        return {}

    def space(self) -> TemporalSpace:
        try:
            return TemporalSpace(self.model, self.arch, tuple(self.params),
                                 {k: tuple(v) for k, v in self.candidates.items()}, dict(self.options))
        except ValueError as err:
            raise ConfigError(str(err)) from None


def tps_config_from_args(base: dict[str, Any]) -> TPSConfig:
    """A checked config from a flat mapping (CLI flags, YAML); ``params`` and ``candidates`` may be strings
    (``decay,alif.beta`` and ``decay=0.1,0.2;alif.beta=0,0.5``)."""
    base = dict(base)
    if isinstance(base.get("params"), str):
        base["params"] = [p.strip() for p in base["params"].split(",") if p.strip()]
    if isinstance(base.get("candidates"), str):
        cands: dict[str, list[float]] = {}
        for item in (i.strip() for i in base["candidates"].split(";") if i.strip()):
            name, eq, values = item.partition("=")
            try:
                cands[name.strip()] = [float(v) for v in values.split(",") if v.strip()] if eq else []
            except ValueError:
                raise ConfigError(f"--candidates {item!r}: values must be numbers, e.g. decay=0.1,0.5,0.9") from None
        base["candidates"] = cands
    return from_dict(TPSConfig, base)


def _loaders(cfg: TPSConfig):
    loaders = make_loaders(cfg.dataset, cfg.batch_size, data_dir=cfg.data_dir, seed=cfg.seed,
                           val_split=cfg.val_split)
    if loaders.spec.kind == "stereo":
        raise ConfigError(f"TPS runs classification datasets here; {cfg.dataset!r} is stereo")
    if loaders.spec.kind == "event":
        loaders = loaders._replace(train=TimeFirst(loaders.train), val=TimeFirst(loaders.val))
    return loaders


def run_tps_search(cfg: TPSConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) the search (TPS, or HNS for an ``nasflow.hns_search.HNSConfig``), then
    (``retrain_epochs > 0``) retrain what it found; returns ``search.json``."""
    out_dir = Path(out_dir)
    loaders = _loaders(cfg)
    spec = loaders.spec
    event = spec.kind == "event"
    strategy = cfg.strategy(spec.image_shape, spec.num_classes, spec.T if event else cfg.steps, event)
    out = run_in_training(strategy, cfg.space(), loaders, out_dir, cfg.epochs, seed=cfg.seed, progress=cfg.progress,
                          extra={"dataset": cfg.dataset, "config": to_dict(cfg)})
    out["history"] = strategy.history()
    if hasattr(strategy, "energy_report"):
        out["energy"] = strategy.energy_report()
    write_history(out["history"], out_dir / "metrics.jsonl")
    plot_history(out["history"], out_dir / "history.png")
    if cfg.retrain_epochs > 0:
        res = retrain_temporal(cfg, out["best"]["arch"], out_dir / "retrain")
        out["retrain"] = {k: res[k] for k in ("test_accuracy", "test_samples", "spikes_per_sample",
                                              "synops_per_sample", "epochs")}
        out["retrain"]["model"] = str(out_dir / "retrain" / "model.pt")
        out["retrain"].update(cfg.retrain_costs(out_dir / "retrain" / "model.pt", res))
    write_json(out_dir / "search.json", out, indent=2)
    return out


def retrain_temporal(cfg: TPSConfig, temporal: str | None, out_dir: str | Path,
                     epochs: int | None = None) -> dict[str, Any]:
    """Train ``cfg``'s network from scratch with per-layer dynamics ``temporal`` (``None``: the model's own,
    the handcrafted baseline) and the module docstring's recipe; returns ``result.json``'s content."""
    run_cfg = TrainRunConfig(
        data=DataConfig(name=cfg.dataset, data_dir=cfg.data_dir, augment="none"),
        model=ModelConfig(name=cfg.model, arch=cfg.arch or "", channels=cfg.channels, steps=cfg.steps,  # "": default
                          neuron=cfg.neuron, options=dict(cfg.options), temporal=temporal or None),
        train=TrainConfig(epochs=epochs or cfg.retrain_epochs or 1, batch_size=cfg.batch_size, optimizer="sgd",
                          lr=0.05, momentum=0.9, weight_decay=3e-4, schedule="cosine", loss="ce", seed=cfg.seed,
                          device=cfg.device, progress=cfg.progress),
    )
    return run_training(run_cfg, out_dir)


def write_history(history: list[dict[str, Any]], path: str | Path) -> Path:
    """``metrics.jsonl``: one JSON line per search step with every layer's committed values
    (``{"search_step", "epoch", "values": {layer: {param: value}}}``), rewritten whole and atomically."""
    import json
    import os

    path = Path(path)
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w") as f:
        for row in history:
            f.write(json.dumps({**row, "values": parse_temporal(row["values"]).as_dict()}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def plot_history(history: list[dict[str, Any]], path: str | Path) -> Path:
    """One line per layer and parameter: its committed value after every search step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for row in history:
        for layer, param, value in parse_temporal(row["values"]).values:
            y = TYPES.index(value) if isinstance(value, str) else value  # a neuron type: its index in TYPES
            series.setdefault(f"{layer} {param}", []).append((int(row["search_step"]), y))
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in series.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=label)
    ax.set_xlabel("search step")
    types = any(key.endswith(" type") for key in series)
    ax.set_ylabel("committed type" if types else "committed value")
    if types:
        ax.set_yticks(range(len(TYPES)), TYPES)
    ax.set_title("HNS: per-layer neuron types" if types else "TPS: per-layer parameters")
    if len(series) <= 12:
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
