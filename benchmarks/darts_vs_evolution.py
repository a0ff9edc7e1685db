"""DARTS (in-training) vs AutoSNN's evolutionary search (supernet + evolution) on digits, at equal wall time.

    .venv/bin/python benchmarks/darts_vs_evolution.py --out runs/darts-vs-evolution [--seed 0] [--epochs 30]
    .venv/bin/python benchmarks/darts_vs_evolution.py --tiny --out /tmp/dve   # a minute: shows the path works

1. DARTS over SNN_1's block choices for ``--epochs`` epochs; its wall time W is the budget.
2. A short probe of the evolutionary search (1 supernet epoch, 20 evaluations) measures the seconds per
   supernet epoch and per candidate evaluation on this machine; the evolution then gets the default 200
   evaluations (fewer if they would take over a quarter of W) and as many supernet epochs as fit in the rest of W.
3. Both winners are retrained from scratch with one recipe (``nasflow.train.run.run_training``: the digits
   defaults, ``--retrain-epochs``) and tested.

Prints a table (winner, test accuracy, spikes per sample, search seconds) and writes ``comparison.json`` in
``--out``. Every run directory is resumable, so an interrupted comparison continues.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from exporters.core.jsonio import SCHEMA_VERSION, write_json
from nasflow.config import TrainRunConfig, apply_overrides
from nasflow.search import AutoSNNSearchConfig, run_autosnn_search
from nasflow.strategies.darts import DartsConfig, run_darts_autosnn
from nasflow.train.run import run_training

PROBE_EVALUATIONS = 20
MAX_EVALUATIONS = 200
EVALUATION_SHARE = 0.25  # at most this share of the budget goes to candidate evaluations


def plan_evolution(budget_s: float, epoch_s: float, evaluation_s: float) -> tuple[int, int]:
    """(supernet epochs, evaluations) whose measured cost fits ``budget_s``; at least one epoch, 20 evaluations."""
    evaluations = int(min(MAX_EVALUATIONS, max(PROBE_EVALUATIONS, EVALUATION_SHARE * budget_s / evaluation_s)))
    epochs = max(1, math.floor((budget_s - evaluations * evaluation_s) / epoch_s))
    return epochs, evaluations


def _retrain(out: Path, arch: str, seed: int, channels: int, steps: int, epochs: int) -> dict[str, Any]:
    if (out / "result.json").exists():
        return json.loads((out / "result.json").read_text())
    cfg = apply_overrides(TrainRunConfig(), {
        "model.arch": arch, "model.channels": channels, "model.steps": steps, "train.epochs": epochs,
        "train.seed": seed, "train.progress": False,
    })
    return run_training(cfg, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/darts-vs-evolution")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30, help="DARTS search epochs (sets the wall-time budget)")
    parser.add_argument("--retrain-epochs", type=int, default=40)
    parser.add_argument("--darts-lam", type=float, default=0.0, help="DARTS spike-cost weight (0: plain DARTS)")
    parser.add_argument("--evo-lam", type=float, default=-0.08, help="evolution fitness λ (AutoSNN's default)")
    parser.add_argument("--tiny", action="store_true", help="4 channels, 2 steps, 1 epoch everywhere: a smoke run")
    args = parser.parse_args()
    root = Path(args.out)
    channels, steps = (4, 2) if args.tiny else (16, 8)
    darts_epochs, retrain_epochs = (1, 1) if args.tiny else (args.epochs, args.retrain_epochs)

    darts_cfg = DartsConfig(channels=channels, steps=steps, epochs=darts_epochs, lam=args.darts_lam,
                            seed=args.seed, progress=False, max_samples=256 if args.tiny else None)
    t0 = time.perf_counter()
    darts = run_darts_autosnn(darts_cfg, root / "darts")
    budget = darts["search_seconds"]
    print(f"DARTS: {darts['best']['arch']} in {budget:.1f} s ({time.perf_counter() - t0:.1f} s with data loading)")

    evo_base = dict(channels=channels, steps=steps, seed=args.seed, lam=args.evo_lam, progress=False)
    probe = run_autosnn_search(AutoSNNSearchConfig(**evo_base, supernet_epochs=1, evaluations=PROBE_EVALUATIONS,
                                                   rounds=1), root / "evolution-probe")
    epoch_s = probe["supernet_seconds"]
    evaluation_s = probe["search_seconds"] / max(len(probe["evaluated"]), 1)
    sn_epochs, evaluations = plan_evolution(budget, epoch_s, evaluation_s)
    print(f"evolution plan: {sn_epochs} supernet epochs ({epoch_s:.2f} s each) + {evaluations} evaluations "
          f"({evaluation_s:.3f} s each) for a {budget:.1f} s budget")
    evo = run_autosnn_search(AutoSNNSearchConfig(**evo_base, supernet_epochs=sn_epochs, evaluations=evaluations),
                             root / "evolution")
    evo_seconds = evo["supernet_seconds"] + evo["search_seconds"]

    rows = []
    for name, result, seconds in (("darts", darts, budget), ("evolution", evo, evo_seconds)):
        arch = result["best"]["arch"]
        trained = _retrain(root / f"retrain-{name}", arch, args.seed, channels, steps, retrain_epochs)
        rows.append({"strategy": name, "arch": arch, "test_accuracy": trained["test_accuracy"],
                     "spikes_per_sample": trained["spikes_per_sample"], "search_seconds": seconds})
    print("\n| strategy | winner | test acc | spikes/sample | search s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['arch']} | {r['test_accuracy']:.4f} | {r['spikes_per_sample']:.1f} "
              f"| {r['search_seconds']:.1f} |")
    write_json(root / "comparison.json", {
        "schema_version": SCHEMA_VERSION, "tiny": args.tiny, "seed": args.seed, "budget_seconds": budget,
        "evolution_plan": {"supernet_epochs": sn_epochs, "evaluations": evaluations, "epoch_seconds": epoch_s,
                           "evaluation_seconds": evaluation_s},
        "darts_config": darts["config"], "retrain_epochs": retrain_epochs, "rows": rows,
    })
    print(f"wrote {root / 'comparison.json'}")


if __name__ == "__main__":
    main()
