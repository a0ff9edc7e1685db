"""The main job: search → retrain winner and baseline → NIR → Lava (float, fixed) → hardware cost → report.

``run_pipeline(cfg, out_dir)`` runs the steps in order. Every step writes its result to
``DIR/steps/<step>.json`` when it finishes; with ``resume=True`` finished steps are skipped and an
unfinished one continues from its own checkpoints (the search from its journal, training from
``checkpoint.pt``). The resolved config is saved as ``DIR/config.yaml`` and a resumed run must use
the same config.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from exporters.core.jsonio import write_json
from hwmodels.report import HwReport
from nasflow.config import ConfigError, DataConfig, ModelConfig, TrainRunConfig, from_dict, load_yaml_mapping, to_dict
from nasflow.data.batches import test_inputs
from nasflow.search import AutoSNNSearchConfig, run_autosnn_search
from nasflow.snasnet_search import SNASNetSearchConfig
from nasflow.snn.blocks import NeuronSpec
from nasflow.spikedhs_search import SpikeDHSConfig
from nasflow.steps import BackendRun, ByRole, ExportedModel, NetxRun, SearchStep, SimulatedModel, TrainedModel
from nasflow.temporal_step import RunSearch, TemporalStep, check_temporal, run_temporal_step
from nasflow.train.trainer import TrainConfig

__all__ = ["PIPELINE_STEPS", "SPACES", "LavaConfig", "PipelineConfig", "RunData", "RunModel", "run_pipeline"]

R = TypeVar("R")
PIPELINE_STEPS = ("search", "temporal", "train_winner", "train_baseline", "export", "simulate", "hardware", "report")


def _default_search() -> AutoSNNSearchConfig:
    # Sized so that the whole main job stays within 10 minutes on a 2-core machine without AVX-512 (README,
    # "Main job"); the paper-scale settings are in examples/configs. The supernet's epochs are where the compiled
    # neuron kernel's saving went: at 16 epochs its candidates scored 10-24% on D_val, barely above chance.
    return AutoSNNSearchConfig(supernet_epochs=60, evaluations=100, rounds=10, cost="energy:loihi", lam=-0.24)


@dataclass
class LavaConfig:
    """How much of the test set the Lava backends simulate, and their limits."""

    samples: int = 40
    fixed_point: bool = True
    timeout_s: float = 600.0
    emulate: bool = True  # fixed-point accuracy on every test sample by lava-emu (checked against Lava's subset)
    qat: str = "auto"  # quantisation-aware fine-tuning before fixed point: auto (on for Loihi chips) | on | off
    qat_epochs: int = 2


def _default_snasnet() -> SNASNetSearchConfig:
    # Training-free scoring is cheap; the winner is retrained with SNASNet's own recipe (SGD, cosine, CE).
    return SNASNetSearchConfig(candidates=100, epochs=40)


def _default_spikedhs() -> SpikeDHSConfig:
    # The search's own retraining is off: the main job's train_winner step retrains (with retrain_epochs).
    return SpikeDHSConfig(epochs=10, warmup=3, retrain_epochs=20)


@dataclass
class RunData:
    """The dataset every step uses: the search, both retrainings and the Lava/hardware samples."""

    dataset: str = "digits"
    data_dir: str | None = None
    augment: str = "standard"  # none | standard | cutout


@dataclass
class RunModel:
    """What every network of the run shares: time steps T, base width and neuron (None: the space's own)."""

    steps: int = 8
    channels: int = 16
    neuron: NeuronSpec | None = None


#: Where the keys shared by every space live; a space section may not set them.
SHARED_KEYS = {
    "dataset": "data.dataset", "data_dir": "data.data_dir", "augment": "data.augment", "steps": "model.steps",
    "channels": "model.channels", "neuron": "model.neuron", "seed": "seed", "device": "device",
    "progress": "progress",
}


@dataclass
class PipelineConfig:
    """Everything ``nasflow run`` needs; saved resolved as ``config.yaml`` in the run directory.

    ``data``, ``model``, ``seed``, ``device`` and ``progress`` hold what every step shares, whatever the space;
    ``space`` picks the search, and its section (``autosnn``: supernet + evolution with a hardware-aware fitness;
    ``snasnet``: training-free SAHD scoring of random cells) holds only what is specific to it. The shared
    values are copied into both space sections here, so a search, a retraining and a Lava run can never read
    different T or datasets.
    """

    space: str = "autosnn"
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    data: RunData = field(default_factory=RunData)
    model: RunModel = field(default_factory=RunModel)
    autosnn: AutoSNNSearchConfig = field(default_factory=_default_search)
    snasnet: SNASNetSearchConfig = field(default_factory=_default_snasnet)
    spikedhs: SpikeDHSConfig = field(default_factory=_default_spikedhs)
    retrain: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, batch_size=32, lr=5e-3))
    baseline: str = "all-SCB_k3"
    chip: str = "loihi"
    dt: float = 1e-3
    lava: LavaConfig = field(default_factory=LavaConfig)
    search: RunSearch = field(default_factory=RunSearch)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ConfigError(f"space must be one of {', '.join(SPACES)}, got {self.space!r}")
        shared = dict(dataset=self.data.dataset, data_dir=self.data.data_dir, augment=self.data.augment,
                      steps=self.model.steps, channels=self.model.channels, seed=self.seed, device=self.device,
                      progress=self.progress)
        self.autosnn = replace(self.autosnn, **shared, neuron=self.model.neuron or NeuronSpec())
        self.snasnet = replace(self.snasnet, **shared, neuron=self.model.neuron)
        self.spikedhs = replace(self.spikedhs, **shared, neuron=self.model.neuron)
        if self.retrain.epochs < 1:
            raise ConfigError(f"retrain.epochs must be >= 1, got {self.retrain.epochs}")
        if self.lava.samples < 1:
            raise ConfigError(f"lava.samples must be >= 1, got {self.lava.samples}")
        if self.lava.qat not in ("auto", "on", "off") or self.lava.qat_epochs < 1:
            raise ConfigError(f"lava.qat must be auto, on or off and lava.qat_epochs >= 1, got {self.lava.qat!r} and "
                              f"{self.lava.qat_epochs}")
        if self.dt <= 0:
            raise ConfigError(f"dt must be > 0 seconds, got {self.dt}")
        check_temporal(self)


def load_pipeline_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a ``run.yaml`` (any subset of ``PipelineConfig`` keys) and check it before any work starts."""
    data: dict[str, Any] = load_yaml_mapping(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    check_layout(data, where=str(path) if path is not None else "--set")
    budgets = data.get("autosnn", {}).get("budgets") if isinstance(data.get("autosnn"), dict) else None
    if isinstance(budgets, (list, tuple)):
        from nasflow.evaluators.fitness import parse_budgets

        data["autosnn"]["budgets"] = parse_budgets(list(budgets))
    cfg = from_dict(PipelineConfig, data)
    _check_feasible(cfg)
    return cfg


def check_layout(data: dict[str, Any], where: str) -> None:
    """Refuse keys of the old layout (an AutoSNN ``search`` section; shared keys in a space section), naming the
    new key for each, so that an old config or command line fails before any work instead of running silently
    with another T or dataset."""
    moved: list[str] = []
    old = data.get("search")
    if isinstance(old, dict):  # the section now holds the temporal search on the winner (RunSearch)
        moved += [f"search.{k} -> {SHARED_KEYS.get(k, f'autosnn.{k}')}" for k in old
                  if k not in RunSearch.__dataclass_fields__]
    elif "search" in data:
        moved.append("search -> autosnn")
    for section in SPACES:
        if isinstance(data.get(section), dict):
            moved += [f"{section}.{k} -> {SHARED_KEYS[k]}" for k in data[section] if k in SHARED_KEYS]
    if moved:
        raise ConfigError(f"{where}: config keys of the old layout: {'; '.join(moved)} (data and model settings are "
                          "shared by every space; the AutoSNN section is 'autosnn')")


def resolved_config(cfg: PipelineConfig) -> dict[str, Any]:
    """The config as saved in ``config.yaml``: space sections without the shared keys they were given."""
    out = to_dict(cfg)
    for section in SPACES:
        out[section] = {k: v for k, v in out[section].items() if k not in SHARED_KEYS}
    return out


def _check_feasible(cfg: PipelineConfig) -> None:
    """Reject budgets no candidate can meet before any work starts."""
    from nasflow.evaluators.fitness import ZERO_BUDGETS
    from nasflow.spaces.autosnn import parse_arch

    for key, value in cfg.autosnn.budgets.items():
        if value < 0 or (value == 0 and key not in ZERO_BUDGETS):
            raise ConfigError(f"autosnn.budgets.{key}: a budget must be > 0, got {value}")
    if "cores" in cfg.autosnn.budgets and cfg.autosnn.budgets["cores"] < 1:
        raise ConfigError("autosnn.budgets.cores: at least one core is needed")
    try:
        parse_arch(cfg.baseline, _num_blocks(cfg.autosnn))
    except ValueError as err:
        raise ConfigError(f"baseline: {err}") from None


def _num_blocks(search: AutoSNNSearchConfig) -> int:
    from nasflow.spaces.autosnn import num_blocks

    return num_blocks(search.macro)


class _Steps:
    """Runs named steps once; a finished step's result is read back from ``steps/<name>.json`` with ``parse``."""

    def __init__(self, out_dir: Path, resume: bool, log: Callable[[str], None]) -> None:
        self.dir = out_dir / "steps"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.resume = resume
        self.log = log
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], R], parse: Callable[[dict[str, Any]], R]) -> R:
        path = self.dir / f"{name}.json"
        index = PIPELINE_STEPS.index(name) + 1
        if self.resume and path.exists():
            done = json.loads(path.read_text())
            self.log(f"[{index}/{len(PIPELINE_STEPS)}] {name}: done earlier ({done['seconds']:.0f} s), skipped")
            self.seconds[name] = done["seconds"]
            return parse(done["result"])
        self.log(f"[{index}/{len(PIPELINE_STEPS)}] {name} ...")
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        self.seconds[name] = seconds
        write_json(path, {"seconds": seconds, "result": result}, indent=2)
        self.log(f"[{index}/{len(PIPELINE_STEPS)}] {name}: finished in {seconds:.0f} s")
        return result


def _prepare_dir(out_dir: Path, cfg: PipelineConfig, resume: bool) -> None:
    resolved = resolved_config(cfg)
    cfg_path = out_dir / "config.yaml"
    if cfg_path.exists():
        if not resume:
            raise ConfigError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
        old = yaml.safe_load(cfg_path.read_text())
        check_layout(old, where=f"{cfg_path} (written by an older nasflow; start a new --out)")
        if old != resolved:
            diffs = sorted(k for k in set(old) | set(resolved) if old.get(k) != resolved.get(k))
            raise ConfigError(f"{out_dir} holds a run with a different config (section(s): {', '.join(diffs)}); "
                              "use another --out directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(resolved, sort_keys=False))


def _train(cfg: PipelineConfig, arch: str, out_dir: Path, temporal: str | None = None) -> TrainedModel:
    from nasflow.train.run import run_training

    train = from_dict(TrainConfig, {**to_dict(cfg.retrain), "seed": cfg.seed, "progress": cfg.progress})
    run_cfg = TrainRunConfig(
        data=DataConfig(name=cfg.data.dataset, data_dir=cfg.data.data_dir, augment=cfg.data.augment),
        model=ModelConfig(arch=arch, channels=cfg.model.channels, steps=cfg.model.steps, neuron=cfg.autosnn.neuron,
                          temporal=temporal),
        train=train,
    )
    result = run_training(run_cfg, out_dir)
    keys = ("arch", "test_accuracy", "test_samples", "spikes_per_sample", "synops_per_sample", "macs_per_sample",
            "neuron_updates_per_sample", "firing_rates", "parameters")
    return TrainedModel(**{k: result[k] for k in keys}, dir=str(out_dir))


def _export(cfg: PipelineConfig, models: ByRole[TrainedModel], out_dir: Path) -> ByRole[ExportedModel]:
    from exporters.netx import export_netx
    from exporters.nir_export import to_nir
    from exporters.nir_io import write_nir
    from nasflow.models import load_model

    out: dict[str, ExportedModel] = {}
    for role, info in models.items():
        model, _ = load_model(Path(info.dir) / "model.pt")
        graph = to_nir(model, dt=cfg.dt)
        nir_path = out_dir / f"{role}.nir"
        write_nir(nir_path, graph)
        net_path = out_dir / f"{role}.net"
        try:  # netx holds chains of spiking layers only; its refusal names the node and the reason
            export_netx(graph, net_path)
            netx, skipped = str(net_path), None
        except ValueError as err:
            netx, skipped = None, str(err).splitlines()[0]
        out[role] = ExportedModel(str(nir_path), len(graph.nodes), len(graph.edges), netx, skipped)
    # The searched model is the one the user deploys: keep its NIR file under the plain name too.
    (out_dir / "model.nir").write_bytes(Path(out["winner"].nir).read_bytes())
    return ByRole(**out)


def _simulate(cfg: PipelineConfig, exported: ByRole[ExportedModel], out_dir: Path, log) -> ByRole[SimulatedModel]:
    from exporters import lava
    from exporters.equivalence import (
        accuracy_from_output,
        compare_activity,
        is_membrane_readout,
        neuron_nodes,
        readout_node,
    )
    from exporters.nir_io import read_nir
    from exporters.nir_torch import simulate as torch_simulate

    x, labels = test_inputs(cfg.data.dataset, cfg.data.data_dir, cfg.seed, cfg.model.steps, cfg.lava.samples)
    results: dict[str, SimulatedModel] = {}
    for role, entry in exported.items():
        graph = read_nir(entry.nir)
        head = readout_node(graph)
        last, analog = is_membrane_readout(graph, head), [head] if is_membrane_readout(graph, head) else []
        ref = torch_simulate(graph, x, dt=cfg.dt)
        np.savez_compressed(out_dir / f"{role}_activity.npz", **ref)
        torch_accuracy = accuracy_from_output(ref, labels, head, last)
        runs: dict[str, BackendRun] = {}
        refused = lava.analog_refusal(graph)  # a hybrid's analog layers: Lava runs spiking layers only
        fixed_act, quant, qat = None, None, None
        if cfg.lava.fixed_point and refused is None and (cfg.lava.qat == "on" or (
                cfg.lava.qat == "auto" and cfg.chip.startswith("loihi"))):
            from nasflow.emulated import main_job_qat

            log(f"    {role}: quantisation-aware fine-tuning for Lava fixed point ({cfg.lava.qat_epochs} epochs)")
            quant, qat = main_job_qat(graph, cfg.dt, cfg.data.dataset, cfg.data.data_dir, cfg.seed, cfg.model.steps,
                                      cfg.lava.qat_epochs, out_dir / f"{role}_fixed_point.npz", log)
        for name, fixed in [("lava", False)] + ([("lava_fixed", True)] if cfg.lava.fixed_point else []):
            if refused is not None:
                log(f"    {role}: Lava skipped ({refused})")
                runs[name] = BackendRun(0.0, None, {}, refused)
                continue
            log(f"    {role}: Lava {'fixed' if fixed else 'floating'} point on {len(labels)} test samples")
            t0 = time.perf_counter()
            act = lava.simulate(graph, x, dt=cfg.dt, fixed_point=fixed, timeout_s=cfg.lava.timeout_s,
                                input_scale=lava.input_scale_of(x) if fixed else None, quant=quant)
            runs[name] = BackendRun(time.perf_counter() - t0, accuracy_from_output(act, labels, head, last),
                                    compare_activity(ref, act, nodes=graph, values=analog))
            fixed_act = act if fixed else fixed_act
        emulated = None
        if cfg.lava.fixed_point and cfg.lava.emulate and refused is None:
            from nasflow.data.batches import split_batches
            from nasflow.emulated import emulate_test_set

            batches = split_batches(cfg.data.dataset, cfg.data.data_dir, cfg.seed, cfg.model.steps,
                                   max(256, len(labels)))
            emulated = emulate_test_set(graph, cfg.dt, x, fixed_act, ref, head, last, batches, quant)
            log(f"    {role}: lava-emu fixed point on all {emulated.samples} test samples: accuracy "
                f"{emulated.run.accuracy:.4f}, spikes equal to Lava fixed point: {emulated.equals_lava_fixed}")
        netx = None
        if entry.netx:
            from exporters.netx import complete_activity, simulate_netx

            log(f"    {role}: netx on {len(labels)} test samples")
            try:
                act = complete_activity(graph, simulate_netx(entry.netx, x, timeout_s=cfg.lava.timeout_s))
            except Exception as err:  # netx is an extra deployment check: report the failure, do not abort
                # lava-dl can fail on layouts its own loader accepted (seen with some SNASNet cells).
                netx = NetxRun(None, error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
                log(f"    {role}: netx failed ({netx.error}); the report records it")
            else:
                netx = NetxRun(accuracy_from_output(act, labels, head, last) if head in act else None,
                               compare_activity(ref, act, nodes=[n for n in neuron_nodes(graph) if n in act]))
        results[role] = SimulatedModel(int(len(labels)), head, torch_accuracy, runs["lava"], runs.get("lava_fixed"),
                                       netx, emulated and emulated.run, emulated and emulated.samples,
                                       emulated and emulated.equals_lava_fixed, qat)
    return ByRole(**results)


def _hardware(cfg: PipelineConfig, exported: ByRole[ExportedModel], out_dir: Path) -> ByRole[HwReport]:
    """Map both models on the chip and cost the per-neuron activity of the test samples (torch reference)."""
    from exporters.nir_io import read_nir
    from hwmodels import hw_report, write_report

    out: dict[str, HwReport] = {}
    for role, entry in exported.items():
        graph = read_nir(entry.nir)
        with np.load(out_dir / f"{role}_activity.npz") as data:
            activity = {k: data[k] for k in data.files}
        report = hw_report(graph, cfg.chip, activity=activity)
        write_report(report, out_dir / f"{role}_hw")
        out[role] = report
    return ByRole(**out)


def run_pipeline(
    cfg: PipelineConfig, out_dir: str | Path, resume: bool = False, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run (or resume) the whole job in ``out_dir`` and return ``report.json``'s content, plus
    ``total_seconds_this_session`` (the wall time of this call, which a resumed run does not share)."""
    from nasflow.report import RunReport, write_reports

    out_dir = Path(out_dir)
    _prepare_dir(out_dir, cfg, resume)
    steps = _Steps(out_dir, resume, log)
    t_start = time.perf_counter()

    space = SPACES[cfg.space]
    search = steps.run("search", lambda: space.search(cfg, out_dir / "search"), SearchStep.from_dict)
    temporal = steps.run("temporal", lambda: run_temporal_step(cfg, search.arch, out_dir / "temporal"),
                         TemporalStep.from_dict)
    winner = steps.run("train_winner", lambda: space.retrain(cfg, search.arch, out_dir / "winner", temporal.arch),
                       TrainedModel.from_dict)
    baseline = steps.run("train_baseline", lambda: _train(cfg, cfg.baseline, out_dir / "baseline"),
                         TrainedModel.from_dict)
    models = ByRole(winner, baseline)
    exported = steps.run("export", lambda: _export(cfg, models, out_dir),
                         lambda d: ByRole.from_dict(d, ExportedModel.from_dict))
    simulated = steps.run("simulate", lambda: _simulate(cfg, exported, out_dir, log),
                          lambda d: ByRole.from_dict(d, SimulatedModel.from_dict))
    hardware = steps.run("hardware", lambda: _hardware(cfg, exported, out_dir),
                         lambda d: ByRole.from_dict(d, HwReport.from_dict))

    def report() -> RunReport:
        return write_reports(out_dir, cfg=to_dict(cfg), search=search, models=models, exported=exported,
                             simulated=simulated, hardware=hardware, step_seconds=dict(steps.seconds),
                             temporal=temporal.to_dict())

    result = steps.run("report", report, RunReport.from_dict)
    return result.to_dict() | {"total_seconds_this_session": time.perf_counter() - t_start}


def _autosnn_search_step(cfg: PipelineConfig, out_dir: Path) -> SearchStep:
    """AutoSNN's supernet + evolution with the run's fitness, in the pipeline's search format."""
    full = run_autosnn_search(cfg.autosnn, out_dir)
    return SearchStep(best=full["best"], cost=full["cost"], lam=full["lambda"], search_seconds=full["search_seconds"],
                      dir=str(out_dir), evaluated=full["evaluated"], cost_avg=full["cost_avg"],
                      budgets=full["budgets"], supernet_seconds=full["supernet_seconds"],
                      objectives=full.get("objectives"), pick=full.get("pick"))


def _snasnet_search_step(cfg: PipelineConfig, out_dir: Path) -> SearchStep:
    """SNASNet scoring (no retraining inside: the next step retrains), in the pipeline's search format."""
    from nasflow.snasnet_search import run_snasnet_search

    full = run_snasnet_search(replace(cfg.snasnet, epochs=0), out_dir)
    rows = [{"arch": r["cell"], "accuracy": r["score"] if r["score"] is not None else float("nan"),
             "fitness": r["score"], "costs": {"spikes": r.get("spikes_per_sample", 0.0)}}
            for r in full["candidates"]]
    best = next(r for r in rows if r["arch"] == full["best"]["cell"])
    return SearchStep(best=best, cost="spikes", lam=cfg.snasnet.lam, search_seconds=full["search_seconds"],
                      dir=str(out_dir), evaluated=rows, value_label=f"{full['score']} score")


def _train_snasnet(cfg: PipelineConfig, cell: str, out_dir: Path, temporal: str | None = None) -> TrainedModel:
    """Retrain the SNASNet winner with its recipe; the same fields as ``_train``."""
    from nasflow.models import load_model
    from nasflow.snasnet_search import retrain_cell
    from nasflow.train.trainer import resolve_device

    res = retrain_cell(cfg.snasnet, cell, out_dir, resolve_device(cfg.snasnet.device), temporal)
    model, _ = load_model(res["model"])
    keys = ("spikes_per_sample", "synops_per_sample", "macs_per_sample", "neuron_updates_per_sample",
            "firing_rates")
    return TrainedModel(arch=cell, test_accuracy=res["test_accuracy"], test_samples=res.get("test_samples"),
                        parameters=sum(p.numel() for p in model.parameters()), **{k: res[k] for k in keys},
                        dir=str(Path(res["model"]).parent))


def _spikedhs_search_step(cfg: PipelineConfig, out_dir: Path) -> SearchStep:
    """The SpikeDHS cell search (its winner is retrained by the next step), in the pipeline's search format."""
    from nasflow.spikedhs_search import run_spikedhs_search

    full = run_spikedhs_search(replace(cfg.spikedhs, retrain_epochs=0), out_dir)
    best = {"arch": full["best"]["arch"], "accuracy": full["best"]["accuracy"], "fitness": None,
            "costs": full["best"]["costs"]}
    return SearchStep(best=best, cost=cfg.spikedhs.cost, lam=cfg.spikedhs.lam_hw,
                      search_seconds=full["search_seconds"], dir=str(out_dir), evaluated=[best])


def _train_spikedhs(cfg: PipelineConfig, genotype: str, out_dir: Path, temporal: str | None = None) -> TrainedModel:
    """Retrain the decoded SpikeDHS genotype from scratch (``retrain_genotype``); the same fields as ``_train``."""
    from nasflow.spikedhs_search import retrain_genotype

    result = retrain_genotype(cfg.spikedhs, genotype, out_dir, temporal=temporal)
    keys = ("arch", "test_accuracy", "test_samples", "spikes_per_sample", "synops_per_sample", "macs_per_sample",
            "neuron_updates_per_sample", "firing_rates", "parameters")
    return TrainedModel(**{k: result[k] for k in keys}, dir=str(out_dir))


@dataclass(frozen=True)
class SpaceSteps:
    """What the main job runs for one search space: its search step and the retraining of its winner."""

    search: Callable[[PipelineConfig, Path], SearchStep]
    retrain: Callable[[PipelineConfig, str, Path, str | None], TrainedModel]  # (..., per-layer temporal values)


#: The main job's steps per space (``space`` in the config, also the name of its config section); every other
#: step is the same for all spaces.
SPACES: dict[str, SpaceSteps] = {
    "autosnn": SpaceSteps(_autosnn_search_step, _train),
    "snasnet": SpaceSteps(_snasnet_search_step, _train_snasnet),
    "spikedhs": SpaceSteps(_spikedhs_search_step, _train_spikedhs),
}
