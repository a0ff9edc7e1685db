"""Energy-aware versus spike-aware AutoSNN search on digits (same supernet, same λ, 3 seeds).

    .venv/bin/python benchmarks/hw_search_digits.py --study runs/autosnn-study [--seeds 0 1 2] [--chip loihi]

Needs the supernets and λ = -0.08 spike-cost searches of ``benchmarks/autosnn_digits.py`` (run it first;
it writes ``STUDY/seed{S}/lam0/supernet.pt`` and ``STUDY/seed{S}/lam-0.08``). Per seed it runs the same
search with ``--cost energy:CHIP`` (resumable), then costs both winners on the chip with the supernet's
weights on D_val and explains the difference per layer. Writes ``STUDY/hw_search.json`` and
``STUDY/hw_search.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from exporters.core.jsonio import SCHEMA_VERSION
from exporters.nir_export import to_nir
from hwmodels import build_layer_table, hw_report
from nasflow.data import make_loaders
from nasflow.evaluators.hw_cost import HardwareSearchCost, measured_totals
from nasflow.search import AutoSNNSearchConfig, _supernet, run_autosnn_search
from nasflow.snn.activity import ActivityMonitor
from nasflow.snn.neurons import reset_states


def _cost_winner(net, loaders, arch: str, chip: str) -> dict:
    """Accuracy, spikes, energy and per-layer energy of ``arch`` with the supernet's weights on D_val."""
    import torch

    net.set_path(tuple(arch.split(",")))
    net.eval()
    correct = total = 0
    with torch.no_grad(), ActivityMonitor(net) as mon:
        for x, y in loaders.val:
            reset_states(net)
            correct += int((net(x).argmax(1) == y).sum())
            total += len(y)
    summary = mon.summary()
    costs = HardwareSearchCost(chip)(net, summary)
    graph = to_nir(net)
    totals = measured_totals(build_layer_table(graph), summary)  # the same counts the search's fitness used
    report = hw_report(graph, chip, activity=totals, steps=int(net.steps), estimate_unmeasured=True)
    per_layer = {row["layer"]: sum(row["energy_j"].values()) for row in report.layers if "energy_j" in row}
    return {"arch": arch, "accuracy": correct / total, "spikes": summary["spikes_per_sample"],
            "energy_j": costs[f"energy:{chip}"], "cores": costs[f"cores:{chip}"], "terms": report.energy_terms_j,
            "per_layer_j": per_layer}


def _block_energy(per_layer: dict[str, float]) -> dict[str, float]:
    """Energy per network part: stem, each searched block (``features.i``), pools, classifier."""
    out: dict[str, float] = {}
    for name, e in per_layer.items():
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] == "features" else parts[0]
        out[key] = out.get(key, 0.0) + e
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="runs/autosnn-study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--chip", default="loihi")
    parser.add_argument("--lam", type=float, default=-0.08)
    args = parser.parse_args()
    root = Path(args.study)
    rows = []
    for seed in args.seeds:
        base = root / f"seed{seed}"
        spikes_search = json.loads((base / f"lam{args.lam}" / "search.json").read_text())
        cfg = AutoSNNSearchConfig(seed=seed, lam=args.lam, cost=f"energy:{args.chip}", progress=False)
        energy_search = run_autosnn_search(cfg, base / f"energy-{args.chip}-lam{args.lam}", supernet_dir=base / "lam0")
        loaders = make_loaders("digits", cfg.batch_size, seed=seed, val_split=0.2, eval_batch_size=512)
        net, _ = _supernet(cfg, loaders.spec, loaders, base, base / "lam0", "cpu")
        by_spikes = _cost_winner(net, loaders, spikes_search["best"]["arch"], args.chip)
        by_energy = _cost_winner(net, loaders, energy_search["best"]["arch"], args.chip)
        rows.append({"seed": seed, "spikes_cost_winner": by_spikes, "energy_cost_winner": by_energy})
        print(f"seed {seed}: spikes-cost winner {by_spikes['arch']} {by_spikes['energy_j'] * 1e9:.1f} nJ, "
              f"energy-cost winner {by_energy['arch']} {by_energy['energy_j'] * 1e9:.1f} nJ", flush=True)
    mean_s = statistics.mean(r["spikes_cost_winner"]["energy_j"] for r in rows)
    mean_e = statistics.mean(r["energy_cost_winner"]["energy_j"] for r in rows)
    out = {"schema_version": SCHEMA_VERSION, "chip": args.chip, "lambda": args.lam, "rows": rows,
           "mean_energy_spikes_cost_j": mean_s, "mean_energy_energy_cost_j": mean_e}
    (root / "hw_search.json").write_text(json.dumps(out, indent=2))
    lines = [f"| seed | --cost spikes winner (acc, spikes, energy) | --cost energy:{args.chip} winner "
             "(acc, spikes, energy) |", "|---|---|---|"]
    for r in rows:
        cells = [f"{w['arch']} ({100 * w['accuracy']:.1f}%, {w['spikes']:.0f}, {w['energy_j'] * 1e9:.1f} nJ)"
                 for w in (r["spikes_cost_winner"], r["energy_cost_winner"])]
        lines.append(f"| {r['seed']} | {cells[0]} | {cells[1]} |")
    lines.append(f"| mean | {mean_s * 1e9:.1f} nJ | {mean_e * 1e9:.1f} nJ |")
    lines += ["", "Energy per network part (nJ per sample, spikes-cost winner → energy-cost winner):", ""]
    for r in rows:
        a, b = (_block_energy(r[k]["per_layer_j"]) for k in ("spikes_cost_winner", "energy_cost_winner"))
        parts = ", ".join(f"{k} {a.get(k, 0) * 1e9:.1f}→{b.get(k, 0) * 1e9:.1f}" for k in sorted(set(a) | set(b)))
        lines.append(f"- seed {r['seed']}: {parts}")
    table = "\n".join(lines)
    (root / "hw_search.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
