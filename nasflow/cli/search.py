"""``nasflow search``: architecture search, one subcommand per search space (``autosnn`` here, ``snasnet`` in
``nasflow.cli.snasnet``, ``spikedhs`` in ``nasflow.cli.spikedhs``)."""

from __future__ import annotations

import argparse
import json

from nasflow.cli.common import EXECUTOR_FLAGS, add_executor_args, search_config_mapping
from nasflow.cli.hns import add_hns_parser
from nasflow.cli.snasnet import add_snasnet_parser
from nasflow.cli.spikedhs import add_spikedhs_parser
from nasflow.cli.tps import add_tps_parser
from nasflow.runlock import hold_run_dir

__all__ = ["add_autosnn_parser", "add_search_parser", "cmd_autosnn"]

_FLAGS = {
    "dataset": "dataset", "data_dir": "data_dir", "macro": "macro", "lam": "lam", "cost": "cost", "budget": "budgets",
    "strategy": "strategy", "evaluations": "evaluations", "chip": "chip", "supernet_epochs": "supernet_epochs",
    "supernet_lr": "supernet_lr", "channels": "channels", "steps": "steps", "seed": "seed", "device": "device",
    "fixed_point": "fixed_point", "objectives": "objectives", "population": "population", "pick": "pick",
    **EXECUTOR_FLAGS,
}


def add_search_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``search`` subcommand with its ``autosnn`` and ``snasnet`` spaces; returns its parser."""
    p = subparsers.add_parser("search", help="architecture search",
                              description="Search for a spiking architecture with AutoSNN (a trained supernet and "
                              "an evolutionary search), SNASNet (training-free scoring of random cells) or SpikeDHS "
                              "(differentiable search of spiking cells).")
    space = p.add_subparsers(dest="space", required=True)
    add_autosnn_parser(space)
    add_snasnet_parser(space)
    add_spikedhs_parser(space)
    add_tps_parser(space)
    add_hns_parser(space)
    return p


def add_autosnn_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``autosnn`` to the ``search`` command's sub-parsers; returns the new parser."""
    a = subparsers.add_parser("autosnn", help="AutoSNN: supernet + spike-aware evolutionary search",
                              description="AutoSNN search: train a weight-sharing supernet, then search its paths "
                              "with an evolutionary (or random) strategy under a fitness that discounts accuracy by "
                              "spikes or a hardware cost. The run directory receives search.json and a journal that "
                              "lets a killed search resume.")
    a.add_argument("--config", help="YAML with AutoSNNSearchConfig keys; flags given here override it")
    a.add_argument("--dataset", help="dataset name (digits, cifar10, ...)")
    a.add_argument("--data-dir", help="folder holding real datasets (never downloaded)")
    a.add_argument("--macro", help="macro backbone: snn1 (default), snn2, snn3, snn4, snn1-8tbd")
    a.add_argument("--lambda", dest="lam", type=float, help="fitness exponent λ <= 0 (default -0.08)")
    a.add_argument("--cost", help="cost in the fitness: spikes (default), synops, macs, neuron_updates, fixed_spikes "
                   "(spikes on Lava's fixed point), or a hardware cost energy|cores|traffic|latency:CHIP, e.g. "
                   "energy:loihi")
    a.add_argument("--budget", action="append", metavar="NAME=N",
                   help="hard budget, e.g. spikes=50000, energy=2e-6 (J per sample), cores=128, fixed_acc_drop<=0.01 "
                   "(at most one point lost on Lava's fixed point)")
    a.add_argument("--fixed-point", action="store_const", const=True, default=None,
                   help="record every candidate's D_val accuracy, accuracy drop and spikes on Lava's fixed point "
                   "(bit-exact emulator; on by itself with a fixed_* cost or budget)")
    a.add_argument("--chip", help="chip of hardware budgets when --cost names none (default loihi)")
    a.add_argument("--strategy", choices=["evolution", "random", "nsga2", "darts"],
                   help="search strategy (default evolution; nsga2: multi-objective, a Pareto front; darts: "
                   "in-training, first-order DARTS)")
    a.add_argument("--objectives", help="nsga2: objectives, e.g. accuracy,energy:loihi,cores:loihi (accuracy is "
                   "maximised, costs minimised; default accuracy and --cost); budgets are hard constraints")
    a.add_argument("--population", type=int, help="nsga2: population per generation (default 20)")
    a.add_argument("--pick", help="nsga2: the front's deployed point: knee (default), max-accuracy, min-OBJECTIVE "
                   "(e.g. min-energy:loihi) or accuracy>=X")
    add_executor_args(a)
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
    a.set_defaults(handler=cmd_autosnn)
    return a


def cmd_autosnn(args: argparse.Namespace) -> int:
    """Run (or resume) the AutoSNN search described by parsed ``args``; prints the winner and returns 0."""
    import torch

    from nasflow.search import run_autosnn_search, search_config_from_args

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = search_config_from_args(search_config_mapping(args, _FLAGS))
    with hold_run_dir(args.out):
        out = run_autosnn_search(cfg, args.out, supernet_dir=args.supernet)
    best = out["best"]
    summary = {"best": best["arch"], "accuracy": best["accuracy"], "spikes": best["spikes"],
               "fitness": best["fitness"], "evaluated": len(out["evaluated"])}
    if "front" in out:
        summary.update(pick=out["pick"], front=len(out["front"]))
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/search.json and journal.jsonl")
    return 0
