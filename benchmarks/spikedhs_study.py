"""The SpikeDHS study on digits: searches with and without the hardware term, and DGS against a fixed temperature.

    .venv/bin/python benchmarks/spikedhs_study.py --study runs/spikedhs [--seeds 0 1 2] [--lam 0.05] [--chip loihi]
        [--threads 1] [--wide 16] [--summary-only]

Part 1 (issue 14): per seed, ``nasflow search spikedhs --seed S --cost energy:CHIP --lambda-hw L`` for L = 0 and
``--lam`` with the search defaults (C = 8, T = 6, 5 cells, 20 epochs of which 5 warm-up), each winner retrained
with the same recipe (30 epochs, SGD 0.05 cosine, cross-entropy). Every retrained winner is then costed on the
chip from its activity on the whole digits test split (the monitor's spike and synaptic-op counts, the same
counts the search prices). With ``--wide W`` (default 16) every winner is also retrained at C = W into
``retrain_cW`` (DARTS' practice of retraining wider than searched), same recipe otherwise. Part 2: a fixed
genotype (``DGS_GENOTYPE``) with the SpikeDHS neuron (Dspike, b = 3) trained at T = 4 for 15 epochs with and
without ``--dgs stem`` (a DGS round every 5 epochs on 10 batches), per seed. (``nasflow search spikedhs
--retrain-channels W`` retrains a winner wider the same way.)

Every run is a resumable nasflow run in ``STUDY/`` (run again to continue; finished runs are reused), so the
figures come from the same code a user runs. Writes ``STUDY/study.json`` and ``STUDY/study.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from studies import mean_sd, run_nasflow, write_study

DGS_GENOTYPE = ("paper:normal=conv3x3@1+skip@0,conv5x5@2+avg_pool3x3@1,dil_conv3x3@3+skip@2;"
                "reduce=conv3x3@0+skip@1,avg_pool3x3@0+skip@2,conv5x5@1+conv3x3@3")


def run_searches(study: Path, seeds: list[int], lams: list[float], chip: str, threads: int) -> None:
    for seed in seeds:
        for lam in lams:
            out = study / f"s{seed}_lam{lam:g}"
            if (out / "retrain" / "result.json").exists():
                continue
            run_nasflow(["search", "spikedhs", "--seed", str(seed), "--cost", f"energy:{chip}", "--lambda-hw",
                      f"{lam:g}", "--threads", str(threads), "--no-progress", "--out", str(out)],
                     study / f"s{seed}_lam{lam:g}.log")


def run_wide_retrains(study: Path, seeds: list[int], lams: list[float], channels: int, threads: int) -> None:
    """Retrain every winner again at ``channels`` (the search's recipe otherwise) into ``retrain_c{channels}``."""
    import torch

    from nasflow.spikedhs_search import SpikeDHSConfig, retrain_genotype

    torch.set_num_threads(threads)
    for seed in seeds:
        for lam in lams:
            d = study / f"s{seed}_lam{lam:g}"
            out = d / f"retrain_c{channels}"
            if (out / "result.json").exists():
                continue
            print(f"retraining {d.name} at C = {channels}", file=sys.stderr)
            genotype = json.loads((d / "search.json").read_text())["best"]["arch"]
            retrain_genotype(SpikeDHSConfig(seed=seed, retrain_channels=channels, progress=False), genotype, out)


def run_dgs(study: Path, seeds: list[int], threads: int) -> None:
    for seed in seeds:
        for mode in ("fixed", "dgs"):
            out = study / f"dgs_{mode}_s{seed}"
            if (out / "result.json").exists():
                continue
            extra = ["--dgs", "stem"] if mode == "dgs" else []
            run_nasflow(["train", "--set", "model.name=spikedhs", "--set", "model.neuron=null", "--arch", DGS_GENOTYPE,
                      "--channels", "8", "--steps",
                      "4", "--epochs", "15", "--seed", str(seed), "--set", "train.dgs_every=5", "--set",
                      "train.dgs_batches=10", *extra, "--loss", "ce", "--optimizer", "sgd", "--lr", "0.05",
                      "--batch-size", "64", "--set", "train.weight_decay=0.0003", "--augment", "none", "--threads",
                      str(threads), "--no-progress", "--out", str(out)], study / f"dgs_{mode}_s{seed}.log")


def chip_cost(model_path: Path, chip: str) -> dict[str, Any]:
    """Energy per sample (nJ), its terms and the test accuracy of a trained model on the whole digits test split."""
    import torch

    from exporters.nir_export import to_nir
    from hwmodels import build_layer_table, hw_report
    from nasflow.data import make_loaders
    from nasflow.evaluators.hw_cost import measured_totals
    from nasflow.models import load_model
    from nasflow.snn.activity import ActivityMonitor
    from nasflow.snn.neurons import reset_states

    net, _ = load_model(model_path)
    net.eval()
    loaders = make_loaders("digits", 512, seed=0, augment=False)
    correct = total = 0
    with torch.no_grad(), ActivityMonitor(net) as mon:
        for x, y in loaders.test:
            reset_states(net)
            correct += int((net(x).argmax(1) == y).sum())
            total += len(y)
    summary = mon.summary()
    graph = to_nir(net, dt=1e-3, validate=False)
    report = hw_report(graph, chip, activity=measured_totals(build_layer_table(graph), summary),
                       steps=int(net.steps), estimate_unmeasured=True)
    return {"accuracy": correct / total, "energy_nj": report.energy_per_sample_j * 1e9,
            "terms_nj": {k: v * 1e9 for k, v in report.energy_terms_j.items()},
            "spikes": summary["spikes_per_sample"], "cores": report.cores_used}


def summarise(study: Path, seeds: list[int], lams: list[float], chip: str, wide: int | None = None) -> dict[str, Any]:
    searches = []
    for seed in seeds:
        for lam in lams:
            d = study / f"s{seed}_lam{lam:g}"
            s = json.loads((d / "search.json").read_text())
            res = json.loads((d / "retrain" / "result.json").read_text())
            row = {"seed": seed, "lam_hw": lam, "genotype": s["best"]["arch"], "search_seconds": s["search_seconds"],
                   "search_val_accuracy": s["best"]["accuracy"], "test_accuracy": res["test_accuracy"],
                   **chip_cost(d / "retrain" / "model.pt", chip)}
            if wide and (d / f"retrain_c{wide}" / "result.json").exists():
                row["wide"] = {"channels": wide, **chip_cost(d / f"retrain_c{wide}" / "model.pt", chip)}
            searches.append(row)
    dgs = []
    for seed in seeds:
        for mode in ("fixed", "dgs"):
            d = study / f"dgs_{mode}_s{seed}"
            if not (d / "result.json").exists():
                continue
            rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines() if line.strip()]
            dgs.append({"seed": seed, "mode": mode, "test_accuracy": json.loads((d / "result.json").read_text())
                        ["test_accuracy"], "temperatures": [r.get("dgs_temperatures") for r in rows],
                        "test_accuracy_curve": [r["test_accuracy"] for r in rows]})
    return {"schema_version": 1, "chip": chip, "seeds": seeds, "lams": lams, "wide": wide, "searches": searches,
            "dgs": dgs}


def markdown(res: dict[str, Any]) -> str:
    lam0, lam1 = res["lams"]
    lines = ["# SpikeDHS study on digits", "", f"Chip: {res['chip']}. Energy per test sample of the retrained winner.",
             "", "| seed | λ_hw | genotype | search s | retrained test acc | energy nJ | spikes/sample |",
             "|---|---|---|---|---|---|---|"]
    for r in res["searches"]:
        lines.append(f"| {r['seed']} | {r['lam_hw']:g} | `{r['genotype']}` | {r['search_seconds']:.0f} | "
                     f"{r['test_accuracy']:.4f} | {r['energy_nj']:.1f} | {r['spikes']:.0f} |")
    by = {(r["seed"], r["lam_hw"]): r for r in res["searches"]}
    lower = sum(by[(s, lam1)]["energy_nj"] < by[(s, lam0)]["energy_nj"] for s in res["seeds"])
    within = sum(by[(s, lam1)]["test_accuracy"] >= by[(s, lam0)]["test_accuracy"] - 0.01 for s in res["seeds"])
    for lam in res["lams"]:
        accs = [by[(s, lam)]["test_accuracy"] for s in res["seeds"]]
        energy = [by[(s, lam)]["energy_nj"] for s in res["seeds"]]
        lines.append(f"\nλ_hw = {lam:g}: test accuracy {mean_sd(accs)}, energy {statistics.mean(energy):.1f} nJ")
    n = len(res["seeds"])
    lines.append(f"\nWith λ_hw = {lam1:g} the winner's energy is lower in {lower} of {n} seeds; its accuracy is "
                 f"at most 1 point below in {within} of {n}.")
    if all("wide" in r for r in res["searches"]):
        w = res["wide"]
        lines += ["", f"## The same winners retrained at C = {w}", "", "| seed | λ_hw | test acc | energy nJ |",
                  "|---|---|---|---|"]
        lines += [f"| {r['seed']} | {r['lam_hw']:g} | {r['wide']['accuracy']:.4f} | {r['wide']['energy_nj']:.1f} |"
                  for r in res["searches"]]
        for lam in res["lams"]:
            accs = [by[(s, lam)]["wide"]["accuracy"] for s in res["seeds"]]
            energy = [by[(s, lam)]["wide"]["energy_nj"] for s in res["seeds"]]
            lines.append(f"\nλ_hw = {lam:g} at C = {w}: test accuracy {mean_sd(accs)}, energy "
                         f"{statistics.mean(energy):.1f} nJ")
        lower = sum(by[(s, lam1)]["wide"]["energy_nj"] < by[(s, lam0)]["wide"]["energy_nj"] for s in res["seeds"])
        within = sum(by[(s, lam1)]["wide"]["accuracy"] >= by[(s, lam0)]["wide"]["accuracy"] - 0.01
                     for s in res["seeds"])
        lines.append(f"\nAt C = {w}, λ_hw = {lam1:g}: energy lower in {lower} of {n} seeds, accuracy at most 1 point "
                     f"below in {within} of {n}.")
    if res["dgs"]:
        lines += ["", "## DGS (stem) against a fixed temperature", "",
                  "| seed | mode | test acc | stem b per epoch |", "|---|---|---|---|"]
        for r in res["dgs"]:
            temps = [t.get("stem") if t else None for t in r["temperatures"]] if r["mode"] == "dgs" else []
            traj = " → ".join(f"{t:g}" for i, t in enumerate(temps) if t is not None and (i == 0 or t != temps[i - 1]))
            lines.append(f"| {r['seed']} | {r['mode']} | {r['test_accuracy']:.4f} | {traj or 'b = 3 fixed'} |")
        acc = {(r["seed"], r["mode"]): r["test_accuracy"] for r in res["dgs"]}
        pairs = [s for s in res["seeds"] if (s, "dgs") in acc and (s, "fixed") in acc]
        wins = sum(acc[(s, "dgs")] > acc[(s, "fixed")] for s in pairs)
        lines.append(f"\nDGS is more accurate than the fixed temperature in {wins} of {len(pairs)} seeds.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="runs/spikedhs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lam", type=float, default=0.05)
    parser.add_argument("--chip", default="loihi")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wide", type=int, default=16,
                        help="also retrain every winner at this C (0: no); the search's C stays as searched")
    parser.add_argument("--summary-only", action="store_true", help="only summarise the finished runs")
    args = parser.parse_args(argv)
    study = Path(args.study)
    study.mkdir(parents=True, exist_ok=True)
    lams = [0.0, args.lam]
    if not args.summary_only:
        run_searches(study, args.seeds, lams, args.chip, args.threads)
        if args.wide:
            run_wide_retrains(study, args.seeds, lams, args.wide, args.threads)
        run_dgs(study, args.seeds, args.threads)
    res = summarise(study, args.seeds, lams, args.chip, args.wide or None)
    print(write_study(study, res, markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
