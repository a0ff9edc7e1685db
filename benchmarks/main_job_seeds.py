"""The main job over several seeds: its time budget, and how far its figures move with the seed.

    .venv/bin/python benchmarks/main_job_seeds.py --seeds 0 1 2 [--out runs/seeds] [--samples 360]
                                                  [--set KEY=VALUE ...]

For each seed it runs the main job exactly as ``make run`` does (``nasflow run --set seed=S``, default
config, torch's default threads), timing every step and the peak RSS, then simulates both trained models on
Lava in floating and fixed point on ``--samples`` test samples (all 360 digits test samples by default) with
``nasflow simulate ... --compare torch``. It writes ``OUT/seeds.json`` (every figure, per seed) and
``OUT/seeds.md`` (the table the README quotes, the range over seeds and the "k of n seeds" claims), with the
spread of the searched candidates' D_val accuracies (what the supernet's training buys). ``--samples 0`` skips
the Lava simulations (the main job's own Lava step still runs); ``--set`` passes config overrides to every
main job (``nasflow run --set``). Runs are
resumable: a finished seed or simulation is read back, an interrupted one continues (``--resume``).
The load average before and after each run is recorded: step times only mean something on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NASFLOW = str(Path(sys.executable).with_name("nasflow"))
ROLES = ("winner", "baseline")
BACKENDS = ("lava", "lava-fixed")


def _timed(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` under /usr/bin/time; wall seconds, peak RSS (MB) and the load averages around it."""
    rss_file = log.with_suffix(".rss")
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd], stdout=out,
                              stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    rss_kb = int(rss_file.read_text().split()[-1])
    return {"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "load_before": load_before,
            "load_after": os.getloadavg()[0]}


def _main_job(seed: int, out: Path, overrides: list[str]) -> dict[str, Any]:
    run_dir = out / f"seed{seed}"
    done = out / f"seed{seed}.run.json"
    if done.exists():
        return json.loads(done.read_text())
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    print(f"seed {seed}: main job in {run_dir} ...", flush=True)
    sets = [a for kv in [f"seed={seed}", *overrides] for a in ("--set", kv)]
    timing = _timed([NASFLOW, "run", "--out", str(run_dir), *sets, "--no-progress", "--resume"],
                    out / f"seed{seed}.run.log")
    report = json.loads((run_dir / "report.json").read_text())
    row = {"seed": seed, "dir": str(run_dir), "overrides": overrides, **timing, "report": report,
           "d_val": _d_val_spread(run_dir)}
    done.write_text(json.dumps(row, indent=2))
    return row


def _d_val_spread(run_dir: Path) -> dict[str, Any] | None:
    """The searched candidates' accuracies on D_val with the supernet's weights (AutoSNN's search.json)."""
    path = run_dir / "search" / "search.json"
    if not path.exists():
        return None
    search = json.loads(path.read_text())
    accs = [e["accuracy"] for e in search.get("evaluated", []) if e.get("accuracy") is not None]
    if not accs:
        return None
    return {"candidates": len(accs), "min": min(accs), "median": statistics.median(accs), "max": max(accs),
            "best_fitness_accuracy": (search.get("best") or {}).get("accuracy"),
            "supernet_seconds": search.get("supernet_seconds")}


def _simulate(seed: int, out: Path, role: str, backend: str, samples: int) -> dict[str, Any]:
    sim_dir = out / f"seed{seed}" / f"sim{samples}" / f"{role}-{backend}"
    if not (sim_dir / "simulate.json").exists():
        sim_dir.mkdir(parents=True, exist_ok=True)
        print(f"seed {seed}: {role} on {backend}, {samples} test samples ...", flush=True)
        timing = _timed([NASFLOW, "simulate", str(out / f"seed{seed}" / f"{role}.nir"), "--backend", backend,
                         "--dataset", "digits", "--samples", str(samples), "--compare", "torch", "--out",
                         str(sim_dir)], sim_dir.parent / f"{role}-{backend}.log")
        (sim_dir / "timing.json").write_text(json.dumps(timing))
    sim = json.loads((sim_dir / "simulate.json").read_text())
    compare = sim.get("compare") or {}
    return {"accuracy": sim["accuracy"], "samples": sim["samples"], "min_precision": compare.get("min_precision"),
            "min_recall": compare.get("min_recall"), **json.loads((sim_dir / "timing.json").read_text())}


def _rng(values: list[float], fmt: str) -> str:
    return f"{fmt.format(min(values))} – {fmt.format(max(values))}"


def summarise(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """Per-seed figures, ranges and "k of n" claims as JSON and as the README's Markdown."""
    n = len(rows)
    w = [r["report"]["winner"] for r in rows]
    b = [r["report"]["baseline"] for r in rows]
    claims = {
        "winner_lower_energy": sum(x["energy_per_sample_j"] < y["energy_per_sample_j"] for x, y in zip(w, b)),
        "winner_fewer_spikes": sum(x["spikes_per_sample"] < y["spikes_per_sample"] for x, y in zip(w, b)),
        "winner_higher_accuracy": sum(x["torch_accuracy"] > y["torch_accuracy"] for x, y in zip(w, b)),
        "winner_equal_accuracy": sum(x["torch_accuracy"] == y["torch_accuracy"] for x, y in zip(w, b)),
    }
    if all(r["lava"] for r in rows):
        claims["lava_float_equals_torch"] = sum(all(r["lava"][role]["lava"]["accuracy"]
                                                    == r["lava"][role]["torch_accuracy"] for role in ROLES)
                                                for r in rows)
        claims["fixed_within_2_points"] = {role: sum(abs(r["lava"][role]["lava-fixed"]["accuracy"]
                                                         - r["lava"][role]["torch_accuracy"]) <= 0.02 for r in rows)
                                           for role in ROLES}
    walls = [r["wall_s"] for r in rows]
    steps = sorted({k for r in rows for k in r["report"]["step_seconds"]},
                   key=lambda k: list(rows[0]["report"]["step_seconds"]).index(k))
    summary = {"seeds": [r["seed"] for r in rows], "n": n, "claims": claims,
               "wall_s": {"median": statistics.median(walls), "min": min(walls), "max": max(walls)},
               "peak_rss_mb_max": max(r["peak_rss_mb"] for r in rows)}

    md = ["| seed | winner | torch acc. W / B | Lava float W / B | Lava fixed W / B | energy W / B (µJ) |"
          " spikes W / B | cores W / B | wall | load |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r, x, y in zip(rows, w, b):
        lv = r["lava"]
        pct = lambda role, backend, lv=lv: (f"{100 * lv[role][backend]['accuracy']:.2f}%" if lv else "—")  # noqa: E731
        md.append(
            f"| {r['seed']} | `{x['arch']}` | {100 * x['torch_accuracy']:.2f}% / {100 * y['torch_accuracy']:.2f}% "
            f"| {pct('winner', 'lava')} / {pct('baseline', 'lava')} "
            f"| {pct('winner', 'lava-fixed')} / {pct('baseline', 'lava-fixed')} "
            f"| {1e6 * x['energy_per_sample_j']:.1f} / {1e6 * y['energy_per_sample_j']:.1f} "
            f"| {x['spikes_per_sample']:,.0f} / {y['spikes_per_sample']:,.0f} "
            f"| {x['cores_used']} / {y['cores_used']} | {r['wall_s']:.0f} s | "
            f"{r['load_before']:.1f}→{r['load_after']:.1f} |")
    md.append("")
    md.append("| step | " + " | ".join(f"seed {r['seed']}" for r in rows) + " | median |")
    md.append("|---|" + "---|" * (n + 1))
    for k in steps:
        vals = [r["report"]["step_seconds"].get(k, 0.0) for r in rows]
        md.append(f"| {k} | " + " | ".join(f"{v:.0f} s" for v in vals) + f" | {statistics.median(vals):.0f} s |")
    md.append("| whole job (wall) | " + " | ".join(f"{v:.0f} s" for v in walls)
              + f" | {statistics.median(walls):.0f} s |")
    md.append("")
    acc_w = [100 * x["torch_accuracy"] for x in w]
    acc_b = [100 * y["torch_accuracy"] for y in b]
    e_w = [1e6 * x["energy_per_sample_j"] for x in w]
    e_b = [1e6 * y["energy_per_sample_j"] for y in b]
    md.append(f"Over {n} seeds: winner torch accuracy {_rng(acc_w, '{:.2f}%')}, baseline {_rng(acc_b, '{:.2f}%')}; "
              f"energy per sample winner {_rng(e_w, '{:.1f}')} µJ, baseline {_rng(e_b, '{:.1f}')} µJ.")
    md.append(f"Winner uses less energy than `all-SCB_k3` in {claims['winner_lower_energy']} of {n} seeds, fewer "
              f"spikes in {claims['winner_fewer_spikes']} of {n}; it is more accurate in "
              f"{claims['winner_higher_accuracy']} of {n} (equal in {claims['winner_equal_accuracy']}).")
    if "lava_float_equals_torch" in claims:
        md.append(f"Lava floating point equals torch for both models in {claims['lava_float_equals_torch']} of {n}; "
                  f"Lava fixed point is within 2 points of torch for the winner in "
                  f"{claims['fixed_within_2_points']['winner']} of {n} and for `all-SCB_k3` in "
                  f"{claims['fixed_within_2_points']['baseline']} of {n}.")
    spreads = [(r["seed"], r.get("d_val")) for r in rows if r.get("d_val")]
    if spreads:
        summary["d_val"] = {seed: d for seed, d in spreads}
        md.append("Searched candidates' D_val accuracy with the supernet's weights (min / median / max): "
                  + "; ".join(f"seed {seed} {100 * d['min']:.1f} / {100 * d['median']:.1f} / {100 * d['max']:.1f}%"
                              f" ({d['candidates']} candidates)" for seed, d in spreads) + ".")
    md.append(f"Main job wall time: median {summary['wall_s']['median']:.0f} s (range "
              f"{_rng(walls, '{:.0f}')} s); peak RSS up to {summary['peak_rss_mb_max']:.0f} MB.")
    return summary, "\n".join(md) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/seeds")
    parser.add_argument("--samples", type=int, default=360,
                        help="test samples simulated on Lava (digits has 360; 0 skips the simulations)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override passed to every main job (repeatable)")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        row = _main_job(seed, out, args.overrides)
        row["lava"] = {}
        for role in (ROLES if args.samples > 0 else ()):
            sims = {backend: _simulate(seed, out, role, backend, args.samples) for backend in BACKENDS}
            row["lava"][role] = {"torch_accuracy": row["report"][role]["torch_accuracy"], **sims}
        rows.append(row)
    summary, md = summarise(rows)
    (out / "seeds.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))
    (out / "seeds.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
