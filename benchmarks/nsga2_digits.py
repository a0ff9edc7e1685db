"""NSGA-II against random search at the same budget on digits: hypervolume of (accuracy, energy:loihi) under a cores
budget, 3 seeds, one supernet per seed shared by every strategy; and where AutoSNN's scalarised winner lies.

    .venv/bin/python benchmarks/nsga2_digits.py [--seeds 0 1 2] [--evaluations 200] [--supernet-root DIR]
        [--out runs/nsga2]

Per seed, in one run directory (so every strategy reads and extends one journal of evaluations, and a killed
benchmark resumes): the main job's supernet (digits, C = 16, T = 8, 60 epochs; ``--supernet-root DIR`` reuses
``DIR/seed<S>/search``), then NSGA-II, random search and AutoSNN's evolution with the main job's fitness
(``acc·(E/E_avg)^-0.24``), each with ``--evaluations`` candidates.

Fixed before running (the reference): objectives are minimised as ``(1 − accuracy, energy)``; accuracy maps to
[0, 1] as is, energy is divided by twice the supernet's mean path energy ``E_avg`` (measured while the supernet
trained, before any search); the reference point is 1.1 in both; only candidates with ``cores:loihi <= 24`` count
(the main job's journals span 12-30 cores, median 20.5). Writes ``nsga2.json`` and ``nsga2.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from studies import mean_sd

from exporters.core.jsonio import SCHEMA_VERSION, write_json
from nasflow.search import AutoSNNSearchConfig, run_autosnn_search
from nasflow.strategies.evolution import Candidate
from nasflow.strategies.nsga2 import front, hypervolume, objective_matrix

OBJECTIVES = ("accuracy", "energy:loihi")
CORES_BUDGET = 24.0
REFERENCE = 1.1


def _cands(rows: list[dict]) -> list[Candidate]:
    return [Candidate(r["arch"], r["accuracy"], dict(r["costs"]), r["fitness"]) for r in rows]


def _hv(cands: list[Candidate], e_avg: float) -> float:
    pts = front(cands, OBJECTIVES, (("cores:loihi", CORES_BUDGET),))
    mat = objective_matrix(pts, OBJECTIVES)  # (−accuracy, energy)
    return hypervolume(mat, ideal=np.array([-1.0, 0.0]), nadir=np.array([0.0, 2 * e_avg]))


def _dominated_by(c: Candidate, pts: list[Candidate]) -> bool:
    e = c.costs["energy:loihi"]
    return any(p.value >= c.value and p.costs["energy:loihi"] <= e and (p.value > c.value or p.costs["energy:loihi"]
                                                                          < e) for p in pts)


def run_seed(seed: int, evaluations: int, out: Path, supernet_root: Path | None) -> dict:
    run = out / f"seed{seed}"
    run.mkdir(parents=True, exist_ok=True)
    base = dict(supernet_epochs=60, evaluations=evaluations, cost="energy:loihi", lam=-0.24, rounds=10, seed=seed,
                budgets={"cores": CORES_BUDGET}, progress=False)
    supernet = supernet_root / f"seed{seed}" / "search" if supernet_root else None
    results = {}
    for strategy in ("nsga2", "random", "evolution"):
        cfg = AutoSNNSearchConfig(strategy=strategy, **base)
        res = run_autosnn_search(cfg, run, supernet_dir=supernet)
        shutil.copy(run / "search.json", run / f"search_{strategy}.json")
        results[strategy] = res
        print(f"seed {seed} {strategy}: {len(res['evaluated'])} evaluated, {res['journal_hits']} from the journal",
              flush=True)
    e_avg = float(results["nsga2"]["cost_avg"]["energy:loihi"])
    row: dict = {"seed": seed, "e_avg": e_avg}
    for strategy, res in results.items():
        row[f"hv_{strategy}"] = _hv(_cands(res["evaluated"]), e_avg)
    nsga_front = front(_cands(results["nsga2"]["evaluated"]), OBJECTIVES, (("cores:loihi", CORES_BUDGET),))
    winner = results["evolution"]["best"]
    w = Candidate(winner["arch"], winner["accuracy"], dict(winner["costs"]), winner["fitness"])
    row.update(front_size=len(nsga_front), scalarised_winner=winner["arch"],
               scalarised_accuracy=w.value, scalarised_energy=w.costs["energy:loihi"],
               scalarised_cores=w.costs["cores:loihi"],
               scalarised_dominated_by_nsga2_front=_dominated_by(w, nsga_front),
               scalarised_on_nsga2_front=any(p.arch == w.arch for p in nsga_front),
               nsga2_pick=results["nsga2"]["best"]["arch"])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--evaluations", type=int, default=200)
    ap.add_argument("--supernet-root", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs/nsga2"))
    args = ap.parse_args()
    rows = [run_seed(s, args.evaluations, args.out, args.supernet_root) for s in args.seeds]
    wins = sum(r["hv_nsga2"] > r["hv_random"] for r in rows)
    res = {"schema_version": SCHEMA_VERSION, "objectives": list(OBJECTIVES), "cores_budget": CORES_BUDGET,
           "reference_point": REFERENCE, "evaluations": args.evaluations, "seeds": rows,
           "nsga2_beats_random": f"{wins} of {len(rows)}"}
    write_json(args.out / "nsga2.json", res, indent=2)
    lines = ["| seed | HV NSGA-II | HV random | HV evolution (scalarised) | front size | scalarised winner vs NSGA-II "
             "front |", "|---|---|---|---|---|---|"]
    for r in rows:
        where = ("on it" if r["scalarised_on_nsga2_front"] else
                 "dominated" if r["scalarised_dominated_by_nsga2_front"] else "not dominated")
        lines.append(f"| {r['seed']} | {r['hv_nsga2']:.4f} | {r['hv_random']:.4f} | {r['hv_evolution']:.4f} | "
                     f"{r['front_size']} | {where} ({100 * r['scalarised_accuracy']:.1f}%, "
                     f"{1e6 * r['scalarised_energy']:.2f} µJ) |")
    lines.append(f"\nNSGA-II above random search: {wins} of {len(rows)} seeds; mean HV NSGA-II "
                 f"{mean_sd([r['hv_nsga2'] for r in rows])}, random {mean_sd([r['hv_random'] for r in rows])}")
    (args.out / "nsga2.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"out": str(args.out)}))


if __name__ == "__main__":
    main()
