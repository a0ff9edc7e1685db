"""One training run in a run directory: resolved config, metrics, checkpoints, model and result.

Files written to ``out_dir``: ``config.yaml`` (resolved), ``metrics.jsonl``, ``checkpoint.pt``
(latest epoch, for resume), ``model.pt`` and ``result.json``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from exporters.core.jsonio import SCHEMA_VERSION, write_json
from nasflow.config import ConfigError, TrainRunConfig, to_dict
from nasflow.data import make_loaders, to_time_first
from nasflow.data.loaders import first_samples
from nasflow.models import create_model, save_model
from nasflow.train.tasks import ClassificationTask, StereoTask
from nasflow.train.trainer import Trainer, evaluate, seed_everything

__all__ = ["TimeFirst", "run_training"]


class TimeFirst:
    """Wrap a loader of event batches ``[B, T, ...]`` so it yields time-first ``[T, B, ...]``."""

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator:
        for x, y in self.loader:
            yield to_time_first(x), y

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]


def _check_run_dir(out_dir: Path, resolved: dict[str, Any], restart: bool) -> None:
    cfg_path = out_dir / "config.yaml"
    if restart:
        for name in ("checkpoint.pt", "metrics.jsonl", "model.pt", "result.json"):
            (out_dir / name).unlink(missing_ok=True)
        return
    if not cfg_path.exists():
        return
    previous = yaml.safe_load(cfg_path.read_text()) or {}
    ignore = {("train", "progress"), ("train", "device"), ("data", "num_workers"), ("data", "data_dir")}
    diffs = [
        f"{section}.{key}"
        for section, values in resolved.items()
        for key, value in values.items()
        if (section, key) not in ignore and previous.get(section, {}).get(key) != value
    ]
    if diffs:
        raise ConfigError(
            f"{out_dir} holds a run with a different config ({', '.join(diffs)}); "
            "use another --out directory, or --restart to overwrite it"
        )


def run_training(cfg: TrainRunConfig, out_dir: str | Path, restart: bool = False) -> dict[str, Any]:
    """Train ``cfg`` in ``out_dir`` (resuming a killed run there) and return ``result.json``'s content."""
    out_dir = Path(out_dir)
    resolved = to_dict(cfg)
    if out_dir.exists():
        _check_run_dir(out_dir, resolved, restart)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    seed_everything(cfg.train.seed)
    d = cfg.data
    loaders = make_loaders(
        d.name, cfg.train.batch_size, data_dir=d.data_dir, seed=cfg.train.seed,
        augment=False if d.augment == "none" else d.augment, num_workers=d.num_workers, T=d.T, size=d.size,
    )
    if d.train_samples is not None:
        loaders = loaders._replace(train=first_samples(loaders.train, d.train_samples, True, cfg.train.seed))
    if d.test_samples is not None:
        loaders = loaders._replace(test=first_samples(loaders.test, d.test_samples, False, cfg.train.seed))
    spec = loaders.spec
    event, stereo = spec.kind == "event", spec.kind == "stereo"
    m = cfg.model
    steps = spec.T if event or stereo else m.steps
    model = create_model(
        m.name, arch=m.arch, in_shape=spec.image_shape, num_classes=spec.num_classes, channels=m.channels,
        steps=steps, vote=m.vote, neuron=m.neuron, event_input=event, **m.options,
    )
    if m.temporal:
        from nasflow.snn.tps import apply_temporal

        try:
            apply_temporal(model, m.temporal)
        except ValueError as err:
            raise ConfigError(f"model.temporal: {err}") from None
        model.config = {**model.config, "temporal": m.temporal}
    if stereo and not hasattr(model, "disparity_step"):
        raise ConfigError(f"dataset {spec.name!r} is stereo: train a stereo model (model.name=spikedhs-stereo), "
                          f"not {m.name!r}")
    if not stereo and hasattr(model, "disparity_step"):
        raise ConfigError(f"model {m.name!r} is a stereo model: train it on a stereo dataset (stereo-dots, mvsec)")
    # stereo models take [B, T, 4, H, W] and run both cameras through their features themselves
    train_loader = TimeFirst(loaders.train) if event else loaders.train
    test_loader = TimeFirst(loaders.test) if event else loaders.test
    task = StereoTask(model.disparity_step) if stereo else ClassificationTask(cfg.train.loss, spec.num_classes)
    trainer = Trainer(model, cfg.train, train_loader, test_loader, out_dir=out_dir, num_classes=spec.num_classes,
                      task=task)
    t0 = time.perf_counter()
    resumed_from = trainer.epoch if trainer.try_resume() else 0
    trainer.fit(resume=False)
    train_seconds = time.perf_counter() - t0

    ev = evaluate(trainer.model, test_loader, trainer.device, task=task)
    layers = ev["layers"]
    result = {
        "schema_version": SCHEMA_VERSION,
        "dataset": spec.name,
        "model": m.name,
        "arch": ",".join(model.arch) if hasattr(model, "arch") else m.arch,
        "seed": cfg.train.seed,
        "epochs": cfg.train.epochs,
        "steps": steps,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_accuracy": ev["accuracy"],
        "test_samples": ev["samples"],
        "spikes_per_sample": ev["spikes_per_sample"],
        "synops_per_sample": ev["synops_per_sample"],
        "macs_per_sample": ev["macs_per_sample"],
        "neuron_updates_per_sample": ev["neuron_updates_per_sample"],
        "firing_rates": {n: r["firing_rate"] for n, r in layers.items() if r["kind"] == "neuron"},
        "layers": layers,
        "spikes_per_step_per_sample": ev["spikes_per_step_per_sample"],
        # stereo: activity counts are per camera stream, the chip's unit of work (two per stereo sample)
        **({"test_mean_disparity_error": ev["mean_disparity_error"], "chip_inferences_per_sample": 2,
            "host_ops_per_sample": model.host_ops()} if stereo else {}),
        "train_seconds_this_session": train_seconds,
        **({"dgs": trainer.dgs.state_dict()} if trainer.dgs is not None else {}),
        "resumed_from_epoch": resumed_from,
        "device": str(trainer.device),
        "torch_threads": torch.get_num_threads(),
    }
    save_model(out_dir / "model.pt", trainer.model.cpu(), m.name, meta={"dataset": spec.to_dict(), "result": {
        k: result[k] for k in ("test_accuracy", "spikes_per_sample", "arch", "seed")}})
    write_json(out_dir / "result.json", result, indent=2)
    if trainer.dgs is not None:
        from nasflow.train.dgs import plot_history

        plot_history(trainer.dgs.history, trainer.dgs.initial, out_dir / "dgs.png")
    return result
