"""In-training search strategies: train a relaxed network with architecture parameters, then decode an architecture.

The other kind of strategy (``nasflow.strategies.evolution``) proposes architectures and leaves their evaluation
to someone else. An in-training strategy (DARTS, and later SpikeDHS, DGS, TPS, HNS) instead *is* a training run:
it builds one relaxed network over the whole space (``relax``), updates its weights and architecture parameters
batch by batch (``step``), and reads an architecture off the architecture parameters at the end (``decode``).

``run_in_training`` is the one loop every such strategy shares. It owns what a strategy should not reimplement:
pairing train and validation batches, per-epoch atomic checkpoints that a killed run resumes from with identical
results (every parameter, optimiser state and random generator is restored), the trajectories, and a
``search.json`` in the same layout as the AutoSNN evolutionary search (``schema_version``, ``strategy``,
``best: {arch: "SRB_k5,SCB_k3,...", accuracy, <costs>, costs}``, ``search_seconds``), so reports and the retraining
step read both kinds alike.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from exporters.core.jsonio import SCHEMA_VERSION, write_json
from nasflow.spaces.autosnn import BLOCK_CHOICES, Macro, get_macro
from nasflow.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nasflow.train.trainer import loader_generators, seed_everything

__all__ = [
    "CHECKPOINT_NAME", "BlockSpace", "InTrainingStrategy", "SearchLoaders", "SpaceLike", "autosnn_space",
    "run_in_training",
]

CHECKPOINT_NAME = "intraining.pt"
Arch = tuple[str, ...]
Batch = tuple[torch.Tensor, torch.Tensor]


class SpaceLike(Protocol):
    """What a strategy needs to know of a block search space: the macro backbone (a name or a
    ``nasflow.spaces.autosnn.Macro``) and, per TBD position, the choices."""

    macro: str | Macro
    choices: tuple[str, ...]
    num_blocks: int


class SearchLoaders(Protocol):
    """Training batches update the weights, validation batches the architecture parameters (bi-level split)."""

    train: Iterable[Batch]
    val: Iterable[Batch]


@dataclass(frozen=True)
class BlockSpace:
    """A minimal ``SpaceLike``: an AutoSNN macro with the same block choices at every TBD position."""

    macro: str | Macro
    choices: tuple[str, ...]
    num_blocks: int


def autosnn_space(macro: str = "snn1", choices: Sequence[str] = BLOCK_CHOICES) -> BlockSpace:
    """The AutoSNN block space of ``macro`` (its TBD count from ``nasflow.spaces.autosnn``)."""
    m = get_macro(macro)
    if not choices:
        raise ValueError("a block space needs at least one choice")
    return BlockSpace(macro=m.name, choices=tuple(choices), num_blocks=m.num_blocks)


class InTrainingStrategy(ABC):
    """A strategy that searches by training one relaxed network.

    Life cycle: ``relax(space)`` once (builds the network and its optimisers from the current torch seed), then
    ``step`` per pair of batches, ``decode`` at any time. ``state_dict`` must capture everything ``step`` changes
    (network, architecture parameters, optimiser states, counters), because ``run_in_training`` resumes a killed
    run from it and promises the same result as an uninterrupted run.
    """

    name: str = "in-training"

    @abstractmethod
    def relax(self, space: SpaceLike) -> nn.Module:
        """Build (and keep) the relaxed network of ``space``; it exposes ``arch_parameters()`` and
        ``weight_parameters()`` as disjoint parameter lists."""

    def begin_epoch(self, epoch: int) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Called before each epoch's steps with its 0-based index (learning-rate schedules, warm-up, refreshing
        measured costs). A resumed run calls it for the epoch it continues with, so it must be a function of
        ``epoch`` and the strategy's state alone."""

    @abstractmethod
    def step(self, batch_train: Batch, batch_val: Batch) -> dict[str, float]:
        """One update from a training and a validation batch; returns the values to log (floats)."""

    @abstractmethod
    def decode(self) -> Arch:
        """The architecture the architecture parameters currently select (block names, one per position)."""

    @abstractmethod
    def arch_weights(self) -> list[list[float]]:
        """Per position, the probability of each choice (``softmax(α)``): the trajectory of the search."""

    @abstractmethod
    def evaluate(self, loader: Iterable[Batch]) -> dict[str, Any]:
        """Accuracy and costs (``spikes``, ``synops``, ``macs``, ``neuron_updates`` per sample) of the decoded
        architecture with the weights it inherits from the relaxed network."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The hyper-parameters a result depends on: a checkpoint made with other settings is refused."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Every tensor and counter ``step`` changes (tensors, dicts, lists, numbers, strings only)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` into a strategy on which ``relax`` was already called."""


def _paired(train: Iterable[Batch], val: Iterable[Batch]) -> Iterator[tuple[Batch, Batch]]:
    """Each training batch with the next validation batch; the validation loader restarts when exhausted."""
    val_it = iter(val)
    for batch in train:
        try:
            batch_val = next(val_it)
        except StopIteration:
            val_it = iter(val)
            batch_val = next(val_it)
        yield batch, batch_val


def _rng_state(loaders: SearchLoaders) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(),
            "train": [g.get_state() for g in loader_generators(loaders.train)],
            "val": [g.get_state() for g in loader_generators(loaders.val)]}


def _restore_rng(loaders: SearchLoaders, state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    for key, loader in (("train", loaders.train), ("val", loaders.val)):
        for g, st in zip(loader_generators(loader), state[key]):
            g.set_state(st)


def _describe(space: SpaceLike) -> dict[str, Any]:
    """The space as plain data (checkpoints load ``weights_only``; ``search.json`` takes JSON types only): its
    ``fingerprint()`` when it has one (cell spaces), else the AutoSNN block space's macro and choices."""
    fingerprint = getattr(space, "fingerprint", None)
    if callable(fingerprint):
        return dict(fingerprint())
    return {"macro": get_macro(space.macro).name, "choices": list(space.choices), "num_blocks": int(space.num_blocks)}


def _fingerprint(strategy: InTrainingStrategy, space: SpaceLike, seed: int) -> dict[str, Any]:
    return {"strategy": strategy.name, **_describe(space), "seed": int(seed), "settings": strategy.settings()}


def _mean_logs(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in rows for k in r}
    return {k: sum(r[k] for r in rows if k in r) / sum(1 for r in rows if k in r) for k in sorted(keys)}


def _resume(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state = load_checkpoint(path)
    if state.get("kind") != "in-training":
        raise CheckpointError(f"{path} is not an in-training search checkpoint (kind={state.get('kind')!r})")
    theirs = state.get("fingerprint", {})
    diff = sorted(k for k in set(fingerprint) | set(theirs) if theirs.get(k) != fingerprint.get(k))
    if diff:
        raise CheckpointError(f"{path} belongs to a different search ({', '.join(diff)} differ); use a fresh out_dir")
    return state


def run_in_training(
    strategy: InTrainingStrategy,
    space: SpaceLike,
    loaders: SearchLoaders,
    out_dir: str | Path,
    epochs: int,
    seed: int = 0,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) an in-training search for ``epochs`` epochs; returns the content of ``search.json``.

    ``out_dir`` holds ``intraining.pt`` (rewritten atomically after every epoch) and ``search.json``. Started
    again on the same directory, the run continues after the last finished epoch; ``epochs`` may then be larger
    than before (a 1-epoch run resumed to 2 epochs ends exactly where a 2-epoch run does, so nothing in a
    strategy may depend on the total epoch count). ``extra`` is copied into ``search.json`` (dataset, config).
    Each trajectory row holds the epoch's mean logged values, ``softmax(α)`` per position, the decoded
    architecture and its validation accuracy and spikes with inherited weights.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHECKPOINT_NAME
    seed_everything(seed)
    strategy.relax(space)
    fingerprint = _fingerprint(strategy, space, seed)
    state = _resume(path, fingerprint)
    start, seconds, trajectory = 0, 0.0, []
    if state is not None:
        strategy.load_state_dict(state["strategy"])
        _restore_rng(loaders, state["rng"])
        start, seconds, trajectory = int(state["epoch"]), float(state["seconds"]), list(state["trajectory"])
    bar = tqdm(total=epochs, initial=min(start, epochs), desc=f"search ({strategy.name})", disable=not progress)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        strategy.begin_epoch(epoch)
        logs = [strategy.step(bt, bv) for bt, bv in _paired(loaders.train, loaders.val)]
        if not logs:
            raise ValueError("the training loader is empty: no batches to search with")
        arch = strategy.decode()
        decoded = strategy.evaluate(loaders.val)
        seconds += time.perf_counter() - t0
        trajectory.append({
            "epoch": epoch + 1, **_mean_logs(logs), "arch": ",".join(arch), "arch_weights": strategy.arch_weights(),
            "decoded_val_accuracy": decoded["accuracy"], "decoded_spikes": decoded["costs"]["spikes"],
            "seconds": seconds,
        })
        save_checkpoint(path, {
            "kind": "in-training", "fingerprint": fingerprint, "epoch": epoch + 1, "seconds": seconds,
            "trajectory": trajectory, "strategy": strategy.state_dict(), "rng": _rng_state(loaders),
        })
        bar.update(1)
        bar.set_postfix(arch=",".join(arch))
    bar.close()
    arch = strategy.decode()
    final = strategy.evaluate(loaders.val)
    costs = dict(final["costs"])
    out = {
        "schema_version": SCHEMA_VERSION,
        "strategy": strategy.name,
        "space": _describe(space),
        "settings": strategy.settings(),
        "seed": seed,
        "epochs": max(epochs, start),
        "best": {"arch": ",".join(arch), "accuracy": final["accuracy"], **costs, "costs": costs,
                 "arch_weights": strategy.arch_weights()},
        "trajectory": trajectory,
        "search_seconds": seconds,
        **(extra or {}),
    }
    write_json(out_dir / "search.json", out, indent=2)
    return out
