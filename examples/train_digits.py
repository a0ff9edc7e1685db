"""Train a small convolutional SNN on the bundled digits data with the Python API.

    python examples/train_digits.py --epochs 40 --out runs/example-digits

The same as `nasflow train --dataset digits`, spelled out: config → loaders → model → trainer
→ evaluation with activity accounting.
"""

from __future__ import annotations

import argparse
import json

from nasflow.config import TrainRunConfig, apply_overrides
from nasflow.train.run import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--arch", default="all-SCB_k3")
    parser.add_argument("--out", default="runs/example-digits")
    args = parser.parse_args()

    cfg = apply_overrides(
        TrainRunConfig(),
        {"train.epochs": args.epochs, "model.channels": args.channels, "model.steps": args.steps,
         "model.arch": args.arch, "train.progress": False},
    )
    result = run_training(cfg, args.out)
    print(json.dumps({k: result[k] for k in ("test_accuracy", "spikes_per_sample", "synops_per_sample")}, indent=2))


if __name__ == "__main__":
    main()
