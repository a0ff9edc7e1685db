"""``nasflow search snasnet``: training-free SNASNet search.

    nasflow search snasnet --dataset digits --cell backward|forward --candidates N [--seed S] --out DIR
"""

from __future__ import annotations

import argparse
import json

from nasflow.cli.common import EXECUTOR_FLAGS, add_executor_args, search_config_mapping
from nasflow.runlock import hold_run_dir

__all__ = ["add_snasnet_parser", "cmd_snasnet"]

_FLAGS = {
    "dataset": "dataset", "data_dir": "data_dir", "cell": "cell", "candidates": "candidates",
    "channels": "channels", "steps": "steps", "reduction": "reduction", "second_pool": "second_pool",
    "score_batch": "score_batch", "kernel": "kernel", "normalisation": "normalisation", "combine": "combine",
    "cost": "cost", "lam": "lam", "epochs": "epochs", "lr": "lr", "seed": "seed", "device": "device",
    **EXECUTOR_FLAGS,
}


def add_snasnet_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``snasnet`` to the ``search`` command's sub-parsers; returns the new parser."""
    p = subparsers.add_parser("snasnet", help="SNASNet: training-free search (SAHD) of spiking cells",
                              description="SNASNet search: score random spiking cells at initialisation (no "
                              "training) by how differently they respond to different inputs, keep the best and "
                              "retrain it. The run directory receives search.json and a journal that lets a killed "
                              "search resume.")
    p.add_argument("--config", help="YAML with SNASNetSearchConfig keys; flags given here override it")
    p.add_argument("--dataset", help="dataset name (digits, cifar10, ...)")
    p.add_argument("--data-dir", help="folder holding real datasets (never downloaded)")
    p.add_argument("--cell", choices=["backward", "forward"], help="cell space (default backward)")
    p.add_argument("--candidates", type=int, help="random cells to score (default 5000)")
    p.add_argument("--channels", type=int, help="C (default 16; the paper: 256 CIFAR-10, 128 CIFAR-100)")
    p.add_argument("--steps", type=int, help="time steps T (default 8; the paper: 5 or 8)")
    p.add_argument("--reduction", choices=["code", "paper"], help="reduction block variant (default code)")
    p.add_argument("--second-pool", type=int, help="second AvgPool2d size (default: 4 for 32x32 input, else 2)")
    p.add_argument("--score-batch", type=int, help="samples per scoring batch (default 256)")
    p.add_argument("--kernel", choices=["sahd", "hamming"], help="score kernel (default sahd)")
    p.add_argument("--normalisation", choices=["paper", "code"], help="kernel normalisation (default paper)")
    p.add_argument("--combine", choices=["sum", "mean"], help="how per-layer kernels combine (default sum)")
    p.add_argument("--cost", choices=["none", "spikes"], help="cost-aware ranking (default none)")
    p.add_argument("--lambda", dest="lam", type=float, help="cost exponent λ <= 0 (with --cost)")
    p.add_argument("--epochs", type=int, help="retraining epochs of the winner (0 skips; default 40)")
    p.add_argument("--lr", type=float, help="SGD learning rate of the retraining")
    p.add_argument("--seed", type=int, help="random seed; the same seed, machine and thread count give the same search")
    p.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    add_executor_args(p)
    p.add_argument("--out", required=True, help="run directory (resumes a killed search found there)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_snasnet)
    return p


def cmd_snasnet(args: argparse.Namespace) -> int:
    """Run (or resume) the search described by parsed ``args``; prints the winner and returns 0."""
    import torch

    from nasflow.snasnet_search import run_snasnet_search, search_config_from_args

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = search_config_from_args(search_config_mapping(args, _FLAGS))
    with hold_run_dir(args.out):
        out = run_snasnet_search(cfg, args.out)
    best, retrain = out["best"], out["retrain"] or {}
    summary = {"best": best["cell"], "score": best["score"], "candidates": len(out["candidates"]),
               "test_accuracy": retrain.get("test_accuracy"), "spikes_per_sample": retrain.get("spikes_per_sample")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/search.json and journal.jsonl")
    return 0
