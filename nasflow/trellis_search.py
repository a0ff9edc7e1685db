"""A SpikeDHS joint cell and path search on stereo: config, data halves and the in-training loop.

``run_trellis_search(cfg, out_dir)`` searches (``nasflow.strategies.spikedhs_stereo`` through
``run_in_training``: ``intraining.pt`` after every epoch, exact resume, ``search.json`` with the decoded
``cell`` and ``path``). The defaults are sized for 2 CPU cores (about 13 minutes): generated event stereo at
24x24 (disparities 0-7 px) with the paper's rates 3, 2, 2 (levels 8, 4, 2 pixels wide), 6 layers over 3 levels,
C = 4, T = 4, 400 samples per half, 10 epochs of which 3 warm-up. The stem's rate sets the disparity resolution of
the matching: here level 0 matches in 3-pixel steps, and at this budget neither the trained networks nor a
hand-made window correlation beat predicting the median disparity (README, "SpikeDHS layer study"); ``--size 16
--rates 2,2,2,2`` keeps the cost and matches in 2-pixel steps. The issue's full size is ``--size 48 --layers 8
--levels 4`` (about 20 minutes per epoch of 2,000 + 2,000 samples on 2 cores).

With ``retrain_epochs > 0`` the winner is then trained from scratch (``retrain_trellis``: ``retrain/`` with
``model.pt`` and ``result.json``) by nasflow's trainer with one recipe for every path, so that a searched path
and a fixed one (``nasflow.spaces.trellis.released_path``) compare at equal budget: SGD (momentum 0.9, weight
decay 3e-4, gradients clipped at 5), cosine from ``retrain_lr``, PDS's sub-pixel cross-entropy, on the first
``retrain_samples`` of the training split, tested on the first ``test_samples`` of the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporters.core.jsonio import write_json
from nasflow.config import ConfigError, DataConfig, ModelConfig, TrainRunConfig, from_dict, to_dict
from nasflow.data import dataset_spec, make_loaders
from nasflow.data.loaders import first_samples
from nasflow.spaces.spikedhs import SpikeDHSSpace
from nasflow.spaces.trellis import Trellis, TrellisSpace
from nasflow.strategies.intraining import run_in_training
from nasflow.strategies.spikedhs_stereo import TrellisStereoStrategy
from nasflow.train.run import run_training
from nasflow.train.trainer import TrainConfig, resolve_device

__all__ = ["TrellisSearchConfig", "retrain_trellis", "run_trellis_search", "trellis_config_from_args"]


@dataclass
class TrellisSearchConfig:
    """One trellis search on a stereo dataset; every field is a config key (see the module docstring)."""

    preset: str = "paper"
    nodes: int = 3
    ops: list[str] | None = None
    layers: int = 6
    levels: int = 3
    rates: list[int] = field(default_factory=lambda: [3, 2, 2, 2])
    up: bool = True  # False: no moves to a finer level (every decoded path exports to NIR whole)
    size: int = 24
    channels: int = 4
    steps: int = 4
    epochs: int = 10
    warmup: int = 3
    batch_size: int = 8
    lr_w: float = 0.05
    lr_alpha: float = 1e-3
    max_samples: int | None = 400  # per half of the training split; None: all
    seed: int = 0
    dataset: str = "stereo-dots"
    data_dir: str | None = None
    device: str = "auto"
    progress: bool = True
    retrain_epochs: int = 0  # the winner's retraining from scratch (0: none)
    retrain_lr: float = 0.05
    retrain_samples: int | None = 800  # first N of the training split (None: all)
    test_samples: int | None = 400  # first N of the test split (None: all)

    def __post_init__(self) -> None:
        checks = {"retrain_epochs": self.retrain_epochs >= 0, "retrain_lr": self.retrain_lr > 0,
                  "retrain_samples": self.retrain_samples is None or self.retrain_samples >= 1,
                  "test_samples": self.test_samples is None or self.test_samples >= 1,
                  "channels": self.channels >= 1, "steps": self.steps >= 1, "epochs": self.epochs >= 1,
                  "warmup": self.warmup >= 0, "batch_size": self.batch_size >= 1, "size": self.size >= 1,
                  "max_samples": self.max_samples is None or self.max_samples >= 2}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"invalid trellis search value(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        try:
            self.space().trellis.sizes(self.size)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def space(self) -> TrellisSpace:
        try:
            cells = SpikeDHSSpace(preset=self.preset, nodes=self.nodes,
                                  ops=tuple(self.ops) if self.ops is not None else None)
            return TrellisSpace(cells, Trellis(self.layers, self.levels, tuple(self.rates), self.up))
        except ValueError as err:
            raise ConfigError(str(err)) from None


def trellis_config_from_args(base: dict[str, Any]) -> TrellisSearchConfig:
    """A checked config from a flat mapping (CLI flags, YAML)."""
    if isinstance(base.get("ops"), str):
        base = {**base, "ops": [o.strip() for o in base["ops"].split(",") if o.strip()]}
    return from_dict(TrellisSearchConfig, base)


def run_trellis_search(cfg: TrellisSearchConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) the search in ``out_dir``; returns ``search.json``'s content."""
    if dataset_spec(cfg.dataset).kind != "stereo":
        raise ConfigError(f"the trellis search needs a stereo dataset (stereo-dots, mvsec), got {cfg.dataset!r}")
    loaders = make_loaders(cfg.dataset, cfg.batch_size, data_dir=cfg.data_dir, seed=cfg.seed, val_split=0.5,
                           T=cfg.steps, size=cfg.size)
    spec = loaders.spec
    if cfg.max_samples is not None:
        loaders = loaders._replace(train=first_samples(loaders.train, cfg.max_samples, True, cfg.seed),
                                   val=first_samples(loaders.val, cfg.max_samples, False, cfg.seed))
    strategy = TrellisStereoStrategy(spec.input_shape, spec.num_classes, channels=cfg.channels, epochs=cfg.epochs,
                                     warmup=cfg.warmup, lr_w=cfg.lr_w, lr_alpha=cfg.lr_alpha,
                                     device=resolve_device(cfg.device))
    out_dir = Path(out_dir)
    out = run_in_training(strategy, cfg.space(), loaders, out_dir, cfg.epochs, seed=cfg.seed,
                          progress=cfg.progress, extra={"dataset": cfg.dataset, "config": to_dict(cfg)})
    if cfg.retrain_epochs > 0:
        res = retrain_trellis(cfg, out["best"]["arch"], out_dir / "retrain")
        out["retrain"] = {k: res[k] for k in ("test_accuracy", "test_mean_disparity_error", "test_samples",
                                              "spikes_per_sample", "synops_per_sample", "epochs")}
        out["retrain"]["model"] = str(out_dir / "retrain" / "model.pt")
        write_json(out_dir / "search.json", out, indent=2)
    return out


def retrain_trellis(cfg: TrellisSearchConfig, arch: str, out_dir: str | Path, epochs: int | None = None,
                    restart: bool = False) -> dict[str, Any]:
    """Train the trellis architecture ``arch`` (``PRESET:cell=...;path=...``) from scratch in ``out_dir``
    (resumable) with the recipe of the module docstring and the search's task, C, T and trellis; returns
    ``result.json``'s content (``test_accuracy`` is the one-pixel accuracy)."""
    run_cfg = TrainRunConfig(
        data=DataConfig(name=cfg.dataset, data_dir=cfg.data_dir, augment="none", T=cfg.steps, size=cfg.size,
                        train_samples=cfg.retrain_samples, test_samples=cfg.test_samples),
        model=ModelConfig(name="spikedhs-stereo", arch=arch, channels=cfg.channels, steps=cfg.steps, neuron=None,
                          options={"layers": cfg.layers, "levels": cfg.levels, "rates": list(cfg.rates)}),
        train=TrainConfig(epochs=epochs or cfg.retrain_epochs or 1, batch_size=cfg.batch_size, optimizer="sgd",
                          lr=cfg.retrain_lr, momentum=0.9, weight_decay=3e-4, schedule="cosine", grad_clip=5.0,
                          seed=cfg.seed, device=cfg.device, progress=cfg.progress),
    )
    return run_training(run_cfg, out_dir, restart=restart)
