"""Quantisation-aware fine-tuning variants on trained digits models: which loss and step keep fixed point within a
point of float over seeds.

    .venv/bin/python benchmarks/qat_variants.py [--seeds 0 1 2] [--arch all-SCB_k3] [--epochs 4]
                                                [--variants 0.5:2e-3 1.0:2e-3 0.5:1e-3] [--out runs/qat_variants]

For each seed it trains (or reuses) ``nasflow train --arch ARCH --epochs 20 --seed S`` in ``OUT/seedS``, then runs
``nasflow.train.qat.qat_lava`` once per variant ``DISTILL:LR`` for ``--epochs`` epochs on D_train, with D_val
choosing the epoch kept, and prints float accuracy, fixed point before and after (kept epoch) and every epoch's test
accuracy. Writes ``OUT/qat_variants.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arch", default="all-SCB_k3")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--variants", nargs="+", default=["0.5:2e-3", "1.0:2e-3", "0.5:1e-3"])
    parser.add_argument("--out", default="runs/qat_variants")
    args = parser.parse_args()
    from exporters.nir_export import to_nir
    from nasflow.data.batches import split_batches
    from nasflow.models import load_model
    from nasflow.train.qat import QATConfig, qat_lava

    torch.set_num_threads(2)
    out = Path(args.out)
    rows = []
    for seed in args.seeds:
        run = out / f"seed{seed}"
        if not (run / "model.pt").exists():
            subprocess.run([sys.executable, "-m", "nasflow.cli", "train", "--arch", args.arch, "--epochs", "20",
                            "--seed", str(seed), "--out", str(run), "--no-progress"], check=True, cwd=ROOT)
        result = json.loads((run / "result.json").read_text())
        model, _ = load_model(run / "model.pt")
        graph = to_nir(model.eval(), dt=1e-3)

        def batches(split: str, size: int, seed: int = seed):
            return lambda: split_batches("digits", None, seed, 8, size, None, split)

        train = batches("dtrain", 32)
        for variant in args.variants:
            distill, lr = (float(v) for v in variant.split(":"))
            r = qat_lava(graph, train, batches("test", 256), 10, next(iter(train()))[0],
                         QATConfig(epochs=args.epochs, distill=distill, lr=lr), 1e-3, lambda _msg: None,
                         batches("dval", 256))
            row = {"seed": seed, "distill": distill, "lr": lr, "float": result["test_accuracy"],
                   "before": r.fixed_accuracy_before, "after": r.fixed_accuracy_after, "kept_epoch": r.kept_epoch,
                   "epochs_test": [h["fixed_accuracy"] for h in r.history], "seconds": r.seconds}
            rows.append(row)
            print(f"seed {seed} distill {distill:g} lr {lr:g}: float {100 * row['float']:.2f}  fixed before "
                  f"{100 * row['before']:.2f}  after {100 * row['after']:.2f} (epoch {row['kept_epoch']})  per epoch "
                  + " ".join(f"{100 * a:.2f}" for a in row["epochs_test"]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "qat_variants.json").write_text(json.dumps({"arch": args.arch, "rows": rows}, indent=2))
    for variant in args.variants:
        distill, lr = (float(v) for v in variant.split(":"))
        sel = [r for r in rows if r["distill"] == distill and r["lr"] == lr]
        within = sum(r["float"] - r["after"] <= 0.01 + 1e-12 for r in sel)
        print(f"distill {distill:g} lr {lr:g}: within 1 point of float on {within} of {len(sel)} seeds")


if __name__ == "__main__":
    main()
