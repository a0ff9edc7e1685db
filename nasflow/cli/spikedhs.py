"""``nasflow search spikedhs``: SpikeDHS's differentiable cell search, then the retraining of its winner.

    nasflow search spikedhs --dataset digits [--preset paper|released] [--nodes 3|4] [--ops a,b,...]
                            [--cost energy:CHIP --lambda-hw X] --out DIR
"""

from __future__ import annotations

import argparse
import json

from nasflow.cli.common import search_config_mapping

__all__ = ["add_spikedhs_parser", "cmd_spikedhs"]

_FLAGS = {
    "dataset": "dataset", "data_dir": "data_dir", "preset": "preset", "nodes": "nodes", "ops": "ops",
    "layers": "layers", "channels": "channels", "steps": "steps", "epochs": "epochs", "warmup": "warmup",
    "batch_size": "batch_size", "cost": "cost", "lam_hw": "lam_hw", "retrain_epochs": "retrain_epochs",
    "retrain_channels": "retrain_channels",
    "seed": "seed", "device": "device",
}
#: The flags of ``--task stereo`` (the trellis search) and what it does not take yet.
_STEREO_FLAGS = {
    "dataset": "dataset", "data_dir": "data_dir", "preset": "preset", "nodes": "nodes", "ops": "ops",
    "layers": "layers", "levels": "levels", "size": "size", "channels": "channels", "steps": "steps",
    "epochs": "epochs", "warmup": "warmup", "batch_size": "batch_size", "max_samples": "max_samples", "seed": "seed",
    "device": "device", "retrain_epochs": "retrain_epochs", "up": "up", "rates": "rates",
}
_NOT_STEREO = {"cost": "--cost", "lam_hw": "--lambda-hw", "retrain_channels": "--retrain-channels"}


def add_spikedhs_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``spikedhs`` to the ``search`` command's sub-parsers; returns the new parser."""
    p = subparsers.add_parser("spikedhs", help="SpikeDHS: differentiable search of spiking cells",
                              description="SpikeDHS cell search: train a relaxed network whose cell edges mix "
                              "every candidate op (at the membrane, or at spikes with --preset released), learn the "
                              "mixture weights on half of the training split, decode the two strongest edges per "
                              "node, then retrain the decoded network from scratch. The run directory receives "
                              "search.json, a per-epoch checkpoint that lets a killed search resume, and retrain/.")
    p.add_argument("--task", choices=("classify", "stereo"), default="classify",
                   help="classify (default): the cell search with fixed down-sampling; stereo: the joint cell and "
                   "resolution-path search (trellis, Viterbi-decoded) on a stereo dataset (stereo-dots, mvsec)")
    p.add_argument("--config", help="YAML with SpikeDHSConfig keys (TrellisSearchConfig with --task stereo); flags "
                   "given here override it")
    p.add_argument("--dataset", help="dataset name (digits, cifar10, ...)")
    p.add_argument("--data-dir", help="folder holding real datasets (never downloaded)")
    p.add_argument("--preset", help="paper (mix at the membrane; default) or released (mix at spikes)")
    p.add_argument("--nodes", type=int, help="nodes per cell: 3 (default) or 4")
    p.add_argument("--ops", help="comma-separated op subset of the preset, e.g. conv3x3,skip,zero")
    p.add_argument("--layers", type=int, help="cells in the macro (default 5; reductions at layers//3, 2·layers//3); "
                   "with --task stereo the trellis layers (default 6)")
    p.add_argument("--levels", type=int, help="--task stereo: resolution levels of the trellis (default 3)")
    p.add_argument("--size", type=int, help="--task stereo: input size in pixels (default 24)")
    p.add_argument("--rates", type=lambda v: [int(r) for r in v.split(",")],
                   help="--task stereo: down-sampling rate into each level, the stem's first (default 3,2,2,2, the "
                   "paper's; the stem's rate is the matching's disparity step)")
    p.add_argument("--no-up", dest="up", action="store_false", default=None,
                   help="--task stereo: no moves to a finer level, so that every decoded path exports to NIR whole")
    p.add_argument("--max-samples", type=int, help="--task stereo: samples per half of the training split (400)")
    p.add_argument("--channels", type=int, help="C of the first cells (default 8)")
    p.add_argument("--steps", type=int, help="time steps T (default 6)")
    p.add_argument("--epochs", type=int, help="search epochs (default 20)")
    p.add_argument("--warmup", type=int, help="first epochs with the architecture frozen (default 5)")
    p.add_argument("--batch-size", type=int, help="samples per batch (default 64)")
    p.add_argument("--cost", help="hardware term: energy:CHIP, e.g. energy:loihi (with --lambda-hw)")
    p.add_argument("--lambda-hw", dest="lam_hw", type=float, help="weight of the hardware term (default 0)")
    p.add_argument("--retrain-epochs", type=int, help="epochs of the winner's retraining (default 30; 0: none; "
                   "--task stereo: default 0, 12 in the study: 800 training samples, tested on 400)")
    p.add_argument("--retrain-channels", type=int,
                   help="C of the retrained winner (default: the search's --channels; 16 retrains digits wider)")
    p.add_argument("--seed", type=int, help="random seed; the same seed, machine and thread count give the same search")
    p.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--out", required=True, help="run directory (resumes a killed search found there)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_spikedhs)
    return p


def cmd_spikedhs(args: argparse.Namespace) -> int:
    """Run (or resume) the SpikeDHS search described by parsed ``args``; prints the winner and returns 0."""
    import torch

    from nasflow.spikedhs_search import run_spikedhs_search, search_config_from_args

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.task == "stereo":
        return _stereo(args)
    given = [f"--{k.replace('_', '-')}" for k in ("levels", "size", "max_samples", "rates")
             if getattr(args, k) is not None]
    given += ["--no-up"] if args.up is not None else []
    if given:
        from nasflow.config import ConfigError

        raise ConfigError(f"{', '.join(given)} belong(s) to --task stereo")
    cfg = search_config_from_args(search_config_mapping(args, _FLAGS))
    out = run_spikedhs_search(cfg, args.out)
    best = out["best"]
    summary = {"best": best["arch"], "inherited_val_accuracy": best["accuracy"]}
    if "retrain" in out:
        summary["retrained_test_accuracy"] = out["retrain"]["test_accuracy"]
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/search.json" + (" and retrain/" if "retrain" in out else ""))
    return 0


def _stereo(args: argparse.Namespace) -> int:
    from nasflow.config import ConfigError
    from nasflow.trellis_search import run_trellis_search, trellis_config_from_args

    given = [flag for k, flag in _NOT_STEREO.items() if getattr(args, k) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} not available with --task stereo (the trellis search has no "
                          "hardware term, and retrains at the search's C)")
    cfg = trellis_config_from_args(search_config_mapping(args, _STEREO_FLAGS))
    out = run_trellis_search(cfg, args.out)
    best = out["best"]
    summary = {"best": best["arch"], "inherited_val_one_pixel_accuracy": best["accuracy"],
               "inherited_val_mean_disparity_error": best["costs"]["mean_disparity_error"]}
    if "retrain" in out:
        summary.update(retrained_test_one_pixel_accuracy=out["retrain"]["test_accuracy"],
                       retrained_test_mean_disparity_error=out["retrain"]["test_mean_disparity_error"])
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/search.json" + (" and retrain/" if "retrain" in out else ""))
    return 0
