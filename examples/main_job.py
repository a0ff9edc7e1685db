"""The main job through the Python API: search → retrain → NIR → Lava → hardware cost → report.

    python examples/main_job.py --out runs/example-main [--evaluations 60] [--lava-samples 100]

The same steps as ``nasflow run``; every step's result lands in ``--out/steps/`` and a re-run with the
same arguments resumes after the last finished step.
"""

from __future__ import annotations

import argparse

from nasflow.cli import summary_screen
from nasflow.pipeline import load_pipeline_config, run_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-main")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--supernet-epochs", type=int, default=40)
    parser.add_argument("--evaluations", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lava-samples", type=int, default=100)
    parser.add_argument("--chip", default="loihi")
    args = parser.parse_args()
    cfg = load_pipeline_config(None, {
        "model.channels": args.channels, "model.steps": args.steps, "autosnn.supernet_epochs": args.supernet_epochs,
        "autosnn.evaluations": args.evaluations, "autosnn.rounds": max(1, args.evaluations // 10),
        "autosnn.cost": f"energy:{args.chip}", "progress": False, "retrain.epochs": args.epochs,
        "retrain.progress": False, "lava.samples": args.lava_samples, "chip": args.chip,
    })
    report = run_pipeline(cfg, args.out, resume=True)
    print(summary_screen(report, args.out))


if __name__ == "__main__":
    main()
