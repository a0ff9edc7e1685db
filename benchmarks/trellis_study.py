"""The SpikeDHS layer study on generated event stereo: searched resolution path against the released fixed path.

    .venv/bin/python benchmarks/trellis_study.py --study runs/trellis_study [--seeds 0 1 2] [--threads 1]
        [--retrain-epochs 12] [--deploy-samples 8] [--chip loihi] [--summary-only]

Per seed S: ``nasflow search spikedhs --task stereo --seed S`` at the documented default size (stereo-dots at
24x24, 6 layers over 3 levels, C = 4, T = 4, 10 search epochs on 400 + 400 samples; its wall time is the
≤ 20-minute figure), then two retrainings from scratch with one recipe (``nasflow.trellis_search.retrain_trellis``:
``--retrain-epochs`` epochs of SGD 0.05 cosine on the first 800 training samples, tested on the first 400 test
samples): the searched cell on the Viterbi-decoded path (``STUDY/seedS/searched``), and the same cell on the
released code's fixed path ``[0,0,1,1,1,2,2,2]`` mapped onto the same trellis (``released_path``: ``0,0,1,1,2,2``
for 6 layers; ``STUDY/seedS/released``). Lower test mean disparity error wins a seed; the result is stated as
"k of 3".

Deployment, per seed's searched network: ``nasflow simulate model.pt --dataset stereo-dots --backend lava
--compare torch`` on ``--deploy-samples`` test samples (both cameras: twice as many chip samples), per-layer
precision/recall against the torch reference and the disparity read from Lava's spikes, then ``nasflow hw
model.pt --activity ... --chip CHIP`` (cores, energy per camera stream) with the host's matching operations.

Every run is a resumable nasflow run in ``STUDY/`` (run again to continue; finished runs are reused). Writes
``STUDY/study.json`` and ``STUDY/study.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


def _nasflow(args: list[str], log: Path) -> None:
    print("nasflow " + " ".join(args), file=sys.stderr)
    with open(log, "a") as fh:
        subprocess.run([sys.executable, "-m", "nasflow.cli", *args], stdout=fh, stderr=subprocess.STDOUT, check=True)


def _released_arch(searched: str) -> str:
    from nasflow.spaces.trellis import parse_trellis_arch, released_path
    from nasflow.trellis_search import TrellisSearchConfig

    arch = parse_trellis_arch(searched)
    path = released_path(TrellisSearchConfig().space().trellis)
    return f"{arch.preset}:cell={arch.cell.format()};path={','.join(map(str, path))}"


def run_seed(study: Path, seed: int, threads: int, epochs: int) -> None:
    import torch

    from nasflow.trellis_search import TrellisSearchConfig, retrain_trellis

    d = study / f"seed{seed}"
    if not (d / "search" / "search.json").exists():
        _nasflow(["search", "spikedhs", "--task", "stereo", "--seed", str(seed), "--threads", str(threads),
                  "--no-progress", "--out", str(d / "search")], study / f"seed{seed}.log")
    searched = json.loads((d / "search" / "search.json").read_text())["best"]["arch"]
    torch.set_num_threads(threads)
    cfg = TrellisSearchConfig(seed=seed, retrain_epochs=epochs, progress=False)
    for name, arch in (("searched", searched), ("released", _released_arch(searched))):
        if not (d / name / "result.json").exists():
            print(f"seed {seed}: retraining the {name} path ({arch})", file=sys.stderr)
            retrain_trellis(cfg, arch, d / name)


def deploy(study: Path, seed: int, samples: int, chip: str) -> None:
    """Lava float and the chip model for a seed's searched network; a path that cannot be exported (an up move:
    NIR has no up-sampling node) is recorded in ``searched/deploy_error.txt`` instead."""
    d = study / f"seed{seed}" / "searched"
    try:
        if not (d / "lava" / "simulate.json").exists():
            _nasflow(["simulate", str(d / "model.pt"), "--dataset", "stereo-dots", "--samples", str(samples),
                      "--backend", "lava", "--compare", "torch", "--out", str(d / "lava")], study / f"seed{seed}.log")
        if not (d / "hw" / "hw.json").exists():
            _nasflow(["hw", str(d / "model.pt"), "--activity", str(d / "lava" / "activity.npz"), "--chip", chip,
                      "--out", str(d / "hw")], study / f"seed{seed}.log")
    except subprocess.CalledProcessError:
        tail = (study / f"seed{seed}.log").read_text().splitlines()[-1:]
        (d / "deploy_error.txt").write_text("\n".join(tail) + "\n")


def summarise(study: Path, seeds: list[int]) -> dict[str, Any]:
    rows = []
    for seed in seeds:
        d = study / f"seed{seed}"
        if not all((d / n / "result.json").exists() for n in ("searched", "released")):
            continue
        search = json.loads((d / "search" / "search.json").read_text())
        row: dict[str, Any] = {"seed": seed, "search_seconds": search["search_seconds"]}
        for name in ("searched", "released"):
            r = json.loads((d / name / "result.json").read_text())
            row[name] = {"arch": r["arch"], "path": r["arch"].rpartition("path=")[2],
                         "mean_disparity_error": r["test_mean_disparity_error"],
                         "one_pixel_accuracy": r["test_accuracy"], "spikes_per_camera": r["spikes_per_sample"],
                         "synops_per_camera": r["synops_per_sample"], "test_samples": r["test_samples"],
                         "epochs": r["epochs"], "host_ops": r["host_ops_per_sample"]}
        sim, hw = d / "searched" / "lava" / "simulate.json", d / "searched" / "hw" / "hw.json"
        if sim.exists() and hw.exists():
            s, h = json.loads(sim.read_text()), json.loads(hw.read_text())
            row["deploy"] = {"stereo_samples": s["stereo_samples"], "min_precision": s["compare"]["min_precision"],
                             "min_recall": s["compare"]["min_recall"], "lava_one_pixel_accuracy": s["accuracy"],
                             "lava_mean_disparity_error": s["mean_disparity_error"], "chip": h["chip"],
                             "cores": h["cores_used"], "energy_per_camera_j": h["energy_per_sample_j"],
                             "host_ops": s["host_ops_per_stereo_sample"]}
        elif (d / "searched" / "deploy_error.txt").exists():
            row["deploy"] = {"error": (d / "searched" / "deploy_error.txt").read_text().strip()}
        rows.append(row)
    wins = sum(r["searched"]["mean_disparity_error"] < r["released"]["mean_disparity_error"] for r in rows)
    return {"seeds": [r["seed"] for r in rows], "rows": rows, "searched_wins": wins}


def _mean_sd(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def markdown(res: dict[str, Any]) -> str:
    lines = ["# SpikeDHS layer study (generated event stereo, 24x24, 6 layers × 3 levels)", "",
             "| seed | search s | searched path | MDE px | 1PA | released path | MDE px | 1PA |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        s, f = r["searched"], r["released"]
        lines.append(f"| {r['seed']} | {r['search_seconds']:.0f} | {s['path']} | {s['mean_disparity_error']:.3f} | "
                     f"{s['one_pixel_accuracy']:.3f} | {f['path']} | {f['mean_disparity_error']:.3f} | "
                     f"{f['one_pixel_accuracy']:.3f} |")
    rows = res["rows"]
    if rows:
        mde = {n: _mean_sd([r[n]["mean_disparity_error"] for r in rows]) for n in ("searched", "released")}
        lines += ["", f"Mean disparity error, searched {mde['searched']} px, released {mde['released']} px. The "
                  f"searched path has the lower error in {res['searched_wins']} of {len(rows)} seeds."]
    dep = [r for r in rows if "deploy" in r and "error" not in r["deploy"]]
    lines += [f"\nSeed {r['seed']}'s searched network was not deployed: {r['deploy']['error']}"
              for r in rows if "error" in r.get("deploy", {})]
    if dep:
        lines += ["", "## The searched feature networks on Lava (float) and the chip model", "",
                  "| seed | stereo samples | min precision | min recall | Lava MDE px | Lava 1PA | chip | cores | "
                  "energy per camera µJ |", "|---|---|---|---|---|---|---|---|---|"]
        for r in dep:
            x = r["deploy"]
            lines.append(f"| {r['seed']} | {x['stereo_samples']} | {x['min_precision']:.4f} | {x['min_recall']:.4f} | "
                         f"{x['lava_mean_disparity_error']:.3f} | {x['lava_one_pixel_accuracy']:.3f} | {x['chip']} | "
                         f"{x['cores']} | {x['energy_per_camera_j'] * 1e6:.2f} |")
        ops = dep[0]["deploy"]["host_ops"]
        lines += ["", "Host operations per stereo sample (seed " + str(dep[0]["seed"]) + "): "
                  + ", ".join(f"{k} {v:,}" for k, v in ops.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="runs/trellis_study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--retrain-epochs", type=int, default=12)
    parser.add_argument("--deploy-samples", type=int, default=8)
    parser.add_argument("--chip", default="loihi")
    parser.add_argument("--summary-only", action="store_true", help="only summarise the finished runs")
    args = parser.parse_args(argv)
    study = Path(args.study)
    study.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        for seed in args.seeds:
            run_seed(study, seed, args.threads, args.retrain_epochs)
            deploy(study, seed, args.deploy_samples, args.chip)
    res = summarise(study, args.seeds)
    (study / "study.json").write_text(json.dumps(res, indent=2))
    text = markdown(res)
    (study / "study.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
