"""TPS against the handcrafted decay on digits (the paper's Table VI comparison, at 2-core size).

    .venv/bin/python benchmarks/tps_study.py --study runs/tps_study [--seeds 0 1 2] [--threads 1] [--epochs 20]
        [--summary-only]

Per seed S: ``nasflow search tps --dataset digits --channels 8 --epochs E --warmup 5 --every 50 --retrain-epochs E
--seed S`` on the SpikeDHS baseline genotype (its neuron: λ = 0.2 everywhere), which retrains the found per-layer
decays from scratch (``STUDY/seedS/search/retrain``), and the handcrafted network (λ = 0.2 everywhere) trained with
the same recipe (``nasflow.tps_search.retrain_temporal(cfg, None, ...)``, ``STUDY/seedS/handcrafted``). The
retrained test accuracies are compared per seed ("k of 3"), and the search's epoch time is set against a training
epoch of the same network (the retrains' mean epoch seconds; not an alternated measurement). Every run is a
resumable nasflow run; finished runs are reused. Writes ``STUDY/study.json`` and ``STUDY/study.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from studies import mean_sd, run_nasflow, write_study


def run_seed(study: Path, seed: int, threads: int, epochs: int) -> None:
    import torch

    from nasflow.tps_search import TPSConfig, retrain_temporal

    d = study / f"seed{seed}"
    if not (d / "search" / "retrain" / "result.json").exists():
        run_nasflow(["search", "tps", "--dataset", "digits", "--channels", "8", "--epochs", str(epochs), "--warmup",
                     "5", "--every", "50", "--retrain-epochs", str(epochs), "--seed", str(seed), "--threads",
                     str(threads), "--no-progress", "--out", str(d / "search")], study / f"seed{seed}.log")
    if not (d / "handcrafted" / "result.json").exists():
        torch.set_num_threads(threads)
        print(f"seed {seed}: training the handcrafted network", file=sys.stderr)
        retrain_temporal(TPSConfig(channels=8, epochs=epochs, retrain_epochs=epochs, seed=seed, progress=False), None,
                         d / "handcrafted")


def _epoch_seconds(run: Path) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.mean(r["seconds"] for r in rows)


def summarise(study: Path, seeds: list[int]) -> dict[str, Any]:
    rows = []
    for seed in seeds:
        d = study / f"seed{seed}"
        if not ((d / "search" / "search.json").exists() and (d / "handcrafted" / "result.json").exists()):
            continue
        search = json.loads((d / "search" / "search.json").read_text())
        hand = json.loads((d / "handcrafted" / "result.json").read_text())
        found = [float(item.rpartition("=")[2]) for item in search["best"]["arch"].split(";")]
        rows.append({"seed": seed, "tps_accuracy": search["retrain"]["test_accuracy"],
                     "handcrafted_accuracy": hand["test_accuracy"], "search_steps": len(search["history"]) - 1,
                     "decays": {f"{v:g}": found.count(v) for v in sorted(set(found))},
                     "search_epoch_s": search["search_seconds"] / search["epochs"],
                     "train_epoch_s": _epoch_seconds(d / "handcrafted"),
                     "tps_spikes": search["retrain"]["spikes_per_sample"],
                     "handcrafted_spikes": hand["spikes_per_sample"]})
    wins = sum(r["tps_accuracy"] > r["handcrafted_accuracy"] for r in rows)
    return {"seeds": [r["seed"] for r in rows], "rows": rows, "tps_wins": wins}


def markdown(res: dict[str, Any]) -> str:
    lines = ["# TPS against the handcrafted decay (digits, SpikeDHS baseline genotype, C = 8, T = 6)", "",
             "| seed | TPS test acc | handcrafted test acc | search steps | decays found (count) | search epoch s | "
             "training epoch s |", "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        decays = ", ".join(f"{k}: {v}" for k, v in r["decays"].items())
        lines.append(f"| {r['seed']} | {r['tps_accuracy']:.4f} | {r['handcrafted_accuracy']:.4f} | "
                     f"{r['search_steps']} | {decays} | {r['search_epoch_s']:.1f} | {r['train_epoch_s']:.1f} |")
    rows = res["rows"]
    if rows:
        lines += ["", f"TPS {mean_sd([r['tps_accuracy'] for r in rows])}, handcrafted "
                  f"{mean_sd([r['handcrafted_accuracy'] for r in rows])}: TPS is more accurate in {res['tps_wins']} of "
                  f"{len(rows)} seeds. A search epoch costs {statistics.mean(r['search_epoch_s'] for r in rows):.1f} s "
                  f"against {statistics.mean(r['train_epoch_s'] for r in rows):.1f} s for a training epoch."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="runs/tps_study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--summary-only", action="store_true", help="only summarise the finished runs")
    args = parser.parse_args(argv)
    study = Path(args.study)
    study.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        for seed in args.seeds:
            run_seed(study, seed, args.threads, args.epochs)
    res = summarise(study, args.seeds)
    print(write_study(study, res, markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
