"""The SpikeDHS layer study on generated event stereo: searched resolution path against the released fixed path.

    .venv/bin/python benchmarks/trellis_study.py --study runs/trellis_study [--seeds 0 1 2] [--threads 1]
        [--size 24 --rates 3,2,2,2] [--retrain-epochs 12] [--probe-layers 1 2 3] [--deploy-samples 8]
        [--chip loihi] [--summary-only]

Per seed S: ``nasflow search spikedhs --task stereo --seed S`` at the documented default size (stereo-dots at
24x24 with rates 3, 2, 2, 6 layers over 3 levels, C = 4, T = 4, 10 search epochs on 400 + 400 samples; its wall
time is the ≤ 20-minute figure when run alone), then two retrainings from scratch with one recipe
(``nasflow.trellis_search.retrain_trellis``:
``--retrain-epochs`` epochs of SGD 0.05 cosine on the first 800 training samples, tested on the first 400 test
samples): the searched cell on the Viterbi-decoded path (``STUDY/seedS/searched``), and the same cell on the
released code's fixed path ``[0,0,1,1,1,2,2,2]`` mapped onto the same trellis (``released_path``: ``0,0,1,1,2,2``
for 6 layers; ``STUDY/seedS/released``). Lower test mean disparity error wins a seed; the result is stated as
"k of 3".

Deployment, per seed's searched network: ``nasflow simulate model.pt --dataset stereo-dots --backend lava
--compare torch`` on ``--deploy-samples`` test samples (both cameras: twice as many chip samples), per-layer
precision/recall against the torch reference and the disparity read from Lava's spikes, then ``nasflow hw
model.pt --activity ... --chip CHIP`` (cores, energy per camera stream) with the host's matching operations.

Two references put the errors in scale, on the same test samples: the median training disparity predicted
everywhere, and a hand-made matcher with no learning (the raw event frames of both cameras, time steps as
channels, average-pooled to the level-0 resolution, correlated, averaged over a 3x3 window, scaled by 80 and read
by the same sub-pixel estimator), also at full resolution.

``--probe-layers`` retrains seed 0's searched cell on an all-level-0 path of each given depth with the same recipe
(``STUDY/probe/layersL``): whether a shallower feature network learns what the deeper ones do not.

Every run is a resumable nasflow run in ``STUDY/`` (run again to continue; finished runs are reused). Writes
``STUDY/study.json`` and ``STUDY/study.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from studies import mean_sd, run_nasflow, write_study


def _config(seed: int, size: int, rates: list[int], epochs: int = 1):
    from nasflow.trellis_search import TrellisSearchConfig

    return TrellisSearchConfig(seed=seed, size=size, rates=rates, retrain_epochs=epochs, progress=False)


def _released_arch(searched: str, size: int, rates: list[int]) -> str:
    from nasflow.spaces.trellis import parse_trellis_arch, released_path

    arch = parse_trellis_arch(searched)
    path = released_path(_config(0, size, rates).space().trellis)
    return f"{arch.preset}:cell={arch.cell.format()};path={','.join(map(str, path))}"


def run_seed(study: Path, seed: int, threads: int, epochs: int, size: int, rates: list[int]) -> None:
    import torch

    from nasflow.trellis_search import retrain_trellis

    d = study / f"seed{seed}"
    if not (d / "search" / "search.json").exists():
        run_nasflow(["search", "spikedhs", "--task", "stereo", "--seed", str(seed), "--size", str(size), "--rates",
                  ",".join(map(str, rates)), "--threads", str(threads), "--no-progress", "--out", str(d / "search")],
                 study / f"seed{seed}.log")
    searched = json.loads((d / "search" / "search.json").read_text())["best"]["arch"]
    torch.set_num_threads(threads)
    cfg = _config(seed, size, rates, epochs)
    for name, arch in (("searched", searched), ("released", _released_arch(searched, size, rates))):
        if not (d / name / "result.json").exists():
            print(f"seed {seed}: retraining the {name} path ({arch})", file=sys.stderr)
            retrain_trellis(cfg, arch, d / name)


def probe(study: Path, layers: list[int], threads: int, epochs: int, size: int, rates: list[int]) -> None:
    import dataclasses

    import torch

    from nasflow.spaces.trellis import parse_trellis_arch
    from nasflow.trellis_search import retrain_trellis

    torch.set_num_threads(threads)
    cell = parse_trellis_arch(json.loads((study / "seed0" / "search" / "search.json").read_text())["best"]["arch"])
    for n in layers:
        out = study / "probe" / f"layers{n}"
        if not (out / "result.json").exists():
            arch = f"{cell.preset}:cell={cell.cell.format()};path={','.join(['0'] * n)}"
            print(f"probe: retraining {arch}", file=sys.stderr)
            retrain_trellis(dataclasses.replace(_config(0, size, rates, epochs), layers=n), arch, out)


def deploy(study: Path, seed: int, samples: int, chip: str) -> None:
    """Lava float and the chip model for a seed's searched network; a path that cannot be exported (an up move:
    NIR has no up-sampling node) is recorded in ``searched/deploy_error.txt`` instead."""
    d = study / f"seed{seed}" / "searched"
    try:
        if not (d / "lava" / "simulate.json").exists():
            run_nasflow(["simulate", str(d / "model.pt"), "--dataset", "stereo-dots", "--samples", str(samples),
                      "--backend", "lava", "--compare", "torch", "--out", str(d / "lava")], study / f"seed{seed}.log")
        if not (d / "hw" / "hw.json").exists():
            run_nasflow(["hw", str(d / "model.pt"), "--activity", str(d / "lava" / "activity.npz"), "--chip", chip,
                      "--out", str(d / "hw")], study / f"seed{seed}.log")
    except subprocess.CalledProcessError:
        tail = (study / f"seed{seed}.log").read_text().splitlines()[-1:]
        (d / "deploy_error.txt").write_text("\n".join(tail) + "\n")


def baselines(size: int, rates: list[int]) -> dict[str, dict[str, float]]:
    """The two references of the module docstring on the retrainings' test samples."""
    import torch
    from torch.nn import functional as F

    from nasflow.data import make_loaders
    from nasflow.data.loaders import first_samples
    from nasflow.snn.stereo import cost_volume, disparity_levels, upsample_cost
    from nasflow.train.tasks import StereoTask

    cfg = _config(0, size, rates)
    loaders = make_loaders(cfg.dataset, 50, T=cfg.steps, size=size)
    train = torch.cat([d for _, d in first_samples(loaders.train, cfg.retrain_samples or 10**9, False, 0)])
    median = float(train[torch.isfinite(train)].median())
    step = rates[0]
    task = StereoTask(step)
    sums: dict[str, dict[str, float]] = {"median": {}, "window_correlation": {}, "window_correlation_full": {}}

    def add(name: str, tally: dict[str, float]) -> None:
        for k, v in tally.items():
            sums[name][k] = sums[name].get(k, 0.0) + v

    for x, d in first_samples(loaders.test, cfg.test_samples or 10**9, False, 0):
        add("median", task.tally_prediction(torch.full_like(d, median), d))
        for name, k in (("window_correlation", step), ("window_correlation_full", 1)):
            left, right = (F.avg_pool2d(x[:, :, c].flatten(1, 2), k) for c in (slice(0, 2), slice(2, 4)))
            cost = F.avg_pool2d(cost_volume(left, right, disparity_levels(loaders.spec.num_classes, k)), 3, 1, 1,
                                count_include_pad=False) * 80.0
            add(name, StereoTask(k).tally(upsample_cost(cost, (size, size)), d))
    out = {name: task.metrics(s) for name, s in sums.items()}
    out["median"]["median_px"] = median
    return out


def summarise(study: Path, seeds: list[int], size: int, rates: list[int]) -> dict[str, Any]:
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
    probes = []
    for f in sorted((study / "probe").glob("layers*/result.json"), key=lambda p: int(p.parent.name[6:])):
        r = json.loads(f.read_text())
        probes.append({"layers": int(f.parent.name[6:]), "mean_disparity_error": r["test_mean_disparity_error"],
                       "one_pixel_accuracy": r["test_accuracy"], "path": r["arch"].rpartition("path=")[2]})
    return {"size": size, "rates": rates, "seeds": [r["seed"] for r in rows], "rows": rows, "searched_wins": wins,
            "baselines": baselines(size, rates), "probe": probes}


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# SpikeDHS layer study (generated event stereo, {res['size']}x{res['size']}, rates "
             f"{','.join(map(str, res['rates']))}, 6 layers × 3 levels)", "",
             "| seed | search s | searched path | MDE px | 1PA | released path | MDE px | 1PA |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        s, f = r["searched"], r["released"]
        lines.append(f"| {r['seed']} | {r['search_seconds']:.0f} | {s['path']} | {s['mean_disparity_error']:.3f} | "
                     f"{s['one_pixel_accuracy']:.3f} | {f['path']} | {f['mean_disparity_error']:.3f} | "
                     f"{f['one_pixel_accuracy']:.3f} |")
    rows = res["rows"]
    if rows:
        mde = {n: mean_sd([r[n]["mean_disparity_error"] for r in rows], 3) for n in ("searched", "released")}
        lines += ["", f"Mean disparity error, searched {mde['searched']} px, released {mde['released']} px. The "
                  f"searched path has the lower error in {res['searched_wins']} of {len(rows)} seeds."]
    med, win = res["baselines"]["median"], res["baselines"]["window_correlation"]
    full = res["baselines"]["window_correlation_full"]
    lines += ["", f"References on the same test samples: the median training disparity ({med['median_px']:g} px) "
              f"everywhere {med['mean_disparity_error']:.3f} px (1PA {med['accuracy']:.3f}); hand-made window "
              f"correlation at the level-0 step {win['mean_disparity_error']:.3f} px (1PA {win['accuracy']:.3f}), "
              f"at full resolution {full['mean_disparity_error']:.3f} px (1PA {full['accuracy']:.3f})."]
    if res.get("probe"):
        lines += ["", "## Depth probe: seed 0's cell on an all-level-0 path, same recipe", "",
                  "| layers | MDE px | 1PA |", "|---|---|---|"]
        lines += [f"| {p['layers']} | {p['mean_disparity_error']:.3f} | {p['one_pixel_accuracy']:.3f} |"
                  for p in res["probe"]]
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
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--rates", type=lambda v: [int(r) for r in v.split(",")], default=[3, 2, 2, 2])
    parser.add_argument("--retrain-epochs", type=int, default=12)
    parser.add_argument("--deploy-samples", type=int, default=8)
    parser.add_argument("--chip", default="loihi")
    parser.add_argument("--probe-layers", type=int, nargs="*", default=[],
                        help="also retrain seed 0's cell on all-level-0 paths of these depths")
    parser.add_argument("--summary-only", action="store_true", help="only summarise the finished runs")
    args = parser.parse_args(argv)
    study = Path(args.study)
    study.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        for seed in args.seeds:
            run_seed(study, seed, args.threads, args.retrain_epochs, args.size, args.rates)
            deploy(study, seed, args.deploy_samples, args.chip)
        if args.probe_layers:
            probe(study, args.probe_layers, args.threads, args.retrain_epochs, args.size, args.rates)
    res = summarise(study, args.seeds, args.size, args.rates)
    print(write_study(study, res, markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
