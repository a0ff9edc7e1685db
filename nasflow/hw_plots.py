"""Plots of a hardware report (matplotlib stays out of hwmodels): per-core traffic on the mesh, energy bars.

Both plot functions build a ``matplotlib.figure.Figure`` without pyplot (no global figure state, safe in worker
threads), save it when given a path and return it, so callers and tests can read what a reader will see.
matplotlib is imported inside them: the report's text parts use this module's units and rows without it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hwmodels.report import HwReport

__all__ = ["plot_traffic_heatmap", "plot_layer_energy", "traffic_rows", "format_count"]

TRAFFIC_UNIT = "messages / sample"
ENERGY_UNIT = "µJ / sample"


def traffic_rows(report: HwReport) -> list[dict[str, Any]]:
    """One row per core: index, mesh tile (x, y), the layer (and block of it) it holds, messages in per sample.

    The heatmap and the report's caption table read the same rows, so the picture and the text agree.
    ``messages_in_per_sample`` is None for a capacity-only report (no activity given).
    """
    msgs = (report.per_core or {}).get("messages_in_per_sample")
    rows = []
    for core, block in enumerate(report.blocks):
        rows.append(
            {
                "core": core,
                "x": int(block["x"]),
                "y": int(block["y"]),
                "layer": str(block["layer"]),
                "block": int(block.get("block", 0)),
                "messages_in_per_sample": None if msgs is None else float(msgs[core]),
            }
        )
    return rows


def _profile_layout(chip: str) -> tuple[int | None, int | None]:
    """(cores per tile, mesh width of one chip) from a bundled profile; (None, None) for a user's profile file."""
    try:
        from hwmodels import list_profiles, load_profile

        if chip not in list_profiles():
            return None, None
        profile = load_profile(chip)
    except Exception:  # the plot still draws from the report alone
        return None, None
    if profile.kind != "neuromorphic":
        return 1, None
    return int(profile.get("cores_per_tile", 1)), int(profile.get("mesh_width", 0)) or None


def _split_name(name: str, width: int) -> list[str]:
    """``name`` in lines of at most ``width`` characters, broken after '.', '_' or '/' where possible."""
    tokens, cur = [], ""
    for ch in name:
        cur += ch
        if ch in "._/":
            tokens.append(cur)
            cur = ""
    if cur:
        tokens.append(cur)
    lines: list[str] = []
    for tok in tokens:
        while len(tok) > width:  # one part longer than a line: cut it
            room = width - len(lines[-1]) if lines and len(lines[-1]) < width else 0
            if room:
                lines[-1] += tok[:room]
                tok = tok[room:]
            else:
                lines.append(tok[:width])
                tok = tok[width:]
        if lines and len(lines[-1]) + len(tok) <= width:
            lines[-1] += tok
        elif tok:
            lines.append(tok)
    return lines or [""]


def _core_label(name: str, width: int, max_lines: int) -> str:
    """The layer name wrapped to fit a core's cell; too long even wrapped, its longest tail that fits (the
    distinctive part of a dotted module path, cut after a separator where possible) stays behind an ellipsis.
    The report's table lists the full names."""
    lines = _split_name(name, width)
    if len(lines) <= max_lines:
        return "\n".join(lines)
    at_separator = [i + 1 for i, ch in enumerate(name[:-1]) if ch in "._/"]
    for start in [*at_separator, *range(1, len(name))]:
        lines = _split_name("…" + name[start:], width)
        if len(lines) <= max_lines:
            return "\n".join(lines)
    return "…" + name[-(width - 1):]


def format_count(v: float) -> str:
    """A message count as the heatmap prints it in a core's cell (3 significant digits, thousands separated), so
    that the report's table quotes the same numbers a reader sees on the picture."""
    if v >= 1e5:
        return f"{v:.2e}"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _ink(face: Any) -> str:
    """Black or white, whichever reads better on ``face``."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(face)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _save(fig: Figure, path: str | Path | None, dpi: int) -> None:
    if path is not None:
        fig.savefig(path, dpi=dpi)


def plot_traffic_heatmap(report: HwReport, path: str | Path | None = None, dpi: int = 110) -> Figure:
    """Draw the chip's mesh as the mapping uses it: each tile (router) split into its cores, each core coloured
    by the messages it receives per sample and labelled with the layer it holds, so a reader sees where the
    traffic lands and which layer causes it. Saved to ``path`` when given; returns the figure."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    rows = traffic_rows(report)
    chip = str(report.chip)
    cpt, chip_width = _profile_layout(chip)
    per_tile: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per_tile[(r["x"], r["y"])].append(r)
    w = max([report.mesh.get("width", 0)] + [r["x"] + 1 for r in rows] + [1])
    h = max([report.mesh.get("height", 0)] + [r["y"] + 1 for r in rows] + [1])
    slots = max([cpt or 1] + [len(v) for v in per_tile.values()])
    sub_c = math.ceil(math.sqrt(slots))
    sub_r = math.ceil(slots / sub_c)

    # Cell sizes (inches) and font from how many core columns and rows the figure must hold: up to 32 columns
    # (8 Loihi tiles of 4 cores) every core keeps a legible name; beyond, the cells shrink to fit a page and
    # only their colour remains (the report's table still names every core's layer).
    cols, lines = w * sub_c, h * sub_r
    labelled = cols <= 32 and lines <= 16
    if labelled:
        cell_w = min(1.15, max(0.7, 11.0 / cols))
        cell_h = min(0.85, max(0.6, cell_w * 0.75, 1.4 / lines))
    else:
        cell_w = max(0.08, min(0.7, 22.0 / cols))
        cell_h = max(0.08, min(0.6, 10.0 / lines))
    font = min(9.0, max(6.5, cell_w * 9.0))
    chars = max(6, int(cell_w * 72 / (font * 0.62)))
    name_lines = 3 if cell_h >= 0.7 else 2
    fig = Figure(figsize=(max(7.0, cols * cell_w + 2.6), max(3.0, lines * cell_h + 1.7)))
    ax = fig.add_subplot()

    values = [r["messages_in_per_sample"] for r in rows if r["messages_in_per_sample"] is not None]
    cmap = colormaps["viridis"]
    norm = Normalize(0.0, max(values + [1e-12]))
    gap = 0.05  # between tiles, so that the routers' boundaries show
    tw, th = (1.0 - 2 * gap) / sub_c, (1.0 - 2 * gap) / sub_r
    for x in range(w):
        for y in range(h):
            cores = per_tile.get((x, y), [])
            for k in range(sub_c * sub_r if cores else 0):
                col, row = k % sub_c, k // sub_c
                x0, y0 = x - 0.5 + gap + col * tw, y - 0.5 + gap + row * th
                if k >= len(cores):
                    ax.add_patch(Rectangle((x0, y0), tw, th, facecolor="0.94", edgecolor="white"))
                    continue
                r = cores[k]
                v = r["messages_in_per_sample"]
                face = cmap(norm(v)) if v is not None else "0.8"
                ax.add_patch(Rectangle((x0, y0), tw, th, facecolor=face, edgecolor="white",
                                       lw=1.2 if labelled else 0.3))
                if not labelled:
                    continue
                ink = _ink(face)
                ax.text(x0 + tw / 2, y0 + th * 0.42, _core_label(r["layer"], chars, name_lines), ha="center",
                        va="center", fontsize=font, color=ink, linespacing=1.0)
                if v is not None:
                    ax.text(x0 + tw / 2, y0 + th * 0.93, format_count(v), ha="center", va="bottom",
                            fontsize=max(font - 1, 6.0), color=ink)
            if labelled or cores:
                frame = (1.2 if cores else 0.8) if labelled else 0.4
                ax.add_patch(Rectangle((x - 0.5 + gap / 2, y - 0.5 + gap / 2), 1 - gap, 1 - gap, fill=False,
                                       edgecolor="0.25" if cores else "0.75", lw=frame, ls="-" if cores else "--"))
    if chip_width and w > chip_width:
        for bx in range(chip_width, w, chip_width):
            ax.axvline(bx - 0.5, color="crimson", ls="--", lw=2)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)  # row 0 on top, where the host's input enters the mesh
    xs, ys = range(0, w, math.ceil(w / 32)), range(0, h, math.ceil(h / 16))
    ax.set_xticks(xs, [str(i) for i in xs])
    ax.set_yticks(ys, [str(i) for i in ys])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if report.chip_kind == "neuromorphic":
        place = "tile"
        ax.set_xlabel("tile x (mesh column)")
        ax.set_ylabel("tile y (mesh row)")
        per = f"{slots} cores per tile" if slots > 1 else "one core per tile"
    else:  # hwmodels lays an accelerator's per-layer blocks out in one row: there is no mesh to name
        place = "core"
        ax.set_xlabel("core x (one block per layer, no mesh)")
        ax.set_ylabel("core y")
        per = "one block per layer"
    chips = report.chips_needed or 1
    what = "messages received per core" if values else "cores and the layers they hold"
    title = f"{chip}: {what} ({len(rows)} cores, {per}" + (f", {chips} chips side by side)" if chips > 1 else ")")
    if values:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.04, pad=0.02,
                     label=f"received {TRAFFIC_UNIT}")
        named = "named after the layer it holds" if labelled else "too many to name here"
        subtitle = f"a cell per core, {named}; input enters at {place} (0, 0)"
    else:
        subtitle = "capacity only: give activity for the traffic"
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    fig.tight_layout()
    _save(fig, path, dpi)
    return fig


def plot_layer_energy(report: HwReport, path: str | Path | None = None, dpi: int = 110) -> Figure:
    """Stacked bars of each layer's energy per sample by term, in µJ (the unit of the README's results), so the
    layers that dominate the cost and the term that drives them stand out. Saved to ``path`` when given."""
    from matplotlib.figure import Figure

    layers = report.layers
    terms = report.terms_included or []
    fig = Figure(figsize=(max(5.0, len(layers) * 0.7 + 1.5), 4.2))
    ax = fig.add_subplot()
    bottom = np.zeros(len(layers))
    for term in terms:
        vals = np.array([(r.get("energy_j") or {}).get(term, 0.0) for r in layers]) * 1e6
        ax.bar(range(len(layers)), vals, bottom=bottom, label=term)
        bottom += vals
    ax.set_xticks(range(len(layers)), [r["layer"] for r in layers], rotation=45, ha="right")
    ax.set_xlabel("layer (in network order)")
    ax.set_ylabel(f"energy ({ENERGY_UNIT})")
    ax.set_title(f"{report.chip}: energy per layer and term")
    if terms:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no priced energy terms for this chip", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    _save(fig, path, dpi)
    return fig
