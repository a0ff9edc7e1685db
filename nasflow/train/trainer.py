"""BPTT trainer: surrogate-gradient training with logs, checkpoints and resume.

A run directory holds ``metrics.jsonl`` (one JSON line per epoch), ``checkpoint.pt`` (latest
state, rewritten atomically after every epoch) and, at the end, ``model.pt``. A killed run
started again with the same directory continues from the last finished epoch. The checkpoint
holds the state of every random generator (torch's and the loaders'), so a resumed run draws
the same batches and augmentations as an uninterrupted one and ends with the same weights.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from nasflow.snn.activity import ActivityMonitor
from nasflow.snn.neurons import reset_states
from nasflow.train.checkpoint import load_checkpoint, save_checkpoint
from nasflow.train.tasks import ClassificationTask, Task

__all__ = [
    "TrainConfig", "Trainer", "evaluate", "loader_generators", "resolve_device", "seed_everything", "spike_loss",
]


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (every field is a config/CLI key)."""

    epochs: int = 40
    batch_size: int = 64
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | none
    loss: str = "mse"  # mse (rate vs one-hot, AutoSNN) | ce (cross-entropy on the mean output)
    seed: int = 0
    device: str = "auto"
    grad_clip: float = 0.0
    progress: bool = True
    dgs: list[str] = field(default_factory=list)  # neuron layers whose surrogate temperature DGS searches
    dgs_every: int = 5  # DGS runs before every dgs_every-th epoch (not before the first)
    dgs_batches: int = 200  # at most this many batches per DGS search

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "optimizer": self.optimizer in ("adam", "sgd"),
            "schedule": self.schedule in ("cosine", "none"),
            "loss": self.loss in ("mse", "ce"),
            "weight_decay": self.weight_decay >= 0,
            "dgs_every": self.dgs_every >= 1,
            "dgs_batches": self.dgs_batches >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training config value(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training config key(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was requested but no CUDA device is available; use --device cpu")
    return device


def loader_generators(loader: Any) -> list[torch.Generator]:
    """Generators that drive a loader's shuffling and augmentation (loader, sampler, dataset)."""
    found: list[torch.Generator] = []
    while hasattr(loader, "loader"):  # unwrap adapters such as TimeFirst
        loader = loader.loader
    for owner in (loader, getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def spike_loss(kind: str, output: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``mse``: MSE between output firing rates and one-hot targets; ``ce``: cross-entropy."""
    return ClassificationTask(kind, num_classes).loss(output, target)


def _add(sums: dict[str, float], tally: dict[str, float]) -> None:
    for k, v in tally.items():
        sums[k] = sums.get(k, 0.0) + v


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device, monitor: bool = True,
             task: Task | None = None) -> dict[str, Any]:
    """The task's metrics (classification accuracy by default) and activity summary of ``model`` over ``loader``
    (eval mode, states reset)."""
    task = task or ClassificationTask()
    model.eval()
    total = 0
    sums: dict[str, float] = {}
    mon = ActivityMonitor(model, enabled=monitor)
    with mon:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            reset_states(model)
            _add(sums, task.tally(model(x), y))
            total += len(y)
    if total == 0:
        raise ValueError("evaluation loader is empty: no samples to evaluate")
    return {**task.metrics(sums), "samples": total, **(mon.summary() if monitor else {})}


class Trainer:
    """Train ``model`` with BPTT; ``fit()`` runs (or resumes) the epochs and returns the final metrics."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_loader: Iterable,
        test_loader: Iterable | None = None,
        out_dir: str | Path | None = None,
        num_classes: int = 10,
        extra_state: dict[str, Any] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        task: Task | None = None,
    ) -> None:
        self.config = config
        self.task = task or ClassificationTask(config.loss, num_classes)
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.train_loader, self.test_loader = train_loader, test_loader
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.num_classes = num_classes
        self.extra_state = extra_state or {}
        self.on_epoch = on_epoch
        self.optimizer = self._make_optimizer()
        self.scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs)
            if config.schedule == "cosine"
            else None
        )
        self.epoch = 0
        self.dgs = None
        if config.dgs:
            from nasflow.train.dgs import DGS

            self.dgs = DGS(self.model, config.dgs, batches=config.dgs_batches)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    # -- checkpoints ---------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / "checkpoint.pt" if self.out_dir else None

    def _save(self) -> None:
        if self.checkpoint_path is None:
            return
        save_checkpoint(
            self.checkpoint_path,
            {
                "kind": "train-state",
                "epoch": self.epoch,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "train_config": asdict(self.config),
                "rng": self._rng_states(),
                "dgs": self.dgs.state_dict() if self.dgs is not None else None,
                **self.extra_state,
            },
        )

    def try_resume(self) -> bool:
        """Load ``checkpoint.pt`` from the run directory if there is one; True when resumed."""
        path = self.checkpoint_path
        if path is None or not path.exists():
            return False
        state = load_checkpoint(path, map_location=self.device)
        if state.get("kind") != "train-state":
            raise ValueError(f"{path} is not a training-state checkpoint (kind={state.get('kind')!r})")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise ValueError(
                f"{path} holds weights of a different model: {str(err).splitlines()[0]}; "
                "use a fresh --out directory for a different architecture"
            ) from None
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        if self.dgs is not None and state.get("dgs"):
            self.dgs.load_state_dict(state["dgs"])
        self._restore_rng(state.get("rng"))
        return True

    def _generators(self) -> list[torch.Generator]:
        return loader_generators(self.train_loader)

    def _rng_states(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state(), "loaders": [g.get_state() for g in self._generators()]}

    def _restore_rng(self, states: dict[str, Any] | None) -> None:
        # Restoring every generator makes a resumed run draw the same batches as an uninterrupted one.
        if not states:
            return
        torch.set_rng_state(states["torch"])
        for g, st in zip(self._generators(), states.get("loaders", [])):
            g.set_state(st)

    # -- training ------------------------------------------------------------------------
    def _log(self, row: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def train_epoch(self) -> dict[str, float]:
        c, model = self.config, self.model
        model.train()
        total_loss = seen = 0.0
        sums: dict[str, float] = {}
        mon = ActivityMonitor(model)
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{c.epochs}", leave=False, disable=not c.progress)
        with mon:
            for x, y in bar:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                reset_states(model)
                out = model(x)
                loss = self.task.loss(out, y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training loss became {loss.item()} at epoch {self.epoch + 1}; lower the learning rate"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                self.optimizer.step()
                total_loss += float(loss) * len(y)
                _add(sums, self.task.tally(out.detach(), y))
                seen += len(y)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{self.task.metrics(sums)['accuracy']:.3f}")
        if seen == 0:
            raise ValueError("training loader is empty: no samples to train on")
        return {
            "train_loss": total_loss / seen,
            **{f"train_{k}": v for k, v in self.task.metrics(sums).items()},
            "train_spikes_per_sample": mon.summary()["spikes_per_sample"],
        }

    def _dgs_round(self) -> dict[str, Any] | None:
        """A DGS round before every ``dgs_every``-th epoch (``nasflow.train.dgs``), else nothing."""
        c = self.config
        if self.dgs is None or self.epoch == 0 or self.epoch % c.dgs_every:
            return None
        return self.dgs.search(self.train_loader, self.task.loss,
                               self.optimizer.param_groups[0]["lr"], self.device, self.epoch)

    def fit(self, resume: bool = True) -> dict[str, Any]:
        """Run the remaining epochs; returns the last epoch's metrics row."""
        if resume:
            self.try_resume()
        elif self.epoch == 0:
            seed_everything(self.config.seed)
        c = self.config
        row: dict[str, Any] = {}
        epochs = tqdm(total=c.epochs, initial=self.epoch, desc="training", disable=not c.progress)
        while self.epoch < c.epochs:
            t0 = time.perf_counter()
            dgs = self._dgs_round()
            row = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **self.train_epoch()}
            if self.dgs is not None:
                row["dgs_temperatures"] = self.dgs.temperatures()
                if dgs:
                    row["dgs_search"] = dgs
            if self.scheduler:
                self.scheduler.step()
            if self.test_loader is not None:
                ev = evaluate(self.model, self.test_loader, self.device, task=self.task)
                row.update({f"test_{k}": ev[k] for k in self.task.names},
                           test_spikes_per_sample=ev["spikes_per_sample"])
            row["seconds"] = time.perf_counter() - t0
            self.epoch += 1
            self._save()
            self._log(row)
            if self.on_epoch:
                self.on_epoch(row)
            epochs.update(1)
            epochs.set_postfix({k: f"{v:.4g}" for k, v in row.items() if "accuracy" in k})
            if not math.isfinite(row["train_loss"]):
                break
        epochs.close()
        return row
