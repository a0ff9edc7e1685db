"""HNS on digits: the energy loss's trade-off, and hardware energy factors against the paper's constants.

    .venv/bin/python benchmarks/hns_study.py --study runs/hns_study [--seeds 0 1 2] [--lambdas 0 0.3 0.6]
        [--epochs 20] [--threads 1] [--jobs 2] [--summary-only]

Every run is a resumable nasflow run on the SpikeDHS baseline genotype (C = 8, T = 6) with the types LIF and ReLU
(the paper's CIFAR-100 table), the chip ``generic-45nm-fp32`` and the ``per-step`` accounting:

* per seed S and λ_E: ``nasflow search hns --dataset digits --types lif,relu --lambda-e λ --epochs E
  --retrain-epochs E --seed S`` (``STUDY/lamλ_seedS``): the decoded hybrid retrained from scratch with the TPS
  recipe and costed on the chip from its measured test activity;
* per seed, the two fixed-type networks with the same recipe (``nasflow.tps_search.retrain_temporal``): all LIF
  (the handcrafted network) and all ReLU (``STUDY/lif_seedS``, ``STUDY/relu_seedS``), costed the same way;
* factor comparison (seed 0, search only, at ``--factor-lambda``, default 0.1, where the decoded types are mixed):
  the 45 nm hardware factors, the paper's constants (``--energy-factors paper``) and the hardware factors of a
  second chip (``--cost energy:loihi2``), set layer by layer against the 45 nm run.

"The energy loss lowers energy" per seed and λ_E > 0 means: the retrained hybrid's chip energy is below that of
the same seed's λ_E = 0 hybrid. Writes ``STUDY/study.json`` and ``STUDY/study.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from studies import mean_sd, write_study

CHIP = "generic-45nm-fp32"
FACTOR_RUNS = {"factors_hw45": (), "factors_paper": ("--energy-factors", "paper"),
               "factors_loihi2": ("--cost", "energy:loihi2")}


def _search_args(out: Path, seed: int, lam: float, epochs: int, threads: int, retrain: bool,
                 extra: tuple[str, ...] = ()) -> list[str]:
    return ["search", "hns", "--dataset", "digits", "--types", "lif,relu", "--channels", "8", "--epochs", str(epochs),
            "--warmup", str(min(5, epochs // 4)), "--lambda-e", f"{lam:g}",
            "--retrain-epochs", str(epochs if retrain else 0), "--seed", str(seed),
            "--threads", str(threads), "--no-progress", *extra, "--out", str(out)]


def baseline(kind: str, seed: int, epochs: int, threads: int, out: Path) -> None:
    """Train and cost the all-``kind`` network (run in a subprocess by ``main``)."""
    import torch

    from nasflow.hns_search import HNSConfig
    from nasflow.models import create_model
    from nasflow.snn.neuron_types import type_layers
    from nasflow.tps_search import retrain_temporal

    torch.set_num_threads(threads)
    cfg = HNSConfig(types=["lif", "relu"], channels=8, epochs=epochs, warmup=0, retrain_epochs=epochs, seed=seed,
                    progress=False)
    layers = type_layers(create_model("spikedhs", in_shape=(1, 8, 8), num_classes=10, channels=8, steps=6))
    temporal = None if kind == "lif" else ";".join(f"{n}:type={kind}" for n in layers)
    res = retrain_temporal(cfg, temporal, out)
    costs = cfg.retrain_costs(out / "model.pt", res)
    (out / "costs.json").write_text(json.dumps(costs, indent=2))


def jobs(study: Path, seeds: list[int], lambdas: list[float], epochs: int, threads: int,
         factor_lambda: float) -> list[tuple[list[str], Path]]:
    """Every unfinished run as (command, log)."""
    out: list[tuple[list[str], Path]] = []
    nasflow = [sys.executable, "-m", "nasflow.cli"]
    for seed in seeds:
        for lam in lambdas:
            d = study / f"lam{lam:g}_seed{seed}"
            if not (d / "search.json").exists() or "retrain" not in json.loads((d / "search.json").read_text()):
                out.append((nasflow + _search_args(d, seed, lam, epochs, threads, True), study / f"{d.name}.log"))
        for kind in ("lif", "relu"):
            d = study / f"{kind}_seed{seed}"
            if not (d / "costs.json").exists():
                out.append(([sys.executable, __file__, "--baseline", kind, "--seed", str(seed), "--epochs",
                             str(epochs), "--threads", str(threads), "--study", str(d)], study / f"{d.name}.log"))
    for name, extra in FACTOR_RUNS.items():
        d = study / f"{name}_lam{factor_lambda:g}"
        if not (d / "search.json").exists():
            out.append((nasflow + _search_args(d, seeds[0], factor_lambda, epochs, threads, False, extra),
                        study / f"{d.name}.log"))
    return out


def _run(job: tuple[list[str], Path]) -> None:
    cmd, log = job
    print(" ".join(cmd[1:]), file=sys.stderr)
    with open(log, "a") as fh:
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True)


def _types(arch: str) -> dict[str, str]:
    return {item.partition(":")[0]: item.rpartition("=")[2] for item in arch.split(";") if item}


def summarise(study: Path, seeds: list[int], lambdas: list[float], factor_lambda: float) -> dict[str, Any]:
    rows, base = [], {}
    for seed in seeds:
        for kind in ("lif", "relu"):
            d = study / f"{kind}_seed{seed}"
            if (d / "costs.json").exists():
                res, costs = json.loads((d / "result.json").read_text()), json.loads((d / "costs.json").read_text())
                base[f"{kind}_{seed}"] = {"accuracy": res["test_accuracy"], "energy_j": costs[f"energy:{CHIP}"]}
        for lam in lambdas:
            f = study / f"lam{lam:g}_seed{seed}" / "search.json"
            s = json.loads(f.read_text()) if f.exists() else {}
            if "retrain" not in s:
                continue
            types = _types(s["best"]["arch"])
            terms = s["energy"]["layers"]
            rows.append({"seed": seed, "lambda_e": lam, "accuracy": s["retrain"]["test_accuracy"], "types": types,
                         "energy_j": s["retrain"][f"energy:{CHIP}"], "relu_layers": sorted(k for k, v in types.items()
                                                                                        if v == "relu"),
                         "e_ratio": s["energy"]["e_ratio"],
                         "relu_over_lif": {k: terms[k]["terms"]["relu"] / max(terms[k]["terms"]["lif"], 1e-30)
                                           for k in terms}})
    by = {(r["seed"], r["lambda_e"]): r for r in rows}
    lowered = {f"{lam:g}": sum(1 for s in seeds if (s, lam) in by and (s, 0.0) in by
                               and by[(s, lam)]["energy_j"] < by[(s, 0.0)]["energy_j"])
               for lam in lambdas if lam > 0}
    factors: dict[str, Any] = {"lambda_e": factor_lambda}
    ref = study / f"factors_hw45_lam{factor_lambda:g}" / "search.json"
    if ref.exists():
        hw = _types(json.loads(ref.read_text())["best"]["arch"])
        for name in FACTOR_RUNS:
            f = study / f"{name}_lam{factor_lambda:g}" / "search.json"
            if f.exists():
                other = json.loads(f.read_text())
                t = _types(other["best"]["arch"])
                factors[name] = {"differ": sorted(k for k in hw if hw[k] != t.get(k)),
                                 "relu_layers": sorted(k for k, v in t.items() if v == "relu"),
                                 "e_ratio": other["energy"]["e_ratio"],
                                 "relu_over_lif": {k: v["terms"]["relu"] / max(v["terms"]["lif"], 1e-30)
                                                   for k, v in other["energy"]["layers"].items()}}
    return {"chip": CHIP, "accounting": "per-step", "types": ["lif", "relu"], "rows": rows, "baselines": base,
            "energy_lowered": lowered, "factors": factors}


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# HNS on digits (SpikeDHS baseline genotype, C = 8, T = 6, types LIF/ReLU, {res['chip']}, per-step)", "",
             "| seed | λ_E | retrained test acc | chip energy µJ/sample | ReLU layers | E_decoded / E_ref |",
             "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['seed']} | {r['lambda_e']:g} | {r['accuracy']:.4f} | {r['energy_j'] * 1e6:.3f} | "
                     f"{len(r['relu_layers'])} of 26 | {r['e_ratio']:.3f} |")
    for key, b in sorted(res["baselines"].items()):
        kind, seed = key.split("_")
        lines.append(f"| {seed} | all {kind.upper()} | {b['accuracy']:.4f} | {b['energy_j'] * 1e6:.3f} | — | — |")
    lines.append("")
    for lam in sorted({r["lambda_e"] for r in res["rows"]}):
        rs = [r for r in res["rows"] if r["lambda_e"] == lam]
        lines.append(f"- λ_E = {lam:g}: accuracy {mean_sd([r['accuracy'] for r in rs])}, energy "
                     f"{mean_sd([r['energy_j'] * 1e6 for r in rs], 3)} µJ, ReLU layers "
                     f"{mean_sd([float(len(r['relu_layers'])) for r in rs], 1)}")
    for kind in ("lif", "relu"):
        bs = [b for k, b in res["baselines"].items() if k.startswith(kind)]
        if bs:
            lines.append(f"- all {kind.upper()}: accuracy {mean_sd([b['accuracy'] for b in bs])}, energy "
                         f"{mean_sd([b['energy_j'] * 1e6 for b in bs], 3)} µJ")
    for lam, k in res["energy_lowered"].items():
        lines.append(f"- λ_E = {lam}: the retrained hybrid uses less chip energy than the λ_E = 0 one in {k} of "
                     f"{len({r['seed'] for r in res['rows']})} seeds")
    first = sorted({r["seed"] for r in res["rows"]})[:1]
    runs = {r["lambda_e"]: r for r in res["rows"] if r["seed"] in first}
    if runs:
        lams = sorted(runs)
        ratio = runs[lams[0]]["relu_over_lif"]
        lines += ["", f"## Per layer, seed {first[0]}: type chosen at each λ_E and e_ReLU / e_LIF (energy terms at "
                  f"the end of the λ_E = {lams[0]:g} search, 45 nm, per-step)", "",
                  "| layer | " + " | ".join(f"λ_E = {lam:g}" for lam in lams) + " | e_ReLU / e_LIF |",
                  "|---|" + "---|" * (len(lams) + 1)]
        for layer in ratio:
            lines.append(f"| {layer} | " + " | ".join(runs[lam]["types"].get(layer, "?") for lam in lams)
                         + f" | {ratio[layer]:.1f} |")
        for lam in lams:
            relu = [ratio[k] for k, v in runs[lam]["types"].items() if v == "relu" and k in ratio]
            lif = [ratio[k] for k, v in runs[lam]["types"].items() if v != "relu" and k in ratio]
            if relu and lif:
                lines.append(f"\nλ_E = {lam:g}: median e_ReLU / e_LIF {sorted(relu)[len(relu) // 2]:.1f} in the "
                             f"layers that became ReLU, {sorted(lif)[len(lif) // 2]:.1f} in those that stayed LIF.")
    fx = res["factors"]
    if "factors_hw45" in fx:
        lines += ["", f"## Hardware factors against the paper's constants (seed {min(r['seed'] for r in res['rows'])}, "
                  f"λ_E = {fx['lambda_e']:g}, search only)", "",
                  "| factors | ReLU layers | differ from 45 nm hw in | e_ReLU / e_LIF per layer | E_decoded / E_ref |",
                  "|---|---|---|---|---|"]
        for name in FACTOR_RUNS:
            if name in fx:
                f = fx[name]
                ratios = list(f["relu_over_lif"].values())
                lines.append(f"| {name.split('_')[1]} | {len(f['relu_layers'])} | {len(f['differ'])} layers "
                             f"({', '.join(f['differ']) or 'none'}) | {min(ratios):.2f}–{max(ratios):.2f} | "
                             f"{f['e_ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="runs/hns_study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.3, 0.6])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each with --threads threads)")
    parser.add_argument("--factor-lambda", type=float, default=0.1, help="λ_E of the factor comparison")
    parser.add_argument("--baseline", choices=("lif", "relu"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--summary-only", action="store_true", help="only summarise the finished runs")
    args = parser.parse_args(argv)
    study = Path(args.study)
    study.mkdir(parents=True, exist_ok=True)
    if args.baseline:
        baseline(args.baseline, args.seed, args.epochs, args.threads, study)
        return 0
    if not args.summary_only:
        todo = jobs(study, args.seeds, args.lambdas, args.epochs, args.threads, args.factor_lambda)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(_run, todo))
    res = summarise(study, args.seeds, args.lambdas, args.factor_lambda)
    print(write_study(study, res, markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
