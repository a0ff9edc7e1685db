"""Energy-aware AutoSNN search on digits with the Python API.

    python examples/search_autosnn.py --out runs/example-search [--chip loihi] [--lam -0.08]

Trains a supernet (single-path uniform sampling), then runs the evolutionary search with the fitness
``acc · (energy / energy_avg)^λ`` where energy comes from the hardware model of the chosen chip.
Prints the winner and writes ``search.json`` and ``journal.jsonl`` in ``--out`` (re-running resumes).
"""

from __future__ import annotations

import argparse
import json

from nasflow.search import AutoSNNSearchConfig, run_autosnn_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-search")
    parser.add_argument("--chip", default="loihi")
    parser.add_argument("--lam", type=float, default=-0.08)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--supernet-epochs", type=int, default=40)
    parser.add_argument("--evaluations", type=int, default=60)
    args = parser.parse_args()

    cfg = AutoSNNSearchConfig(
        channels=args.channels, steps=args.steps, supernet_epochs=args.supernet_epochs,
        evaluations=args.evaluations, rounds=max(1, args.evaluations // 10), lam=args.lam,
        cost=f"energy:{args.chip}", budgets={"cores": 128}, progress=False,
    )
    result = run_autosnn_search(cfg, args.out)
    best = result["best"]
    print(json.dumps({"arch": best["arch"], "accuracy": best["accuracy"], "energy_j": best[f"energy:{args.chip}"],
                      "evaluated": len(result["evaluated"])}, indent=2))


if __name__ == "__main__":
    main()
