"""``nasflow search tps``: TPS's search of per-layer neuron dynamics during training, then their retraining."""

from __future__ import annotations

import argparse
import json

from nasflow.cli.common import search_config_mapping

__all__ = ["SHARED_FLAGS", "add_network_args", "add_run_args", "add_tps_parser", "cmd_tps"]

#: The flags ``add_network_args`` and ``add_run_args`` add, by config key (shared with ``search hns``).
SHARED_FLAGS = {k: k for k in ("dataset", "data_dir", "model", "arch", "channels", "steps", "epochs", "warmup",
                               "every", "batch_size", "lr_gamma", "retrain_epochs", "seed", "device")}
_FLAGS = {**SHARED_FLAGS, "params": "params", "candidates": "candidates"}


def add_tps_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``tps`` to the ``search`` command's sub-parsers; returns the new parser."""
    p = subparsers.add_parser("tps", help="TPS: search each neuron layer's dynamics (decay, ALIF β/ρ) while training",
                              description="Temporal parameter search: train a fixed network; after the warm-up "
                              "epochs every neuron layer runs all candidate values of its parameter on the same "
                              "input, mixed by softmax(γ); every --every batches each layer keeps its best "
                              "candidate and γ restarts. search.json holds the per-layer values and their history "
                              "(history.png); --retrain-epochs retrains them from scratch.")
    add_network_args(p, "TPSConfig")
    p.add_argument("--params", help="comma-separated parameters: decay, alif.beta, alif.rho (default decay)")
    p.add_argument("--candidates", help="per parameter, e.g. 'decay=0.1,0.2,0.5;alif.beta=0,0.5' (default: "
                   "decay 0.1,0.2,0.35,0.5,0.65,0.8,0.95)")
    add_run_args(p, "parameters")
    p.set_defaults(handler=cmd_tps)
    return p


def add_network_args(p: argparse.ArgumentParser, config: str) -> None:
    """The flags TPS and HNS share that name the config, data and fixed network."""
    p.add_argument("--config", help=f"YAML with {config} keys; flags given here override it")
    p.add_argument("--dataset", help="dataset name (digits, digits-events, cifar10, ...)")
    p.add_argument("--data-dir", help="folder holding real datasets (never downloaded)")
    p.add_argument("--model", help="registered model (spikedhs and snasnet have defaults; autosnn needs --arch)")
    p.add_argument("--arch", help="the model's architecture (a genotype for spikedhs, blocks for autosnn, ...)")


def add_run_args(p: argparse.ArgumentParser, searched: str) -> None:
    """The flags TPS and HNS share: the network, the training schedule, the retraining and the run."""
    p.add_argument("--channels", type=int, help="C of the network (default 8)")
    p.add_argument("--steps", type=int, help="time steps T (default 6)")
    p.add_argument("--epochs", type=int, help="training epochs (default 20)")
    p.add_argument("--warmup", type=int, help=f"first epochs with the {searched} fixed (default 5)")
    p.add_argument("--every", type=int, help="batches per search step (default 50)")
    p.add_argument("--batch-size", type=int, help="samples per batch (default 64)")
    p.add_argument("--lr-gamma", type=float, help="Adam learning rate of γ (default 0.01)")
    p.add_argument("--retrain-epochs", type=int, help=f"retrain the found {searched} from scratch (default 0: no)")
    p.add_argument("--seed", type=int, help="random seed; the same seed, machine and thread count give the same search")
    p.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, ...")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--out", required=True, help="run directory (resumes a killed search found there)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_tps(args: argparse.Namespace) -> int:
    """Run (or resume) the TPS search described by parsed ``args``; prints the result and returns 0."""
    import torch

    from nasflow.tps_search import run_tps_search, tps_config_from_args

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = tps_config_from_args(search_config_mapping(args, _FLAGS))
    out = run_tps_search(cfg, args.out)
    summary = {"temporal": out["best"]["arch"], "val_accuracy": out["best"]["accuracy"],
               "search_steps": len(out["history"]) - 1}
    if "retrain" in out:
        summary["retrained_test_accuracy"] = out["retrain"]["test_accuracy"]
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/search.json, history.png" + (" and retrain/" if "retrain" in out else ""))
    return 0
