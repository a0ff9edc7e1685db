"""Reports of the main job: ``report.json`` (machines), ``report.md`` (terminals) and ``report.html`` (browsers).

The HTML page references PNG plots in ``plots/`` next to it: accuracy versus energy of every evaluated
candidate with the Pareto front and the winner, per-layer firing rates, and the hardware plots
(per-core traffic heatmap, per-layer energy) of the winner.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from exporters.core.jsonio import SCHEMA_VERSION, md_text, write_json
from nasflow.hw_plots import ENERGY_UNIT, TRAFFIC_UNIT
from nasflow.strategies.nsga2 import non_dominated

if TYPE_CHECKING:
    from hwmodels.report import HwReport
    from nasflow.steps import ByRole, ExportedModel, SearchStep, SimulatedModel, TrainedModel

__all__ = ["ModelRow", "RunReport", "format_value", "pareto_front", "write_reports"]

_FILES = {"nir": "model.nir", "html": "report.html", "markdown": "report.md", "search": "search/search.json",
          "journal": "search/journal.jsonl"}


@dataclass(frozen=True)
class ModelRow:
    """One model's column of the report: accuracy in torch, Lava and netx, spike agreement, activity, cost."""

    arch: str
    torch_accuracy: float
    test_samples: int | None
    lava_samples: int
    torch_accuracy_on_lava_samples: float | None
    lava_accuracy: float | None
    lava_fixed_accuracy: float | None
    netx_accuracy: float | None
    lava_min_precision: float | None
    lava_min_recall: float | None
    spikes_per_sample: float
    synops_per_sample: float
    energy_per_sample_j: float | None
    cores_used: int | None
    latency_per_step_s: float | None
    parameters: int
    lava_refused: str | None = None  # why Lava did not run it (a hybrid's analog layers)
    fixed_accuracy_all: float | None = None  # fixed point (lava-emu) on every test sample
    fixed_samples: int | None = None
    emu_equals_lava_fixed: bool | None = None  # lava-emu's spikes are Lava fixed point's on the Lava samples
    fixed_accuracy_before_qat: float | None = None  # fixed point on every test sample before QAT (None: no QAT)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRow:
        return cls(**data)


@dataclass(frozen=True)
class RunReport:
    """``report.json``: the winner next to the baseline, the search's summary and Pareto set, netx outcomes and
    the time each step took. ``search``, ``pareto`` and ``netx`` are the file's sections as written."""

    winner: ModelRow
    baseline: ModelRow
    chip: str | None
    search: dict[str, Any]
    pareto_cost: str
    pareto: list[dict[str, Any]]
    netx: dict[str, Any]
    step_seconds: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "winner": self.winner.to_dict(), "baseline": self.baseline.to_dict(),
                "chip": self.chip, "search": self.search, "pareto_cost": self.pareto_cost, "pareto": self.pareto,
                "netx": self.netx, "step_seconds": self.step_seconds, "files": _FILES}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"report has schema_version {data.get('schema_version')!r}, "
                             f"this nasflow reads {SCHEMA_VERSION}")
        return cls(ModelRow.from_dict(data["winner"]), ModelRow.from_dict(data["baseline"]), data["chip"],
                   data["search"], data["pareto_cost"], data["pareto"], data["netx"], data["step_seconds"])


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated when maximising the first and minimising the second value, by cost.

    A point is dominated when another is at least as accurate and at most as costly, and strictly
    better in one of the two. Ties (equal points) all stay on the front (``nasflow.strategies.nsga2.non_dominated``).
    """
    front = non_dominated(np.array([[-a, c] for a, c in points], float).reshape(-1, 2))
    return sorted(front, key=lambda k: points[k][1])


def _cost_key(evaluated: list[dict[str, Any]]) -> str:
    """The energy cost of a hardware-aware search (``energy:<chip>``), else spikes."""
    costs = evaluated[0].get("costs", {}) if evaluated else {}
    return next((k for k in costs if k.startswith("energy:")), "spikes")


def _candidates(search: SearchStep) -> tuple[list[dict[str, Any]], str]:
    rows = search.evaluated
    # a multi-objective search plots its first cost objective; otherwise energy, else spikes
    key = next((o for o in search.objectives or () if o != "accuracy"), None) or _cost_key(rows)
    return [{"arch": r["arch"], "accuracy": r["accuracy"], "cost": r.get("costs", {}).get(key, r.get(key)),
             "fitness": r["fitness"]} for r in rows], key


def _model_row(m: TrainedModel, s: SimulatedModel, h: HwReport) -> ModelRow:
    return ModelRow(
        arch=m.arch,
        torch_accuracy=m.test_accuracy,
        test_samples=m.test_samples,
        lava_samples=s.samples,
        torch_accuracy_on_lava_samples=s.torch_accuracy,
        lava_accuracy=s.lava.accuracy,
        lava_fixed_accuracy=s.lava_fixed.accuracy if s.lava_fixed else None,
        fixed_accuracy_all=s.lava_emu.accuracy if s.lava_emu else None,
        fixed_samples=s.emu_samples,
        emu_equals_lava_fixed=s.emu_equals_lava_fixed,
        fixed_accuracy_before_qat=s.qat["fixed_accuracy_before"] if s.qat else None,
        netx_accuracy=s.netx.accuracy if s.netx else None,
        lava_min_precision=_min_metric(s.lava.compare, "precision"),
        lava_min_recall=_min_metric(s.lava.compare, "recall"),
        spikes_per_sample=m.spikes_per_sample,
        synops_per_sample=m.synops_per_sample,
        energy_per_sample_j=h.energy_per_sample_j,
        cores_used=h.cores_used,
        latency_per_step_s=h.latency_per_step_s,
        parameters=m.parameters,
        lava_refused=s.lava.refused,
    )


def _netx_outcome(e: ExportedModel, s: SimulatedModel) -> str | None:
    """netx's error when it ran and failed, else its file, else why it was not exported."""
    return (s.netx.error if s.netx else None) or e.netx or e.netx_skipped


def _min_metric(compare: dict[str, Any] | None, key: str) -> float | None:
    if not compare:
        return None
    values = [row[key] for row in compare.get("nodes", {}).values() if row.get(key) is not None]
    return min(values) if values else None


def write_reports(out_dir: str | Path, *, cfg: dict[str, Any], search: SearchStep, models: ByRole[TrainedModel],
                  exported: ByRole[ExportedModel], simulated: ByRole[SimulatedModel], hardware: ByRole[HwReport],
                  step_seconds: dict[str, float], temporal: dict[str, Any] | None = None) -> RunReport:
    """Write report.json, report.md, report.html and plots/*.png in ``out_dir``; return the report. ``temporal``:
    the temporal step's outcome (TPS/HNS on the winner), kept under ``search.temporal``."""
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    candidates, cost_key = _candidates(search)
    front = pareto_front([(c["accuracy"], c["cost"]) for c in candidates])
    report = RunReport(
        winner=_model_row(models.winner, simulated.winner, hardware.winner),
        baseline=_model_row(models.baseline, simulated.baseline, hardware.baseline),
        chip=cfg.get("chip"),
        search={
            "best": search.best,
            "cost": search.cost,
            "lambda": search.lam,
            "evaluated": len(candidates),
            "supernet_seconds": search.supernet_seconds,
            "search_seconds": search.search_seconds,
            "search_cost_seconds": step_seconds.get("search"),
            "value": search.value_label or "accuracy",  # SNASNet ranks by a training-free score, not accuracy
            **({"objectives": search.objectives, "pick": search.pick} if search.objectives else {}),
            **({"temporal": temporal} if temporal and temporal.get("method") != "none" else {}),
        },
        pareto_cost=cost_key,
        pareto=[candidates[i] for i in front],
        netx={role: _netx_outcome(e, s) for (role, e), (_, s) in zip(exported.items(), simulated.items())},
        step_seconds=step_seconds,
    )
    images = _plots(plots, candidates, front, cost_key, search.arch, models, hardware, search.value_label)
    traffic = _traffic_tables(hardware)
    write_json(out_dir / "report.json", report, indent=2)
    (out_dir / "report.md").write_text(_markdown(report, images, traffic))
    (out_dir / "report.html").write_text(_html(report, images, traffic))
    return report


def _plots(plots: Path, candidates, front, cost_key, best_arch, models, hardware, value_label=None) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    acc = np.array([c["accuracy"] for c in candidates], dtype=float) * (1 if value_label else 100)
    cost = np.array([c["cost"] for c in candidates], dtype=float)
    scale, unit = {"energy": (1e9, "nJ"), "latency": (1e6, "µs per step")}.get(cost_key.split(":")[0],
                                                                            (1.0, cost_key.split(":")[0]))
    ax.scatter(cost * scale, acc, s=14, alpha=0.5, label="evaluated candidates")
    ax.plot(cost[front] * scale, acc[front], "-o", color="C3", ms=4, label="Pareto front")
    best = [i for i, c in enumerate(candidates) if c["arch"] == best_arch]
    if best:
        ax.scatter(cost[best] * scale, acc[best], marker="*", s=220, color="gold", edgecolor="k", zorder=5,
                   label=f"winner {best_arch}")
    ax.set_xlabel(f"{cost_key} per sample ({unit}, supernet weights, D_val)")
    ax.set_ylabel(value_label or "accuracy on D_val (%)")
    ax.set_title("Search: accuracy versus cost")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plots / "pareto.png", dpi=110)
    plt.close(fig)
    what = "Score" if value_label else "Accuracy"
    images[f"{what} versus {cost_key.split(':')[0]} of every evaluated candidate"] = "plots/pareto.png"

    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for k, (role, model) in enumerate(models.items()):
        rates = model.firing_rates
        names = list(rates)
        ax.bar(np.arange(len(names)) + 0.4 * k, [rates[n] * 100 for n in names], width=0.4,
               label=f"{role} ({model.arch})")
    ax.set_xlabel("spiking layer (in network order)")
    ax.set_ylabel("firing rate (% of neuron-steps)")
    ax.set_title("Per-layer firing rates on the test set")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plots / "firing_rates.png", dpi=110)
    plt.close(fig)
    images["Per-layer firing rates"] = "plots/firing_rates.png"

    from nasflow.hw_plots import plot_layer_energy, plot_traffic_heatmap

    for role, hw in hardware.items():
        plot_traffic_heatmap(hw, plots / f"{role}_traffic.png")
        images[_traffic_caption(role, hw)] = f"plots/{role}_traffic.png"
        if hw.costed:
            plot_layer_energy(hw, plots / f"{role}_energy.png")
            images[f"{role}: energy per layer and term on {hw.chip} ({ENERGY_UNIT})"] = f"plots/{role}_energy.png"
    return images


def _traffic_caption(role: str, hw: HwReport) -> str:
    return (f"{role}: traffic into each of the {hw.cores_used} {hw.chip} cores (received {TRAFFIC_UNIT}), "
            "each labelled with the layer it holds")


def _core_ranges(cores: list[int]) -> str:
    """[0, 1, 2, 5] → '0–2, 5'."""
    spans: list[list[int]] = []
    for c in cores:
        if spans and c == spans[-1][1] + 1:
            spans[-1][1] = c
        else:
            spans.append([c, c])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)


def _traffic_tables(hardware: ByRole[HwReport]) -> dict[str, list[tuple[str, str, str, str]]]:
    """For each heatmap (by its plot path): one row per layer with its cores, tiles and the messages each core
    receives, so the page states in text what the picture's tiles show (and a reader can search for a layer)."""
    from nasflow.hw_plots import format_count, traffic_rows

    tables = {}
    for role, hw in hardware.items():
        by_layer: dict[str, list[dict[str, Any]]] = {}
        for r in traffic_rows(hw):
            by_layer.setdefault(r["layer"], []).append(r)
        rows = []
        for layer, cores in by_layer.items():
            tiles = ", ".join(dict.fromkeys(f"({r['x']}, {r['y']})" for r in cores))
            msgs = [r["messages_in_per_sample"] for r in cores]
            rows.append((layer, _core_ranges([r["core"] for r in cores]), tiles,
                         "n/a" if None in msgs else ", ".join(format_count(m) for m in msgs)))
        tables[f"plots/{role}_traffic.png"] = rows
    return tables


_TRAFFIC_HEADER = ("layer", "cores", "tiles (x, y)", f"received {TRAFFIC_UNIT}, per core")


def format_value(value: Any, kind: str = "") -> str:
    """A report value as the tables print it: ``pct`` a fraction as a percentage, ``j`` joules in nJ, floats with
    thousands separators, None as n/a."""
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "j":
        return f"{value * 1e9:.1f} nJ"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)



_ROWS = [
    ("architecture", "arch", ""), ("torch test accuracy", "torch_accuracy", "pct"),
    ("torch accuracy (Lava samples)", "torch_accuracy_on_lava_samples", "pct"),
    ("Lava floating-point accuracy", "lava_accuracy", "pct"),
    ("Lava fixed-point accuracy", "lava_fixed_accuracy", "pct"),
    ("fixed-point accuracy before QAT, all test samples", "fixed_accuracy_before_qat", "pct"),
    ("fixed-point accuracy, all test samples (lava-emu)", "fixed_accuracy_all", "pct"),
    ("lava-emu spikes equal Lava fixed point", "emu_equals_lava_fixed", ""),
    ("netx accuracy", "netx_accuracy", "pct"), ("Lava min per-layer precision", "lava_min_precision", "pct"),
    ("Lava min per-layer recall", "lava_min_recall", "pct"), ("spikes per sample", "spikes_per_sample", ""),
    ("energy per sample", "energy_per_sample_j", "j"), ("cores used", "cores_used", ""),
    ("parameters", "parameters", ""),
]


def _value_text(value: float, report: RunReport) -> str:
    if report.search["value"] == "accuracy":
        return f"accuracy {100 * value:.1f}%"
    return f"{report.search['value']} {value:.4g}"


def _cost_text(cost: float, key: str) -> str:
    if key.startswith("energy:"):
        return f"{cost * 1e9:,.1f} nJ"
    return f"{cost * 1e6:,.2f} µs per step" if key.startswith("latency:") else f"{cost:,.0f} {key}"


def _markdown(report: RunReport, images: dict[str, str],
              traffic: dict[str, list[tuple[str, str, str, str]]] | None = None) -> str:
    w, b = report.winner, report.baseline
    lines = ["# nasflow run report", "", f"Chip profile: {md_text(report.chip)}; search cost "
             f"{format_value(report.search['search_cost_seconds'])} s; {report.search['evaluated']} candidates.", "",
             "| | searched winner | baseline |", "|---|---|---|"]
    lines += [f"| {label} | {md_text(format_value(getattr(w, key), kind))} | "
              f"{md_text(format_value(getattr(b, key), kind))} |" for label, key, kind in _ROWS]
    lines += [f"\nLava did not run the {role}: {md_text(row.lava_refused)}" for role, row in
              (("winner", w), ("baseline", b)) if row.lava_refused]
    tmp = report.search.get("temporal")
    if tmp:
        energy = tmp.get("energy") or {}
        extra = (f"; E_decoded/E_ref {energy['e_ratio']:.3f} ({energy['factors']} factors, {energy['accounting']})"
                 if "e_ratio" in energy else "")
        lines += ["", f"Temporal search on the winner ({tmp['method'].upper()}): {md_text(tmp['arch'])}{extra}."]
    lines += ["", f"netx: winner {md_text(report.netx['winner'])}; baseline {md_text(report.netx['baseline'])}", "",
              f"Pareto set (D_val accuracy with supernet weights, {md_text(report.pareto_cost)}):", ""]
    lines += [f"- {md_text(p['arch'])}: {_value_text(p['accuracy'], report)}, "
              f"{md_text(_cost_text(p['cost'], report.pareto_cost))}" for p in report.pareto]
    lines.append("")
    for t, p in images.items():
        lines += [f"![{md_text(t)}]({p})", ""]
        if traffic and p in traffic:
            lines += ["| " + " | ".join(_TRAFFIC_HEADER) + " |", "|---|---|---|---|"]
            lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in traffic[p]] + [""]
    return "\n".join(lines)


def _html_figure(caption: str, path: str, table: list[tuple[str, str, str, str]] | None) -> str:
    """One plot; a heatmap links to its full-size PNG and carries its core → layer → messages table."""
    src, text = html.escape(path), html.escape(caption)
    if table is None:
        return f'<figure><img src="{src}" alt="{text}"><figcaption>{text}</figcaption></figure>'
    layers = ", ".join(row[0] for row in table)
    alt = html.escape(f"{caption}; layers: {layers}")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _TRAFFIC_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table)
    return (f'<figure class="traffic"><a href="{src}"><img src="{src}" alt="{alt}"></a><figcaption>{text}'
            f'<table class="traffic"><tr>{head}</tr>{body}</table></figcaption></figure>')


def _html(report: RunReport, images: dict[str, str],
          traffic: dict[str, list[tuple[str, str, str, str]]] | None = None) -> str:
    w, b = report.winner, report.baseline
    rows = "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(format_value(getattr(w, key), kind))}</td>"
                   f"<td>{html.escape(format_value(getattr(b, key), kind))}</td></tr>" for label, key, kind in _ROWS)
    figures = "".join(_html_figure(t, p, (traffic or {}).get(p)) for t, p in images.items())
    netx = "; ".join(f"{role}: {html.escape(str(v))}" for role, v in report.netx.items())
    pareto = "".join(f"<li><code>{html.escape(p['arch'])}</code>: {_value_text(p['accuracy'], report)}, "
                     f"{_cost_text(p['cost'], report.pareto_cost)}</li>" for p in report.pareto)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nasflow run report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
figure{{display:inline-block;margin:1em}}img{{max-width:100%}}figure.traffic{{display:block}}
table.traffic{{margin-top:.5em;font-size:90%}}</style></head>
<body><h1>nasflow run report</h1>
<p>Chip profile <code>{html.escape(str(report.chip))}</code>; {report.search['evaluated']} candidates evaluated;
search took {format_value(report.search['search_cost_seconds'])} s.</p>
<table><tr><th></th><th>searched winner</th><th>baseline</th></tr>{rows}</table>
<p>netx (Loihi 2 deployment file): {netx}</p>
<h2>Pareto set (D_val accuracy with supernet weights, {html.escape(report.pareto_cost)})</h2><ul>{pareto}</ul>
<h2>Plots</h2>{figures}
</body></html>
"""
