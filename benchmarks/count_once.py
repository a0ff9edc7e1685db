"""How much the chip energy of the main job's models moves when hwmodels prices measured synaptic ops.

    .venv/bin/python benchmarks/count_once.py [--samples 100] [--chip loihi] [--out benchmarks/results/count_once.json]

Runs ``tests/golden/models/winner.pt`` and ``baseline.pt`` on the first digits test samples under an
``ActivityMonitor`` and costs each on the chip three ways (issue 13, "count once"):

* ``old``: the per-node spike totals only, what the search passed before: hwmodels re-estimates every synapse's
  ops as the source's events × mean fan-out (uniform rates over neurons and steps; the analog stem sees every
  pixel as non-zero at every step);
* ``new``: the same spike totals plus the monitor's measured ACs/MACs per weight node
  (``nasflow.evaluators.hw_cost.measured_totals``), what ``HardwareSearchCost`` passes now;
* ``exact``: per-neuron activity of the exported NIR graph (``exporters.nir_torch.simulate``), hwmodels' own
  exact count and per-core placement of ops: the reference the ``new`` synops must equal.

Prints a table and writes JSON (``schema_version``) with energy (nJ per sample), ACs and MACs per sample and the
energy terms of each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from exporters.core.jsonio import SCHEMA_VERSION, write_json
from exporters.nir_export import to_nir
from exporters.nir_torch import simulate
from hwmodels import HardwareCost, hw_report
from nasflow.data import make_loaders
from nasflow.evaluators.hw_cost import measured_totals
from nasflow.models import load_model
from nasflow.snn.activity import ActivityMonitor
from nasflow.snn.neurons import reset_states

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "tests" / "golden" / "models"


def _test_images(samples: int) -> torch.Tensor:
    """The first ``samples`` digits test images ``[B, 1, 8, 8]`` (the main job's test split)."""
    loaders = make_loaders("digits", samples, seed=0, augment=False)
    xs, taken = [], 0
    for x, _ in loaders.test:
        xs.append(x)
        taken += len(x)
        if taken >= samples:
            break
    return torch.cat(xs)[:samples]


def _row(report) -> dict:
    return {
        "energy_nj": report.energy_per_sample_j * 1e9,
        "acs_per_sample": report.synops_per_sample,
        "macs_per_sample": report.macs_per_sample,
        "energy_terms_nj": {k: v * 1e9 for k, v in report.energy_terms_j.items()},
    }


def cost_model(path: Path, x: torch.Tensor, chip: str) -> dict:
    """The three costings of one saved model on ``x``."""
    net, _ = load_model(path)
    net.eval()
    with torch.no_grad(), ActivityMonitor(net) as mon:
        reset_states(net)
        net(x)
    summary = mon.summary()
    steps = int(net.steps)
    graph = to_nir(net, dt=1e-3, validate=False)
    table = HardwareCost(graph, chip, steps=steps).table
    spikes_only = {n: {"spikes_per_sample": r["spikes_per_sample"]} for n, r in summary["layers"].items()
                   if r["kind"] in ("neuron", "pool")}
    old = hw_report(graph, chip, activity=spikes_only, steps=steps)
    new = hw_report(graph, chip, activity=measured_totals(table, summary), steps=steps, estimate_unmeasured=True)
    seq = x.unsqueeze(0).expand(steps, *x.shape).contiguous().numpy()
    exact = hw_report(graph, chip, activity=simulate(graph, seq, dt=1e-3))
    return {
        "arch": ",".join(net.arch),
        "monitor": {k: summary[k] for k in ("spikes_per_sample", "synops_per_sample", "macs_per_sample",
                                            "neuron_updates_per_sample")},
        "old": _row(old),
        "new": _row(new),
        "exact": _row(exact),
        "new_notes": new.notes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--chip", default="loihi")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "count_once.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = _test_images(args.samples)
    t0 = time.perf_counter()
    models = {role: cost_model(MODELS / f"{role}.pt", x, args.chip) for role in ("winner", "baseline")}
    header = f"{'model':9} {'path':6} {'energy nJ':>10} {'ACs':>10} {'MACs':>9}  change vs old"
    print(f"{args.chip}, {len(x)} digits test samples, per sample")
    print(header)
    for role, res in models.items():
        base = res["old"]["energy_nj"]
        for path in ("old", "new", "exact"):
            r = res[path]
            print(f"{role:9} {path:6} {r['energy_nj']:10.2f} {r['acs_per_sample']:10.1f} {r['macs_per_sample']:9.1f}"
                  f"  {100 * (r['energy_nj'] / base - 1):+.1f}%")
        m = res["monitor"]
        print(f"{role:9} {'monitor':6} {'':>10} {m['synops_per_sample']:10.1f} {m['macs_per_sample']:9.1f}")
    out = {"schema_version": SCHEMA_VERSION, "chip": args.chip, "samples": len(x),
           "seconds": time.perf_counter() - t0, "models": models}
    write_json(args.out, out, indent=1, trailing_newline=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
