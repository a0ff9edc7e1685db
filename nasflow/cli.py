"""``nasflow`` command line: one entry point with subcommands.

Errors a user can fix (bad config, missing data, unknown names, bad checkpoints) print one
clear line and exit with status 2 instead of a traceback. Help texts are plain prose: argparse
prints them as they are, so they carry no reStructuredText markup.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from nasflow import __version__

__all__ = ["build_parser", "main", "summary_screen"]

DESCRIPTION = (
    "Search, train, export and cost spiking neural networks: architecture search (AutoSNN, SNASNet), "
    "BPTT training, export to NIR and lava-dl netx, simulation on torch and Lava, and neuromorphic chip "
    "cost models."
)
EPILOG = (
    "Run 'nasflow COMMAND --help' for the options of a command. Errors you can fix (a bad config, missing "
    "data, an unknown name) print one line and exit with status 2. A killed train or search continues when "
    "the same command is run again, a killed run with 'nasflow run --resume'."
)


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE (e.g. train.lr=0.01), got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an SNN with BPTT and write config, metrics, model and result",
                       description="Train a spiking network with backpropagation through time. The run directory "
                       "receives the resolved config, per-epoch metrics, a checkpoint for resuming, the model "
                       "and a result with test accuracy and activity counts.")
    p.add_argument("--config", help="YAML file with data/model/train sections (defaults fill the rest)")
    p.add_argument("--dataset", help="dataset name (digits, digits-events, cifar10, ...)")
    p.add_argument("--data-dir", help="folder holding real datasets (never downloaded)")
    p.add_argument("--arch", help="architecture: all-SCB_k3, all-SRB_k3 or five comma-separated AutoSNN blocks")
    p.add_argument("--out", required=True, help="run directory (resumes a killed run found there)")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--steps", type=int, help="time steps T for static (direct-coded) data")
    p.add_argument("--channels", type=int, help="initial channel count C")
    p.add_argument("--batch-size", type=int, help="samples per training batch")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--optimizer", choices=["adam", "sgd"], help="optimiser")
    p.add_argument("--loss", choices=["mse", "ce"], help="loss on the spike counts: squared error or cross-entropy")
    p.add_argument("--augment", choices=["none", "standard", "cutout"], help="training-set augmentation")
    p.add_argument("--seed", type=int, help="random seed; the same seed, machine and thread count give the same run")
    p.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, e.g. train.lr=0.01")
    p.add_argument("--restart", action="store_true", help="discard a previous run in --out and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


_TRAIN_FLAGS = {
    "dataset": "data.name", "data_dir": "data.data_dir", "augment": "data.augment", "arch": "model.arch",
    "steps": "model.steps", "channels": "model.channels", "epochs": "train.epochs", "batch_size": "train.batch_size",
    "lr": "train.lr", "optimizer": "train.optimizer", "loss": "train.loss", "seed": "train.seed",
    "device": "train.device",
}


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from nasflow.config import TrainRunConfig, apply_overrides
    from nasflow.train.run import run_training

    cfg = TrainRunConfig.load(args.config) if args.config else TrainRunConfig()
    overrides = {key: getattr(args, flag) for flag, key in _TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    overrides.update(_parse_set(args.set))
    if args.no_progress:
        overrides["train.progress"] = False
    cfg = apply_overrides(cfg, overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_training(cfg, args.out, restart=args.restart)
    summary = {k: result[k] for k in ("dataset", "arch", "seed", "test_accuracy", "spikes_per_sample",
                                      "synops_per_sample", "macs_per_sample")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/result.json, model.pt, metrics.jsonl, config.yaml")
    return 0


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="architecture search",
                       description="Search for a spiking architecture with AutoSNN (a trained supernet and an "
                       "evolutionary search) or SNASNet (training-free scoring of random cells).")
    space = p.add_subparsers(dest="space", required=True)
    a = space.add_parser("autosnn", help="AutoSNN: supernet + spike-aware evolutionary search",
                         description="AutoSNN search: train a weight-sharing supernet, then search its paths "
                         "with an evolutionary (or random) strategy under a fitness that discounts accuracy by "
                         "spikes or a hardware cost. The run directory receives search.json and a journal that "
                         "lets a killed search resume.")
    a.add_argument("--config", help="YAML with AutoSNNSearchConfig keys; flags given here override it")
    a.add_argument("--dataset", help="dataset name (digits, cifar10, ...)")
    a.add_argument("--data-dir", help="folder holding real datasets (never downloaded)")
    a.add_argument("--macro", help="macro backbone: snn1 (default), snn2, snn3, snn4, snn1-8tbd")
    a.add_argument("--lambda", dest="lam", type=float, help="fitness exponent λ <= 0 (default -0.08)")
    a.add_argument("--cost", help="cost in the fitness: spikes (default), synops, macs, neuron_updates, or a "
                   "hardware cost energy|cores|traffic|latency:CHIP, e.g. energy:loihi")
    a.add_argument("--budget", action="append", metavar="NAME=N",
                   help="hard budget, e.g. spikes=50000, energy=2e-6 (J per sample), cores=128")
    a.add_argument("--chip", help="chip of hardware budgets when --cost names none (default loihi)")
    a.add_argument("--strategy", choices=["evolution", "random"], help="search strategy (default evolution)")
    a.add_argument("--evaluations", type=int, help="search budget: evaluated architectures (default 200)")
    a.add_argument("--supernet-epochs", type=int, help="default 80 (digits)")
    a.add_argument("--supernet-lr", type=float, help="Adam learning rate of the supernet (default 5e-3)")
    a.add_argument("--channels", type=int, help="initial channel count C (default 16)")
    a.add_argument("--steps", type=int, help="time steps T (default 8)")
    a.add_argument("--seed", type=int, help="random seed; the same seed, machine and thread count give the same search")
    a.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1, ...")
    a.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    a.add_argument("--supernet", metavar="DIR", help="reuse the trained supernet of an earlier search in DIR")
    a.add_argument("--out", required=True, help="run directory (resumes a killed search found there)")
    a.add_argument("--no-progress", action="store_true", help="no progress bars")
    from nasflow.cli_snasnet import add_snasnet_parser

    add_snasnet_parser(space)


_SEARCH_FLAGS = {
    "dataset": "dataset", "data_dir": "data_dir", "macro": "macro", "lam": "lam", "cost": "cost", "budget": "budgets",
    "strategy": "strategy", "evaluations": "evaluations", "chip": "chip", "supernet_epochs": "supernet_epochs",
    "supernet_lr": "supernet_lr", "channels": "channels", "steps": "steps", "seed": "seed", "device": "device",
}


def _cmd_search(args: argparse.Namespace) -> int:
    import torch

    if args.space != "autosnn":
        return args.handler(args)

    from nasflow.config import ConfigError
    from nasflow.search import run_autosnn_search, search_config_from_args

    if args.threads:
        torch.set_num_threads(args.threads)
    base: dict[str, Any] = {}
    if args.config:
        try:
            base = yaml.safe_load(open(args.config)) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {args.config}: {err}") from None
        if not isinstance(base, dict):
            raise ConfigError(f"config {args.config} must hold a mapping at the top level")
    base.update({key: getattr(args, flag) for flag, key in _SEARCH_FLAGS.items() if getattr(args, flag) is not None})
    if args.no_progress:
        base["progress"] = False
    cfg = search_config_from_args(base)
    out = run_autosnn_search(cfg, args.out, supernet_dir=args.supernet)
    best = out["best"]
    print(json.dumps({"best": best["arch"], "accuracy": best["accuracy"], "spikes": best["spikes"],
                      "fitness": best["fitness"], "evaluated": len(out["evaluated"])}, indent=2))
    print(f"wrote {args.out}/search.json and journal.jsonl")
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the main job: search, retrain, export to NIR, simulate on Lava, cost, report",
                       description="The main job: search an architecture, retrain the winner and a baseline, "
                       "export both to NIR, simulate them on Lava, cost them on a chip model and write a report. "
                       "Each finished step is saved, so a killed run continues with --resume.")
    p.add_argument("--out", required=True, help="run directory (report.json, report.md, report.html, model.nir)")
    p.add_argument("--config", help="run.yaml with PipelineConfig sections (search, retrain, chip, lava, ...)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. search.evaluations=100 or chip=loihi-sanafe")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out from its last finished step")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (step lines only)")


def _cmd_run(args: argparse.Namespace) -> int:
    import torch

    from nasflow.pipeline import load_pipeline_config, run_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = _parse_set(args.set)
    if args.no_progress:
        overrides["search.progress"] = False
    cfg = load_pipeline_config(args.config, overrides)  # checked before any work starts
    report = run_pipeline(cfg, args.out, resume=args.resume)
    print(summary_screen(report, args.out))
    return 0


def summary_screen(report: dict[str, Any], out: str) -> str:
    """The one-screen summary printed at the end of ``nasflow run``."""
    from nasflow.report import _fmt

    w, b = report["winner"], report["baseline"]
    rows = [("", "winner", "baseline"), ("architecture", w["arch"], b["arch"])]
    for label, key, kind in (("torch test accuracy", "torch_accuracy", "pct"), ("Lava float accuracy*",
                             "lava_accuracy", "pct"), ("Lava fixed accuracy*", "lava_fixed_accuracy", "pct"),
                             ("spikes / sample", "spikes_per_sample", ""), ("energy / sample", "energy_per_sample_j",
                             "j"), ("cores used", "cores_used", "")):
        rows.append((label, _fmt(w[key], kind), _fmt(b[key], kind)))
    width = [max(len(str(r[i])) for r in rows) for i in range(3)]
    lines = ["  ".join(str(c).ljust(width[i]) for i, c in enumerate(r)) for r in rows]
    same = [_fmt(r["torch_accuracy_on_lava_samples"], "pct") for r in (w, b)]
    lines.append(f"* on the first {w['lava_samples']} test samples (torch on the same: {same[0]} / {same[1]})")
    lines.append(_time_line(report, out))
    lines.append(f"report: {out}/report.html, {out}/report.md, {out}/report.json; NIR: {out}/model.nir")
    return "\n".join(lines)


def _time_line(report: dict[str, Any], out: str) -> str:
    """Seconds of every pipeline step and their total (steps of a resumed run count with their first time)."""
    seconds = dict(report.get("step_seconds") or {})
    done = Path(out) / "steps" / "report.json"
    if "report" not in seconds and done.exists():  # the report step finishes after report.json is written
        try:
            seconds["report"] = float(json.loads(done.read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    parts = [f"{name} {value:.1f}" for name, value in seconds.items()]
    text = f"seconds: {', '.join(parts)}; total {sum(seconds.values()):.1f}"
    session = report.get("total_seconds_this_session")
    if session is not None:
        text += f" (this session {session:.1f})"
    return text


def build_parser() -> argparse.ArgumentParser:
    """The ``nasflow`` argument parser (subcommands)."""
    parser = argparse.ArgumentParser(prog="nasflow", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"nasflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_search(sub)
    _add_run(sub)
    from nasflow.cli_export import add_export_parsers
    from nasflow.cli_hw import add_hw_parser

    add_export_parsers(sub)
    add_hw_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nasflow`` command."""
    from nasflow.data import DatasetNotFoundError
    from nasflow.train.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    handlers = {"train": _cmd_train, "search": _cmd_search, "run": _cmd_run}
    handler = handlers.get(args.command) or getattr(args, "handler", None) or args.func
    try:
        return handler(args)
    except (ValueError, KeyError, DatasetNotFoundError, CheckpointError, FloatingPointError) as err:
        print(f"nasflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nasflow {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
