"""``nasflow train``: BPTT training of one architecture into a run directory."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from nasflow.cli.common import parse_set
from nasflow.runlock import hold_run_dir

if TYPE_CHECKING:
    from nasflow.config import TrainRunConfig

__all__ = ["add_train_parser", "cmd_train", "train_config"]

_FLAGS = {
    "dataset": "data.name", "data_dir": "data.data_dir", "augment": "data.augment", "arch": "model.arch",
    "steps": "model.steps", "channels": "model.channels", "epochs": "train.epochs", "batch_size": "train.batch_size",
    "lr": "train.lr", "optimizer": "train.optimizer", "loss": "train.loss", "seed": "train.seed",
    "device": "train.device", "model": "model.name", "size": "data.size", "train_samples": "data.train_samples",
    "test_samples": "data.test_samples",
}


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand; returns its parser."""
    p = subparsers.add_parser("train", help="train an SNN with BPTT and write config, metrics, model and result",
                              description="Train a spiking network with backpropagation through time. The run "
                              "directory receives the resolved config, per-epoch metrics, a checkpoint for resuming, "
                              "the model and a result with test accuracy and activity counts.")
    p.add_argument("--config", help="YAML file with data/model/train sections (defaults fill the rest)")
    p.add_argument("--dataset", help="dataset name (digits, digits-events, cifar10, ...)")
    p.add_argument("--data-dir", help="folder holding real datasets (never downloaded)")
    p.add_argument("--model", help="registered model (autosnn, spikedhs, snasnet, spikedhs-stereo; default autosnn)")
    p.add_argument("--arch", help="architecture: all-SCB_k3, all-SRB_k3 or five comma-separated AutoSNN blocks; a "
                   "genotype for spikedhs; PRESET:cell=...;path=... for spikedhs-stereo")
    p.add_argument("--out", required=True, help="run directory (resumes a killed run found there)")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--steps", type=int, help="time steps T for static (direct-coded) data")
    p.add_argument("--size", type=int, help="event/stereo frames at SIZE x SIZE (stereo-dots is generated at it)")
    p.add_argument("--train-samples", type=int, help="train on the first N samples of the train split")
    p.add_argument("--test-samples", type=int, help="evaluate on the first N samples of the test split")
    p.add_argument("--channels", type=int, help="initial channel count C")
    p.add_argument("--batch-size", type=int, help="samples per training batch")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--optimizer", choices=["adam", "sgd"], help="optimiser")
    p.add_argument("--loss", choices=["mse", "ce"], help="loss on the spike counts: squared error or cross-entropy")
    p.add_argument("--augment", choices=["none", "standard", "cutout"], help="training-set augmentation")
    p.add_argument("--seed", type=int, help="random seed; the same seed, machine and thread count give the same run")
    p.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--dgs", help="comma-separated neuron layers whose surrogate temperature DGS searches during "
                   "training, e.g. stem or stem,cells.4 (every train.dgs_every epochs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, e.g. train.lr=0.01")
    p.add_argument("--qat", choices=["lava"], help="then fine-tune for Lava's fixed point (quantisation-aware): writes "
                   "fixed_point.npz (the integers to deploy: nasflow simulate --fixed-point) and qat.json")
    p.add_argument("--qat-epochs", type=int, default=3, help="QAT epochs (default 3)")
    p.add_argument("--qat-lr", type=float, default=1e-3, help="QAT step as a fraction of each tensor's peak (1e-3)")
    p.add_argument("--qat-distill", type=float, default=0.5,
                   help="weight in [0, 1] of matching the float network's class scores against the label loss (0.5)")
    p.add_argument("--restart", action="store_true", help="discard a previous run in --out and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_train)
    return p


def _names_neuron(config: str | None, overrides: dict) -> bool:
    """Whether the user chose a neuron: a ``model.neuron`` key in the overrides or in the YAML's model section."""
    if any(k == "model.neuron" or k.startswith("model.neuron.") for k in overrides):
        return True
    if not config:
        return False
    from nasflow.config import load_yaml_mapping

    model = load_yaml_mapping(config).get("model")
    return isinstance(model, dict) and "neuron" in model


def train_config(args: argparse.Namespace) -> TrainRunConfig:
    """The run's config: the YAML (or the defaults), then the flags and ``--set`` overrides. Without a neuron
    named anywhere the model keeps its own (SpikeDHS's for ``spikedhs``, PLIF for AutoSNN), so choosing a model
    never silently swaps its neuron for another model's default."""
    from nasflow.config import TrainRunConfig, apply_overrides

    cfg = TrainRunConfig.load(args.config) if args.config else TrainRunConfig()
    overrides = {key: getattr(args, flag) for flag, key in _FLAGS.items() if getattr(args, flag) is not None}
    if args.dgs:
        overrides["train.dgs"] = [n.strip() for n in args.dgs.split(",") if n.strip()]
    overrides.update(parse_set(args.set))
    if args.no_progress:
        overrides["train.progress"] = False
    cfg = apply_overrides(cfg, overrides)
    if not _names_neuron(args.config, overrides):
        cfg.model.neuron = None
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    """Train as the parsed ``args`` say; prints a summary of the result and returns 0."""
    import torch

    from nasflow.train.run import run_training

    cfg = train_config(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    with hold_run_dir(args.out):
        result = run_training(cfg, args.out, restart=args.restart)
    keys = ("dataset", "arch", "seed", "test_accuracy", "test_mean_disparity_error", "spikes_per_sample",
            "synops_per_sample", "macs_per_sample")
    summary = {k: result[k] for k in keys if k in result}
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/result.json, model.pt, metrics.jsonl, config.yaml")
    if args.qat:
        from nasflow.train.qat import QATConfig, run_qat

        qat = run_qat(args.out, cfg, QATConfig(epochs=args.qat_epochs, lr=args.qat_lr, loss=cfg.train.loss,
                                                 distill=args.qat_distill))
        print(json.dumps({"fixed_accuracy_before_qat": qat.fixed_accuracy_before,
                          "fixed_accuracy_after_qat": qat.fixed_accuracy_after}, indent=2))
        print(f"wrote {args.out}/fixed_point.npz, qat.json")
    return 0
