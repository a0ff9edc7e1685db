"""SNASNet search run: score N random cells without training, keep the best, retrain it, count its spikes.

Run directory: ``config.yaml`` (resolved), ``journal.jsonl`` (every scored candidate, fsynced; a killed
search run again with the same config replays it and scores only new candidates), ``search.json``
and, when ``epochs > 0``, ``retrain/`` (``metrics.jsonl``, ``checkpoint.pt`` for resume, ``model.pt``).

The search is the shared runner (``nasflow.strategies.runner.run_search``) with ``SNASNetSpace``,
``random_search`` (budget = ``candidates``) and ``SAHDEvaluator``: candidates are the first N distinct
canonical cells drawn by ``sample_cell`` from ``random.Random(seed)``; candidate ``i`` is initialised
and scored with torch seed ``seed·1,000,003 + i``, so every score is reproducible and independent of resume.
Scoring (REFERENCE.md §3): random init, train mode, batches
of ``score_batch`` samples from the training split, ``score_batches`` of them, mean ``log|det K|``.

Cost-aware variant (not in the paper, which optimises accuracy only): with a cost function
``cost_fn(model, activity_summary) -> float`` (the shape AutoSNN's evaluator uses; ``cost="spikes"``
picks spikes per sample), the ranking uses ``score + λ·B·log(cost / cost_avg)``, λ <= 0, B the scoring
batch size and ``cost_avg`` the mean cost of all candidates. That is ``log det`` of the kernel scaled by
``(cost/cost_avg)^λ``: AutoSNN's fitness discount applied to each of the kernel's B eigenvalues.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from exporters.core.jsonio import SCHEMA_VERSION, write_json
from nasflow.config import ConfigError, from_dict, to_dict
from nasflow.data import make_loaders
from nasflow.evaluators.sahd import SAHDConfig, finite_or_none
from nasflow.evaluators.sahd_eval import SAHDEvaluator
from nasflow.models import save_model
from nasflow.snn.blocks import NeuronSpec
from nasflow.spaces.snasnet import CELL_KINDS, REDUCTIONS, SNASNet, SNASNetSpace
from nasflow.strategies import random_search
from nasflow.strategies.ray_executor import open_executor
from nasflow.strategies.runner import run_search
from nasflow.train.trainer import TrainConfig, Trainer, evaluate, resolve_device, seed_everything

__all__ = [
    "SNASNetSearchConfig",
    "build_candidate",
    "discounted_score",
    "retrain_cell",
    "run_snasnet_search",
    "sample_candidates",
    "scoring_batches",
    "snasnet_space",
    "spikes_cost",
    "take_batches",
]

CostFn = Callable[[nn.Module, dict[str, Any]], float]


@dataclass
class SNASNetSearchConfig:
    """Everything an SNASNet search needs (saved resolved as ``config.yaml``)."""

    dataset: str = "digits"
    data_dir: str | None = None
    cell: str = "backward"  # backward (forward + backward edges) | forward
    candidates: int = 5000
    channels: int = 16  # the paper: 256 (CIFAR-10), 128 (CIFAR-100, Tiny-ImageNet)
    steps: int = 8  # the paper: 5 or 8
    neuron: NeuronSpec | None = None  # None: SNASNet's own LIF (SNASNET_NEURON)
    reduction: str = "code"  # code (BN-LIF-conv-BN) | paper (conv-BN-LIF)
    second_pool: int = 0  # 0: 4 for inputs of 32 pixels or more, else 2
    classifier_bn: bool = True  # BN between fc1 and its LIF (not in the paper; see SNASNet); False: paper head
    score_batch: int = 256
    score_batches: int = 2
    kernel: str = "sahd"  # sahd | hamming
    normalisation: str = "paper"  # paper | code
    combine: str = "sum"  # sum | mean
    alpha: float = 0.5
    eps: float = 1e-6
    # Sample only cells whose network exports to NIR and runs on Lava (what you search is what you deploy):
    # backward edges export as one-step NIR Delays, so only loops of skip/pool ops alone (no neuron holds their
    # state, no Lava process can) are skipped: 7% of the sampler's draws (benchmarks/snasnet_deployable.py).
    deployable_only: bool = True
    cost: str = "none"  # none | spikes (or pass cost_fn to run_snasnet_search)
    lam: float = 0.0
    epochs: int = 40  # retraining epochs of the winner; 0 skips retraining
    lr: float = 0.5  # digits (short runs); the paper: 0.2 (CIFAR-10), 0.1 (CIFAR-100, Tiny-ImageNet)
    weight_decay: float = 5e-4
    batch_size: int = 64
    augment: str = "standard"  # none | standard (random crop + flip where the dataset allows)
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    # where cells are scored: local | ray (nasflow.strategies.ray_executor; not in the journal header)
    executor: str = "local"
    ray_address: str | None = None
    workers: int = 2
    threads_per_worker: int = 1

    def __post_init__(self) -> None:
        checks = {
            "executor": (self.executor in ("local", "ray"), "'local' or 'ray'"),
            "workers": (self.workers >= 1, ">= 1"),
            "threads_per_worker": (self.threads_per_worker >= 1, ">= 1"),
            "cell": (self.cell in CELL_KINDS, f"one of {CELL_KINDS}"),
            "reduction": (self.reduction in REDUCTIONS, f"one of {REDUCTIONS}"),
            "candidates": (self.candidates >= 1, ">= 1"),
            "score_batch": (self.score_batch >= 2, ">= 2 (a kernel compares samples)"),
            "score_batches": (self.score_batches >= 1, ">= 1"),
            "epochs": (self.epochs >= 0, ">= 0"),
            "lam": (self.lam <= 0, "<= 0 (it discounts cost)"),
            "cost": (self.cost in ("none", "spikes"), "'none' or 'spikes'"),
            "second_pool": (self.second_pool >= 0, ">= 0 (0 picks it from the input size)"),
        }
        for key, (ok, want) in checks.items():
            if not ok:
                raise ConfigError(f"{key} must be {want}, got {getattr(self, key)!r}")
        SAHDConfig(self.kernel, self.normalisation, self.combine, self.alpha, self.eps)

    @property
    def sahd(self) -> SAHDConfig:
        return SAHDConfig(self.kernel, self.normalisation, self.combine, self.alpha, self.eps)


def spikes_cost(model: nn.Module, summary: dict[str, Any]) -> float:
    """Spikes per sample of the scoring pass (the default cost of the cost-aware variant)."""
    return float(summary["spikes_per_sample"])


def discounted_score(score: float, cost: float, cost_avg: float, lam: float, batch: int) -> float:
    """``score + λ·B·log(cost / cost_avg)``: log det of the kernel scaled by ``(cost/cost_avg)^λ``."""
    if lam == 0 or not math.isfinite(score):
        return score
    if cost <= 0 or cost_avg <= 0:
        return math.inf if lam < 0 and cost <= 0 < cost_avg else score
    return score + lam * batch * math.log(cost / cost_avg)


def snasnet_space(cfg: SNASNetSearchConfig) -> SNASNetSpace:
    """The search space a config describes (cell kind, deployable filter, macro options)."""
    return SNASNetSpace(cfg.cell, deployable_only=cfg.deployable_only, reduction=cfg.reduction,
                        second_pool=cfg.second_pool, classifier_bn=cfg.classifier_bn)


def _check_size(n: int, kind: str, space: SNASNetSpace) -> None:
    if n > space.size():
        raise ConfigError(f"candidates={n} exceeds the {space.size()} matrices of the {kind} cell space; ask for fewer")


def sample_candidates(n: int, kind: str, seed: int, deployable_only: bool = False) -> list[str]:
    """The first ``n`` distinct canonical cells of the seeded sampler (matrix notation); with
    ``deployable_only`` only cells whose network exports to NIR and runs on Lava count.

    These are the candidates ``run_snasnet_search`` scores, in order (its random search draws the same way).
    """
    space = SNASNetSpace(kind, deployable_only=deployable_only)
    _check_size(n, kind, space)
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    misses = 0
    while len(seen) < n:
        try:
            cell = space.sample(rng)
        except ValueError as err:
            raise ConfigError(f"only {len(seen)} {kind} cells found: {err}") from None
        if cell in seen:
            misses += 1
            if misses > 200 * n:
                raise ConfigError(_too_few(kind, len(seen), misses, n))
            continue
        seen[cell] = None
    return list(seen)


def _too_few(kind: str, found: int, misses: int | None, n: int) -> str:
    draws = f" in {misses} repeated draws" if misses is not None else ""
    return (f"the {kind} cell space gave only {found} distinct cells{draws}; ask for fewer than {n} candidates "
            f"(the sampler draws from {SNASNetSpace(kind).size()} matrices)")


def build_candidate(cfg: SNASNetSearchConfig, cell: str, in_shape, num_classes: int) -> SNASNet:
    """The macro network of one candidate cell under ``cfg``."""
    return snasnet_space(cfg).build(  # type: ignore[return-value]
        cell, in_shape=in_shape, num_classes=num_classes, channels=cfg.channels, steps=cfg.steps,
        neuron=cfg.neuron)


def scoring_batches(cfg: SNASNetSearchConfig) -> tuple[list[torch.Tensor], Any]:
    """The fixed input batches every candidate is scored on (training split, seeded order)."""
    loaders = make_loaders(cfg.dataset, cfg.score_batch, data_dir=cfg.data_dir, seed=cfg.seed)
    if loaders.spec.kind != "static":
        raise ConfigError(f"dataset {cfg.dataset!r} is an event dataset; the SNASNet search runs static data here")
    return take_batches(loaders.train, cfg.score_batches, cfg.dataset), loaders.spec


def take_batches(loader, count: int, name: str) -> list[torch.Tensor]:
    """The inputs of the first ``count`` batches of ``loader``; a clear error when it holds under 2 samples."""
    batches = []
    for x, _ in loader:
        batches.append(x)
        if len(batches) == count:
            break
    if not batches or batches[0].shape[0] < 2:
        n = sum(b.shape[0] for b in batches)
        raise ValueError(f"dataset {name!r}: its training split has {n} sample(s); SAHD scoring needs at least 2")
    return batches


def _header(cfg: SNASNetSearchConfig, spec) -> dict[str, Any]:
    return {
        "dataset": cfg.dataset, "in_shape": list(spec.image_shape), "channels": cfg.channels, "steps": cfg.steps,
        "second_pool": snasnet_space(cfg).second_pool_for(spec.image_shape), "seed": cfg.seed,
        "neuron": cfg.neuron.to_dict() if cfg.neuron is not None else None,
        "classifier_bn": cfg.classifier_bn,
        "score_batch": cfg.score_batch, "score_batches": cfg.score_batches, "sahd": cfg.sahd.to_dict(),
        "cost": cfg.cost,
    }


def _rank(cfg: SNASNetSearchConfig, cells: list[str], results, ranked_cost: bool) -> tuple[list[dict], dict | None]:
    rows = []
    for cell, (score, costs) in zip(cells, results):
        rows.append({"cell": cell, "score": finite_or_none(score), **costs})
    key = "score"
    if ranked_cost:
        finite = [r["cost"] for r in rows if r.get("cost") is not None and r["cost"] > 0]
        cost_avg = sum(finite) / len(finite) if finite else 0.0
        for r, (score, _) in zip(rows, results):
            r["cost_avg"] = cost_avg
            r["discounted_score"] = finite_or_none(
                discounted_score(score, r.get("cost", 0.0), cost_avg, cfg.lam, cfg.score_batch)
            )
        key = "discounted_score"
    valid = [r for r in rows if r[key] is not None]
    best = max(valid, key=lambda r: r[key]) if valid else None
    return rows, best


def retrain_cell(cfg: SNASNetSearchConfig, cell: str, out_dir: Path, device,
                 temporal: str | None = None) -> dict[str, Any]:
    """Train ``cell`` with SNASNet's recipe (SGD, cosine schedule, cross-entropy) in ``out_dir/retrain`` (resuming
    there), evaluate it on the test set; returns the ``retrain`` entry of search.json. ``temporal``: per-layer
    dynamics or neuron types found by TPS/HNS (``nasflow.snn.tps.TemporalArch``), written into the network."""
    loaders = make_loaders(cfg.dataset, cfg.batch_size, data_dir=cfg.data_dir, seed=cfg.seed,
                           augment=False if cfg.augment == "none" else cfg.augment, eval_batch_size=512)
    spec = loaders.spec
    seed_everything(cfg.seed)
    model = build_candidate(cfg, cell, spec.image_shape, spec.num_classes)
    if temporal:
        from nasflow.snn.tps import apply_temporal

        apply_temporal(model, temporal)
        model.config = {**model.config, "temporal": temporal}
    train_cfg = TrainConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer="sgd", lr=cfg.lr, momentum=0.9,
        weight_decay=cfg.weight_decay, schedule="cosine", loss="ce", seed=cfg.seed, device=str(device),
        progress=cfg.progress,
    )
    run_dir = out_dir / "retrain"
    t0 = time.perf_counter()
    Trainer(model, train_cfg, loaders.train, None, run_dir, num_classes=spec.num_classes).fit()
    ev = evaluate(model, loaders.test, device)
    save_model(run_dir / "model.pt", model.cpu(), "snasnet", meta={"cell": cell, "test_accuracy": ev["accuracy"]})
    keys = ("spikes_per_sample", "synops_per_sample", "macs_per_sample", "neuron_updates_per_sample")
    return {
        "cell": cell, "epochs": cfg.epochs, "test_accuracy": ev["accuracy"], "test_samples": ev["samples"],
        **{k: ev[k] for k in keys},
        "firing_rates": {n: r["firing_rate"] for n, r in ev["layers"].items() if r["kind"] == "neuron"},
        "train_seconds": time.perf_counter() - t0, "model": str(run_dir / "model.pt"),
    }


def run_snasnet_search(
    cfg: SNASNetSearchConfig, out_dir: str | Path, cost_fn: CostFn | None = None
) -> dict[str, Any]:
    """Run (or resume) one SNASNet search; returns the content of ``search.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    device = resolve_device(cfg.device)
    if cost_fn is None and cfg.cost == "spikes":
        cost_fn = spikes_cost
    space = snasnet_space(cfg)
    _check_size(cfg.candidates, cfg.cell, space)
    batches, spec = scoring_batches(cfg)
    build = functools.partial(build_candidate, cfg, in_shape=spec.image_shape, num_classes=spec.num_classes)
    scorer = SAHDEvaluator(build, batches, cfg.sahd, cfg.seed, device, cost_fn)
    header = {**_header(cfg, spec), "cost_fn": getattr(cost_fn, "__name__", None) if cost_fn else None}
    with open_executor(cfg.executor, out_dir, cfg.ray_address, cfg.workers, cfg.threads_per_worker) as executor:
        run = run_search(space, random_search, scorer, lambda value, costs: value, out_dir, header,
                         budget=cfg.candidates, seed=cfg.seed,
                         progress=f"snasnet {cfg.cell} ({cfg.sahd.name})" if cfg.progress else False,
                         executor=executor)
    if len(run.evaluated) < cfg.candidates:
        raise ConfigError(_too_few(cfg.cell, len(run.evaluated), None, cfg.candidates))
    cells = [c.arch for c in run.evaluated]
    rows, best = _rank(cfg, cells, [(c.value, c.costs) for c in run.evaluated], cost_fn is not None)
    if best is None:
        raise ValueError(f"every one of the {len(cells)} candidates has a singular kernel (score -inf)")
    search_seconds, fresh = run.seconds, run.fresh
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "space": f"snasnet-{cfg.cell}",
        "score": cfg.sahd.name,
        "lambda": cfg.lam,
        "cost": None if cost_fn is None else getattr(cost_fn, "__name__", "cost_fn"),
        "candidates": rows,
        "best": best,
        "journal_hits": run.journal_hits,
        "search_seconds": search_seconds,
        "seconds_per_candidate": search_seconds / fresh if fresh else None,
        "retrain": None,
        "config": to_dict(cfg),
    }
    write_json(out_dir / "search.json", out, indent=2)
    if cfg.epochs > 0:
        out["retrain"] = retrain_cell(cfg, best["cell"], out_dir, device)
        write_json(out_dir / "search.json", out, indent=2)
    return out


def search_config_from_args(base: dict[str, Any]) -> SNASNetSearchConfig:
    """Build a checked config from a flat mapping (CLI flags, YAML)."""
    return from_dict(SNASNetSearchConfig, base)
