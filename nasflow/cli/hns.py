"""``nasflow search hns``: HNS's search of each layer's neuron type (LIF, ALIF, ReLU) with an energy loss."""

from __future__ import annotations

import argparse
import json

from nasflow.cli.common import search_config_mapping
from nasflow.cli.tps import SHARED_FLAGS, add_network_args, add_run_args

__all__ = ["add_hns_parser", "cmd_hns"]

_FLAGS = {**SHARED_FLAGS, **{k: k for k in ("types", "lambda_e", "cost", "energy_factors", "accounting")}}


def add_hns_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``hns`` to the ``search`` command's sub-parsers; returns the new parser."""
    p = subparsers.add_parser("hns", help="HNS: search each layer's neuron type (LIF, ALIF, ReLU) with an energy loss",
                              description="Hybrid neuron search: train a fixed network; after the warm-up epochs "
                              "every neuron layer runs each candidate type on the same input, mixed by softmax(γ), "
                              "and the loss is (1 - λ_E)·task + λ_E·E_pred/E_ref with energy terms from the chip "
                              "model; every --every batches each layer keeps its best type. search.json holds the "
                              "per-layer types and energy terms; --retrain-epochs retrains and costs the hybrid.")
    add_network_args(p, "HNSConfig")
    p.add_argument("--types", help="comma-separated neuron types among lif, alif, relu (default all three)")
    p.add_argument("--lambda-e", type=float, help="weight of the energy term in [0, 1] (default 0)")
    p.add_argument("--cost", help="energy:CHIP whose prices make the energy terms (default energy:generic-45nm-fp32)")
    p.add_argument("--energy-factors", choices=("hw", "paper"),
                   help="hw: the chip's prices on measured loads (default); paper: the constants 1 and 4.26")
    p.add_argument("--accounting", choices=("per-step", "per-inference"),
                   help="analog layers compute every step (per-step, default) or once per inference (the paper's)")
    add_run_args(p, "types")
    p.set_defaults(handler=cmd_hns)
    return p


def cmd_hns(args: argparse.Namespace) -> int:
    """Run (or resume) the HNS search described by parsed ``args``; prints the result and returns 0."""
    import torch

    from nasflow.hns_search import hns_config_from_args
    from nasflow.tps_search import run_tps_search

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = hns_config_from_args(search_config_mapping(args, _FLAGS))
    out = run_tps_search(cfg, args.out)
    energy = out.get("energy", {})
    summary = {"types": out["best"]["arch"], "val_accuracy": out["best"]["accuracy"],
               "energy_ratio": energy.get("e_ratio"), "accounting": energy.get("accounting"),
               "factors": energy.get("factors"), "search_steps": len(out["history"]) - 1}
    if "retrain" in out:
        summary["retrained_test_accuracy"] = out["retrain"]["test_accuracy"]
        summary[f"energy:{cfg.chip}"] = out["retrain"].get(f"energy:{cfg.chip}")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/search.json, history.png" + (" and retrain/" if "retrain" in out else ""))
    return 0
