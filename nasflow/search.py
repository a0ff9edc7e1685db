"""AutoSNN search run: supernet training (or reuse) → evolutionary / random search → search.json.

Run directory: ``config.yaml`` (resolved), ``supernet.pt`` (weights, search-space fingerprint and the mean
costs of sampled paths), ``journal.jsonl`` (every evaluated candidate, so a killed search
resumes without re-evaluating) and ``search.json``. A supernet is reused for new λ, cost or
budget choices with ``supernet_dir``.
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporters.core.jsonio import SCHEMA_VERSION, write_json
from hwmodels import load_profile
from nasflow.config import ConfigError, from_dict, to_dict
from nasflow.data import make_loaders
from nasflow.evaluators.fitness import Fitness, parse_budgets
from nasflow.evaluators.fixed_point import FIXED_POINT_COSTS, FixedPointSearchCost, is_fixed_point_cost
from nasflow.evaluators.hw_cost import HW_METRICS, HardwareSearchCost, is_hardware_cost, split_cost
from nasflow.evaluators.supernet_eval import SupernetEvaluator
from nasflow.snn.blocks import NeuronSpec
from nasflow.spaces.autosnn import MACROS
from nasflow.spaces.autosnn_space import AutoSNNSpace
from nasflow.strategies import EvolutionConfig, evolutionary_search, random_search
from nasflow.strategies.nsga2 import (
    VALUE,
    NSGA2Config,
    front,
    nsga2_search,
    parse_objectives,
    parse_pick,
    pick,
)
from nasflow.strategies.ray_executor import open_executor
from nasflow.strategies.runner import run_search
from nasflow.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nasflow.train.supernet import AutoSNNSupernet, train_supernet
from nasflow.train.trainer import resolve_device, seed_everything

__all__ = ["AutoSNNSearchConfig", "run_autosnn_search"]
SEARCH_COSTS = ("spikes", "synops", "macs", "neuron_updates")


@dataclass
class AutoSNNSearchConfig:
    """Everything an AutoSNN search needs (saved resolved as ``config.yaml``)."""

    dataset: str = "digits"
    data_dir: str | None = None
    macro: str = "snn1"  # snn1 | snn2 | snn3 | snn4 | snn1-8tbd (nasflow.spaces.autosnn.MACROS)
    channels: int = 16
    steps: int = 8
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    supernet_epochs: int = 80
    # The paper trains 600 CIFAR-10 epochs at Adam 1e-3; the short digits default needs a larger step.
    supernet_lr: float = 5e-3
    supernet_schedule: str = "cosine"  # the paper: none
    batch_size: int = 32
    augment: str = "standard"  # none | standard | cutout (the paper: cutout)
    lam: float = -0.08
    cost: str = "spikes"
    fitness_mode: str = "exponential"
    budgets: dict[str, float] = field(default_factory=dict)
    chip: str = "loihi"  # chip of hardware budgets (cores=..., energy=...) when the cost names none
    dt: float = 1e-3  # seconds per step in exported NIR graphs (hardware and fixed-point costs)
    # record fixed_accuracy, fixed_acc_drop and fixed_spikes of every candidate on Lava's fixed point (lava-emu);
    # on by itself when the cost or a budget names one
    fixed_point: bool = False
    # evolution | random | nsga2 | darts (in-training: supernet_epochs, supernet_lr, arch_lr)
    strategy: str = "evolution"
    # nsga2: objectives (accuracy maximised, costs minimised; "" = accuracy and the cost), population, and the
    # rule that picks the deployed point of the front (knee | max-accuracy | min-OBJECTIVE | accuracy>=X)
    objectives: str = ""
    population: int = 20
    pick: str = "knee"
    # where candidates are evaluated: local (this process) | ray (workers on a Ray cluster; address None starts
    # a local one); not part of the journal header, so a search may move between executors and resume
    executor: str = "local"
    ray_address: str | None = None
    workers: int = 2
    threads_per_worker: int = 1
    arch_lr: float = 3e-4  # darts: Adam step of the architecture weights (first-order DARTS)
    evaluations: int = 200
    rounds: int = 20
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in ("evolution", "random", "nsga2", "darts"):
            raise ConfigError(f"strategy must be 'evolution', 'random', 'nsga2' or 'darts', got {self.strategy!r}")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"executor must be 'local' or 'ray', got {self.executor!r}")
        if self.workers < 1 or self.threads_per_worker < 1:
            raise ConfigError("workers and threads_per_worker must be at least 1")
        if self.strategy == "darts" and (self.cost != "spikes" or self.budgets or self.fixed_point):
            raise ConfigError(f"strategy 'darts' prices spikes only in its architecture loss: set cost to 'spikes', "
                              f"no budgets and no fixed_point (got cost={self.cost!r}, budgets={self.budgets})")
        if self.evaluations < 1 or self.supernet_epochs < 0:
            raise ConfigError("evaluations must be >= 1 and supernet_epochs >= 0")
        if self.macro not in MACROS:
            raise ConfigError(f"unknown macro {self.macro!r}; choose one of {', '.join(MACROS)}")
        if self.lam > 0:
            raise ConfigError(f"lam: the fitness exponent λ must be <= 0 (it discounts cost), got {self.lam}")
        if self.fitness_mode not in ("exponential", "linear"):
            raise ConfigError(f"fitness_mode must be 'exponential' or 'linear', got {self.fitness_mode!r}")
        self.budgets = {self._budget_key(k): float(v) for k, v in self.budgets.items()}
        if self.cost in ("fixed_accuracy", "fixed_acc_drop"):
            raise ConfigError(f"cost {self.cost!r} is an accuracy, not a cost the fitness can discount by; limit it "
                              f"with a budget (fixed_acc_drop=0.01) or use cost fixed_spikes")
        if "fixed_accuracy" in self.budgets:
            raise ConfigError("budgets are upper limits; bound the fixed-point loss with fixed_acc_drop=N instead of "
                              "fixed_accuracy")
        self.objectives = ",".join(self.objective_list())
        if self.strategy == "nsga2":
            try:
                NSGA2Config(objectives=self.objective_list(), population=self.population)
            except ValueError as err:
                raise ConfigError(f"objectives/population: {err}") from None
            if VALUE not in self.objective_list():
                raise ConfigError(f"objectives {self.objectives!r}: include accuracy (what the front trades off)")
            try:
                parse_pick(self.pick, self.objective_list())
            except ValueError as err:
                raise ConfigError(str(err)) from None
        self.fixed_point = self.fixed_point or any(map(is_fixed_point_cost, (self.cost, *self.budgets)))
        for key in (self.cost, *self.budgets, *[o for o in self.objective_list() if o != VALUE]):
            metric, chip = split_cost(key)
            if key in SEARCH_COSTS or key in FIXED_POINT_COSTS:
                continue
            if metric not in HW_METRICS or chip is None:
                raise ConfigError(
                    f"unknown cost {key!r}; use one of {', '.join(SEARCH_COSTS)}, fixed_spikes, fixed_acc_drop (a "
                    f"budget) or a hardware cost "
                    f"{'|'.join(HW_METRICS)}:CHIP such as energy:loihi (chips: nasflow hw --list-chips)")
            try:
                load_profile(chip)
            except ValueError as err:
                raise ConfigError(f"cost {key!r}: {err}") from None

    def objective_list(self) -> tuple[str, ...]:
        """NSGA-II's objectives: as configured, else accuracy and the cost."""
        return parse_objectives(self.objectives) if self.objectives else (VALUE, self.cost)

    def _budget_key(self, key: str) -> str:
        """``cores`` → ``cores:<chip>``: a hardware budget is measured on the cost's chip (else ``chip``)."""
        if key in HW_METRICS:
            _, cost_chip = split_cost(self.cost)
            return f"{key}:{cost_chip or self.chip}"
        return key

    def hardware_chips(self) -> list[str]:
        """Chips whose hardware model the fitness or a budget needs."""
        keys = (self.cost, *self.budgets, *(self.objective_list() if self.strategy == "nsga2" else ()))
        chips = {split_cost(k)[1] for k in keys if is_hardware_cost(k)}
        return sorted(c for c in chips if c)


def _space_fingerprint(cfg: AutoSNNSearchConfig, in_shape, num_classes: int) -> dict[str, Any]:
    """What a supernet checkpoint must match: the space's fingerprint plus the network's sizes."""
    return {
        **AutoSNNSpace(cfg.macro).fingerprint(), "dataset": cfg.dataset,
        "in_shape": list(in_shape), "num_classes": num_classes, "channels": cfg.channels, "steps": cfg.steps,
        "neuron": cfg.neuron.to_dict(), "seed": cfg.seed,
    }


def _journal_header(cfg: AutoSNNSearchConfig, spec) -> dict[str, Any]:
    header = _space_fingerprint(cfg, spec.image_shape, spec.num_classes)
    if cfg.hardware_chips():  # journaled hardware costs hold only for these chips (and dt)
        header["hardware_chips"] = cfg.hardware_chips()
    if cfg.hardware_chips() or cfg.fixed_point:
        header["dt"] = cfg.dt
    if cfg.fixed_point:  # journaled entries carry the fixed-point costs
        header["fixed_point"] = "lava-emu"
    return header


def _supernet(cfg, spec, loaders, out_dir: Path, supernet_dir: Path | None, device) -> tuple[AutoSNNSupernet, dict]:
    fingerprint = _space_fingerprint(cfg, spec.image_shape, spec.num_classes)
    seed_everything(cfg.seed)  # before the supernet's weights are drawn; a resumed run restores its own RNG states
    net = AutoSNNSupernet(
        macro=cfg.macro, in_shape=spec.image_shape, num_classes=spec.num_classes, channels=cfg.channels,
        steps=cfg.steps, neuron=cfg.neuron,
    )
    path = (supernet_dir or out_dir) / "supernet.pt"
    if supernet_dir is not None and not path.exists():
        raise CheckpointError(f"--supernet {supernet_dir} holds no supernet.pt; run a search there first")
    state = load_checkpoint(path) if path.exists() else None
    if state is not None:
        if state.get("kind") != "supernet":
            raise CheckpointError(f"{path} is not a supernet checkpoint (kind={state.get('kind')!r})")
        theirs = state.get("fingerprint", {})
        diff = sorted(k for k in fingerprint if k != "seed" and theirs.get(k) != fingerprint[k])
        if diff:
            raise CheckpointError(f"{path} was trained for a different search space ({', '.join(diff)} differ)")
        net.load_state_dict(state["state_dict"])
        if state.get("complete"):
            return net, state["cost_avg"]
    if supernet_dir is not None:
        raise CheckpointError(f"{path} is an unfinished supernet; finish it with a search in {supernet_dir}")
    cost_avg = train_supernet(
        net, loaders.train, cfg.supernet_epochs, lr=cfg.supernet_lr, seed=cfg.seed, device=device,
        num_classes=spec.num_classes, progress=cfg.progress, schedule=cfg.supernet_schedule,
        checkpoint=path, checkpoint_meta={"kind": "supernet", "fingerprint": fingerprint}, resume_state=state,
    )
    save_checkpoint(path, {"kind": "supernet", "fingerprint": fingerprint, "state_dict": net.cpu().state_dict(),
                           "cost_avg": cost_avg, "complete": True})
    return net, cost_avg


CALIBRATION_PATHS = 20


def _calibrate(evaluator: SupernetEvaluator, cost_avg: dict, cfg: AutoSNNSearchConfig) -> tuple[dict, list[str]]:
    """Mean of costs the supernet training did not record, over random paths (evaluated on D_val)."""
    rng = random.Random(cfg.seed + 7919)
    space = AutoSNNSpace(cfg.macro)
    paths = {space.sample(rng) for _ in range(CALIBRATION_PATHS)}
    results = evaluator(sorted(paths))
    missing = sorted({k for _, costs in results for k in costs} - set(cost_avg))
    out = dict(cost_avg)
    for key in missing:
        out[key] = sum(costs[key] for _, costs in results) / len(results)
    if cfg.cost not in out:
        raise ConfigError(f"cost {cfg.cost!r} is neither recorded nor measurable; choose one of {sorted(out)}")
    return out, missing


def run_autosnn_search(cfg: AutoSNNSearchConfig, out_dir: str | Path, supernet_dir: str | Path | None = None):
    """Run (or resume) one AutoSNN search; returns the content of ``search.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    if cfg.strategy == "darts":
        return _run_darts(cfg, out_dir)
    device = resolve_device(cfg.device)
    loaders = make_loaders(cfg.dataset, cfg.batch_size, data_dir=cfg.data_dir, seed=cfg.seed,
                           augment=False if cfg.augment == "none" else cfg.augment,
                           val_split=0.2, eval_batch_size=512)
    spec = loaders.spec
    if spec.kind != "static":
        raise ConfigError(f"dataset {cfg.dataset!r} is an event dataset; the AutoSNN search runs static data here")
    t0 = time.perf_counter()
    supernet, cost_avg = _supernet(cfg, spec, loaders, out_dir, Path(supernet_dir) if supernet_dir else None, device)
    supernet_seconds = time.perf_counter() - t0
    hw_costs = [HardwareSearchCost(chip, dt=cfg.dt) for chip in cfg.hardware_chips()]
    cost_fns: list = list(hw_costs)
    fixed = None
    if cfg.fixed_point:
        fixed = FixedPointSearchCost(loaders.val, steps=cfg.steps, dt=cfg.dt)
        cost_fns.append(fixed)
    base_evaluator = SupernetEvaluator(supernet, loaders.val, device, cost_fns=cost_fns)
    calibrated: list[str] = []
    if cfg.cost not in cost_avg:
        cost_avg, calibrated = _calibrate(base_evaluator, cost_avg, cfg)
    fitness = Fitness(lam=cfg.lam, cost=cfg.cost, cost_avg=cost_avg[cfg.cost], mode=cfg.fitness_mode,
                      budgets=dict(cfg.budgets))
    nsga = NSGA2Config(objectives=cfg.objective_list(), budgets=tuple(cfg.budgets.items()),
                       population=cfg.population) if cfg.strategy == "nsga2" else None
    if cfg.strategy == "evolution":
        strategy = functools.partial(evolutionary_search, config=EvolutionConfig(rounds=cfg.rounds))
    elif nsga is not None:
        strategy = functools.partial(nsga2_search, config=nsga)
    else:
        strategy = random_search
    with open_executor(cfg.executor, out_dir, cfg.ray_address, cfg.workers, cfg.threads_per_worker) as executor:
        run = run_search(
            AutoSNNSpace(cfg.macro), strategy, base_evaluator, fitness, out_dir, _journal_header(cfg, spec),
            budget=cfg.evaluations, seed=cfg.seed,
            progress=f"search ({cfg.strategy}, λ={cfg.lam})" if cfg.progress else False, executor=executor,
        )
    rows = [run.row(c) for c in run.evaluated]
    best = run.row(run.best)
    multi: dict[str, Any] = {}
    if nsga is not None:  # the deployed point is picked from the front, not the scalar fitness
        best = run.row(pick(run.evaluated, nsga.objectives, cfg.pick, nsga.budgets))
        multi = {"objectives": list(nsga.objectives), "pick": cfg.pick,
                 "front": [run.row(c) for c in front(run.evaluated, nsga.objectives, nsga.budgets)]}
    out = {
        "schema_version": SCHEMA_VERSION,
        "strategy": cfg.strategy,
        "lambda": cfg.lam,
        "cost": cfg.cost,
        "cost_avg": cost_avg,
        "cost_avg_calibrated": calibrated,
        "budgets": dict(cfg.budgets),
        **multi,
        "evaluated": rows,
        "best": best,
        "journal_hits": run.journal_hits,
        "supernet_seconds": supernet_seconds,
        "search_seconds": run.seconds,
    }
    if fixed is not None:  # candidates Lava's fixed point cannot represent, with the quantiser's reason
        out["fixed_point_refused"] = dict(fixed.refusals)
    write_json(out_dir / "search.json", out, indent=2)
    return out


def search_config_from_args(base: dict[str, Any]) -> AutoSNNSearchConfig:
    """Build a checked config from a flat mapping (CLI flags, YAML)."""
    if "budgets" in base and isinstance(base["budgets"], (list, tuple)):
        base = {**base, "budgets": parse_budgets(list(base["budgets"]))}
    return from_dict(AutoSNNSearchConfig, base)


def _run_darts(cfg: AutoSNNSearchConfig, out_dir: Path) -> dict[str, Any]:
    """The in-training search (first-order DARTS over the same block choice) in the AutoSNN ``search.json`` format.

    ``supernet_epochs`` and ``supernet_lr`` drive the relaxed network's training; ``lam`` (<= 0, a discount as in
    the fitness) becomes DARTS' spike weight ``-lam``. Every epoch's decoded architecture, with its validation
    accuracy and spikes under the relaxed weights, is one ``evaluated`` row, so reports plot the trajectory as
    they plot a population.
    """
    from nasflow.strategies.darts import DartsConfig, run_darts_autosnn

    try:
        dcfg = DartsConfig(macro=cfg.macro, channels=cfg.channels, steps=cfg.steps, epochs=cfg.supernet_epochs,
                           batch_size=cfg.batch_size, lr_w=cfg.supernet_lr, lr_alpha=cfg.arch_lr, lam=-cfg.lam,
                           seed=cfg.seed, dataset=cfg.dataset, data_dir=cfg.data_dir, device=cfg.device,
                           progress=cfg.progress)
    except ValueError as err:
        raise ConfigError(f"strategy 'darts': {err}") from None
    full = run_darts_autosnn(dcfg, out_dir)
    rows = [{"arch": r["arch"], "accuracy": r["decoded_val_accuracy"], "spikes": r["decoded_spikes"],
             "costs": {"spikes": r["decoded_spikes"]}, "fitness": r["decoded_val_accuracy"], "round": r["epoch"]}
            for r in full["trajectory"]]
    best = {**full["best"], "fitness": full["best"]["accuracy"], "round": dcfg.epochs}
    spikes = [r["spikes"] for r in rows] or [best["costs"]["spikes"]]
    out = {**full, "strategy": "darts", "lambda": cfg.lam, "cost": "spikes",
           "cost_avg": {"spikes": sum(spikes) / len(spikes)}, "cost_avg_calibrated": [], "budgets": {},
           "evaluated": rows, "best": best, "journal_hits": 0, "supernet_seconds": 0.0}
    write_json(out_dir / "search.json", out, indent=2)
    return out
