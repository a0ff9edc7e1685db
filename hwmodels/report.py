"""hw.json / hw.md reports: read a NIR file and an activity file, map, count, price."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import nir
import numpy as np

from exporters.core.jsonio import SCHEMA_VERSION, md_text, to_jsonable, write_json
from hwmodels.cost import HardwareCost, summarise
from hwmodels.energy import energy_and_latency, link_loads

__all__ = ["HwReport", "read_graph", "load_activity", "hw_report", "write_report"]


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


_CAPACITY_NOTE = "capacity only: give --activity for traffic, latency and energy"
_ROUTING = "XY (x first along the source row, then y along the target column)"
_COUNTING = (
    "synaptic ops = (non-zero input, non-zero weight) pairs (NeuroBench effective ACs/MACs); "
    "messages = one per (event, destination core); input events come from the host at tile (0, 0)"
)


@dataclass(frozen=True)
class HwReport:
    """One hardware report: what ``nasflow hw`` writes to hw.json and summarises in hw.md.

    The mapping fields are always set. The costing fields (from ``activity`` on) are set when the report was
    given activity and None in a capacity-only report (``costed`` tells which); ``energy_per_sample_j`` and
    ``latency_per_step_s`` can also be None in a costed report, for a chip that publishes no such figures.
    Values are plain JSON types (lists, not arrays), so the report compares equal to itself read back from
    hw.json (:meth:`from_dict`). Layer, block and violation rows stay dicts: they are table rows, written and
    read by their column names.
    """

    chip: str
    chip_kind: str
    profile_estimates: list[str]
    placement: str
    fits: bool
    cores_used: int
    chips_needed: int
    violations: list[dict[str, Any]]
    blocks: list[dict[str, Any]]
    mesh: dict[str, int]
    layers: list[dict[str, Any]]
    activity: str | None = None  # "neuron" (per-neuron arrays) or "node" (per-node totals); None: capacity only
    energy_per_sample_j: float | None = None
    energy_terms_j: dict[str, float] | None = None
    synops_per_sample: float | None = None
    macs_per_sample: float | None = None
    neuron_updates_per_sample: float | None = None
    spikes_per_sample: float | None = None
    messages_per_sample: float | None = None
    max_core_messages_per_step: float | None = None
    latency_per_step_s: float | None = None
    links: dict[str, Any] | None = None
    steps: int | None = None
    notes: list[str] | None = None
    terms_included: list[str] | None = None
    terms_missing: list[str] | None = None
    update_pricing: str | None = None
    input_events: str | None = None
    static_energy_per_sample_j: float | None = None
    per_core: dict[str, list[float]] | None = None
    latency_steps_s: list[float] | None = None
    host: dict[str, Any] | None = None  # work after the chip that has no NIR node (e.g. stereo matching), not priced

    @property
    def costed(self) -> bool:
        """Whether the report was given activity (traffic, latency and energy), not capacity only."""
        return self.activity is not None

    def to_dict(self) -> dict[str, Any]:
        """hw.json's content. Key order is the file's: mapping, headline costs, links, then the details."""
        head = {
            "schema_version": SCHEMA_VERSION,
            "chip": self.chip,
            "chip_kind": self.chip_kind,
            "profile_estimates": self.profile_estimates,
            "placement": self.placement,
            "fits": self.fits,
            "cores_used": self.cores_used,
            "chips_needed": self.chips_needed,
            "violations": self.violations,
            "blocks": self.blocks,
            "mesh": self.mesh,
        }
        if not self.costed:
            return head | {"activity": None, "energy_per_sample_j": None, "layers": self.layers, "note": _CAPACITY_NOTE}
        keys = (
            "energy_per_sample_j", "energy_terms_j", "synops_per_sample", "macs_per_sample",
            "neuron_updates_per_sample", "spikes_per_sample", "messages_per_sample", "max_core_messages_per_step",
            "latency_per_step_s", "links", "activity", "steps", "notes", "terms_included", "terms_missing",
            "update_pricing", "input_events", "static_energy_per_sample_j", "layers", "per_core", "latency_steps_s",
        )
        return (head | {k: getattr(self, k) for k in keys} | {"counting": _COUNTING}
                | ({"host": self.host} if self.host else {}))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HwReport:
        """The report of an hw.json's content (or :meth:`to_dict`'s); refuses another schema version."""
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"hardware report has schema_version {data.get('schema_version')!r}, "
                             f"this nasflow reads {SCHEMA_VERSION}")
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


def hw_report(
    graph: nir.NIRGraph,
    chip: str,
    activity: dict | None = None,
    steps: int | None = None,
    placement: str = "greedy",
    terms: tuple[str, ...] | None = None,
    input_spiking: bool | None = None,
    estimate_unmeasured: bool = False,
) -> HwReport:
    """Everything ``nasflow hw`` writes to hw.json (capacity only without activity). ``input_spiking``: whether the
    Input node's events are spikes (ACs downstream) for per-node totals; None = spikes when the totals give
    ``spikes_per_sample`` for it, dense analog input at every step when they give nothing.
    ``estimate_unmeasured``: per-node totals with measured synops for only some connections estimate the others
    (``hwmodels.traffic.counts_from_totals``) instead of being refused; for the search's monitor counts."""
    kwargs: dict[str, Any] = {"terms": tuple(terms)} if terms else {}
    hc = HardwareCost(graph, chip, steps=steps, placement=placement, input_spiking=input_spiking,
                      estimate_unmeasured=estimate_unmeasured, **kwargs)
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
        "layers": layers,
    }
    if activity is None:
        return HwReport(**to_jsonable(out))
    c = hc.counts(activity, steps)
    e = energy_and_latency(m, c, hc.terms, hc.update_pricing)
    out.update(summarise(m, c, e))
    ew, ns = link_loads(m, c)
    out["links"] = {
        "east_west_per_sample": ew,
        "north_south_per_sample": ns,
        "max_link_messages_per_step": float(max(ew.max(initial=0), ns.max(initial=0)) / c.steps),
        "routing": _ROUTING,
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
            "per_core": {
                "energy_j": e["energy_per_core_j"],
                "messages_in_per_sample": c.msgs_in_step.sum(axis=0),
                "synops_per_sample": c.synops_step.sum(axis=0),
                "max_messages_in_per_step": c.msgs_in_step.max(axis=0) if c.steps else [],
            },
            "latency_steps_s": e["latency_steps_s"],
        }
    )
    return HwReport(**to_jsonable(out))


def write_report(report: HwReport, out_dir: str | Path) -> Path:
    """Write hw.json and hw.md into ``out_dir``; returns the hw.json path."""
    d = Path(out_dir)
    path = write_json(d / "hw.json", report, indent=1, trailing_newline=True)
    r = report
    lines = [
        f"# Hardware report: {md_text(r.chip)}",
        "",
        f"- fits on one chip: **{r.fits}**; cores used {r.cores_used}, chips needed {r.chips_needed}",
    ]
    for v in r.violations:
        lines.append(f"- limit broken: {md_text(v['message'])} (over by {v['over_by']:g})")
    if r.costed:
        energy = r.energy_per_sample_j
        lines += [
            f"- energy per sample: {'not priced' if energy is None else f'{energy:.4g} J'} "
            f"({', '.join(r.terms_included) or 'no terms'}; missing: {', '.join(r.terms_missing) or 'none'})",
            f"- synaptic ops {r.synops_per_sample:.4g} ACs + {r.macs_per_sample:.4g} MACs, "
            f"neuron updates {r.neuron_updates_per_sample:.4g}, messages {r.messages_per_sample:.4g} per sample",
            f"- busiest core: {r.max_core_messages_per_step:.4g} messages per step; latency bound "
            f"{r.latency_per_step_s} s per step",
            f"- activity: {r.activity} level",
            "",
            "| layer | type | neurons | blocks | ACs | MACs | spikes | energy J |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in r.layers:
            lines.append(
                f"| {md_text(row['layer'])} | {md_text(row['type'])} | {row['neurons']} | {row['blocks']} | "
                f"{row['acs_per_sample']:.4g} | {row['macs_per_sample']:.4g} | {row['spikes_per_sample'] or 0:.4g} | "
                f"{sum(row['energy_j'].values()):.4g} |"
            )
    else:
        lines.append("- capacity only (no activity given)")
    if r.host:
        ops = ", ".join(f"{k} {v:,}" for k, v in r.host.get("ops", {}).items())
        lines += ["", f"Host, after the chip (no NIR node; not priced here), per {r.host.get('unit', 'sample')}: {ops}"]
    (d / "hw.md").write_text("\n".join(lines) + "\n")
    return path
