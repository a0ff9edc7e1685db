"""Export a trained model to NIR and simulate it on torch and on Lava, then compare spike by spike.

    python examples/export_and_simulate.py --model runs/example-digits/model.pt --samples 50 --out runs/example-sim

Without ``--model`` it trains a small digits model first (``--epochs``). Writes ``model.nir`` and
``equivalence.json`` (per-layer precision and recall of Lava against the torch reference, and accuracies).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from exporters import lava
from exporters.core.jsonio import SCHEMA_VERSION
from exporters.core.traversal import output_ids, predecessors
from exporters.equivalence import accuracy_from_output, compare_activity
from exporters.nir_export import to_nir
from exporters.nir_io import read_nir, write_nir
from exporters.nir_torch import simulate as torch_simulate
from nasflow.config import TrainRunConfig, apply_overrides
from nasflow.data import make_loaders
from nasflow.models import load_model
from nasflow.train.run import run_training


def _digits_test(samples: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    loaders = make_loaders("digits", samples, seed=0, augment=False)
    x, y = next(iter(loaders.test))
    seq = np.broadcast_to(x.numpy()[None], (steps, *x.shape)).astype(np.float32)
    return seq, y.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model.pt of a nasflow training run")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--fixed-point", action="store_true", help="also run Lava's fixed-point models")
    parser.add_argument("--out", default="runs/example-sim")
    args = parser.parse_args()
    out = Path(args.out)
    if args.model is None:
        cfg = apply_overrides(TrainRunConfig(), {"train.epochs": args.epochs, "train.progress": False,
                                                 "model.arch": "SRB_k3,skip,skip,skip,skip"})
        run_training(cfg, out / "train")
        args.model = str(out / "train" / "model.pt")

    model, _ = load_model(args.model)
    write_nir(out / "model.nir", to_nir(model, dt=1e-3))
    graph = read_nir(out / "model.nir")  # what a deployment tool would read
    head = predecessors(graph, output_ids(graph)[0])[0]
    x, labels = _digits_test(args.samples, model.steps)
    reference = torch_simulate(graph, x)
    report = {"schema_version": SCHEMA_VERSION, "samples": len(labels),
              "torch_accuracy": accuracy_from_output(reference, labels, head)}
    for name, fixed in [("lava", False)] + ([("lava_fixed", True)] if args.fixed_point else []):
        activity = lava.simulate(graph, x, fixed_point=fixed, timeout_s=600)
        report[f"{name}_accuracy"] = accuracy_from_output(activity, labels, head)
        report[f"{name}_compare"] = compare_activity(reference, activity, nodes=graph)
    (out / "equivalence.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if not k.endswith("_compare")} | {
        "lava_min_precision": report["lava_compare"]["min_precision"],
        "lava_min_recall": report["lava_compare"]["min_recall"]}, indent=2))


if __name__ == "__main__":
    main()
