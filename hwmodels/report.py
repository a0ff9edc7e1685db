"""hw.json / hw.md reports: read a NIR file and an activity file, map, count, price."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import nir
import numpy as np

from hwmodels.cost import HardwareCost, summarise
from hwmodels.energy import energy_and_latency, link_loads

__all__ = ["SCHEMA_VERSION", "read_graph", "load_activity", "hw_report", "write_report"]

SCHEMA_VERSION = 1


def read_graph(path: str | Path) -> nir.NIRGraph:
    """``exporters.nir_io.read_nir``: the same refusals as ``nasflow simulate`` (missing or broken file, unknown
    node type, no Input node, NaN/inf parameters, inconsistent shapes), each one error naming the file. The
    legacy reset warning is dropped: costs do not depend on how a neuron resets."""
    from exporters.nir_io import LegacyResetWarning, read_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyResetWarning)
        return read_nir(path)


def load_activity(path: str | Path) -> tuple[dict[str, Any], int | None]:
    """``activity.npz`` → per-neuron arrays; ``simulate.json`` → per-node totals. Returns (activity, steps)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such activity file (give DIR/activity.npz or DIR/simulate.json)")
    if p.suffix == ".npz":
        try:
            with np.load(p) as z:
                return {k: z[k] for k in z.files}, None
        except Exception as err:
            raise ValueError(f"{p}: not a readable .npz file ({err})") from None
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{p}: not a readable simulate.json ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict) or "steps" not in data:
        raise ValueError(f"{p}: expected simulate.json with 'steps' and 'nodes' ({{node: {{spikes_per_sample}}}})")
    return {k: dict(v) for k, v in data["nodes"].items() if isinstance(v, dict)}, int(data["steps"])


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def hw_report(
    graph: nir.NIRGraph,
    chip: str,
    activity: dict | None = None,
    steps: int | None = None,
    placement: str = "greedy",
    terms: tuple[str, ...] | None = None,
    input_spiking: bool | None = None,
) -> dict[str, Any]:
    """Everything ``nasflow hw`` writes to hw.json (capacity only without activity). ``input_spiking``: whether the
    Input node's events are spikes (ACs downstream) for per-node totals; None = spikes when the totals give
    ``spikes_per_sample`` for it, dense analog input at every step when they give nothing."""
    kwargs: dict[str, Any] = {"terms": tuple(terms)} if terms else {}
    hc = HardwareCost(graph, chip, steps=steps, placement=placement, input_spiking=input_spiking, **kwargs)
    m = hc.mapping
    layers = []
    for name, lay in m.table.layers.items():
        layers.append(
            {
                "layer": name,
                "type": lay.type,
                "shape": list(lay.shape),
                "neurons": lay.n_neurons,
                "blocks": len(m.starts[name]),
                "inputs": [c.node_id for c in lay.incoming],
            }
        )
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "chip": m.profile.name,
        "chip_kind": m.profile.kind,
        "profile_estimates": sorted(m.profile.estimates),
        "placement": placement,
        "fits": m.fits,
        "cores_used": m.cores_used,
        "chips_needed": m.chips_needed,
        "violations": [v.to_dict() for v in m.violations],
        "blocks": m.block_rows(),
        "mesh": {
            "width": int(m.coords[:, 0].max() + 1) if m.n_blocks else 0,
            "height": int(m.coords[:, 1].max() + 1) if m.n_blocks else 0,
        },
    }
    if activity is None:
        out.update(
            {
                "activity": None,
                "energy_per_sample_j": None,
                "layers": layers,
                "note": "capacity only: give --activity for traffic, latency and energy",
            }
        )
        return out
    c = hc.counts(activity, steps)
    e = energy_and_latency(m, c, hc.terms, hc.update_pricing)
    out.update(summarise(m, c, e))
    ew, ns = link_loads(m, c)
    out["links"] = {
        "east_west_per_sample": ew,
        "north_south_per_sample": ns,
        "max_link_messages_per_step": float(max(ew.max(initial=0), ns.max(initial=0)) / c.steps),
        "routing": "XY (x first along the source row, then y along the target column)",
    }
    for row in layers:
        name = row["layer"]
        ins = row["inputs"]
        row.update(
            {
                "acs_per_sample": sum(c.acs.get(k, 0.0) for k in ins),
                "macs_per_sample": sum(c.macs.get(k, 0.0) for k in ins),
                "spikes_per_sample": c.spikes.get(name),
                "energy_j": e["energy_per_layer_j"].get(name, {}),
            }
        )
    out.update(
        {
            "activity": c.level,
            "steps": c.steps,
            "notes": c.notes,
            "terms_included": e["terms_included"],
            "terms_missing": e["terms_missing"],
            "update_pricing": e["update_pricing"],
            "input_events": "spikes" if input_spiking else ("analog" if input_spiking is False else "auto"),
            "static_energy_per_sample_j": e["static_energy_per_sample_j"],
            "layers": layers,
            "per_core": {
                "energy_j": e["energy_per_core_j"],
                "messages_in_per_sample": c.msgs_in_step.sum(axis=0),
                "synops_per_sample": c.synops_step.sum(axis=0),
                "max_messages_in_per_step": c.msgs_in_step.max(axis=0) if c.steps else [],
            },
            "latency_steps_s": e["latency_steps_s"],
            "counting": "synaptic ops = (non-zero input, non-zero weight) pairs (NeuroBench effective ACs/MACs); "
            "messages = one per (event, destination core); input events come from the host at tile (0, 0)",
        }
    )
    return _jsonable(out)


def write_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write hw.json and hw.md into ``out_dir``; returns the hw.json path."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "hw.json").write_text(json.dumps(_jsonable(report), indent=1) + "\n")
    lines = [
        f"# Hardware report: {report['chip']}",
        "",
        f"- fits on one chip: **{report['fits']}**; cores used {report['cores_used']}, chips needed "
        f"{report['chips_needed']}",
    ]
    for v in report["violations"]:
        lines.append(f"- limit broken: {v['message']} (over by {v['over_by']:g})")
    if report.get("activity"):
        energy = report["energy_per_sample_j"]
        lines += [
            f"- energy per sample: {'not priced' if energy is None else f'{energy:.4g} J'} "
            f"({', '.join(report['terms_included']) or 'no terms'}; "
            f"missing: {', '.join(report['terms_missing']) or 'none'})",
            f"- synaptic ops {report['synops_per_sample']:.4g} ACs + {report['macs_per_sample']:.4g} MACs, "
            f"neuron updates {report['neuron_updates_per_sample']:.4g}, messages {report['messages_per_sample']:.4g}"
            f" per sample",
            f"- busiest core: {report['max_core_messages_per_step']:.4g} messages per step; latency bound "
            f"{report['latency_per_step_s']} s per step",
            f"- activity: {report['activity']} level",
            "",
            "| layer | type | neurons | blocks | ACs | MACs | spikes | energy J |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["layers"]:
            lines.append(
                f"| {r['layer']} | {r['type']} | {r['neurons']} | {r['blocks']} | {r['acs_per_sample']:.4g} | "
                f"{r['macs_per_sample']:.4g} | {r['spikes_per_sample'] or 0:.4g} | {sum(r['energy_j'].values()):.4g} |"
            )
    else:
        lines.append("- capacity only (no activity given)")
    (d / "hw.md").write_text("\n".join(lines) + "\n")
    return d / "hw.json"
