"""Plots of a hardware report (matplotlib stays out of hwmodels): traffic heatmap on the mesh, energy bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_traffic_heatmap", "plot_layer_energy"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_traffic_heatmap(report: dict[str, Any], path: str | Path) -> Path:
    """Messages received per sample on each tile of the mesh (cores of a tile summed)."""
    plt = _plt()
    w, h = max(report["mesh"]["width"], 1), max(report["mesh"]["height"], 1)
    grid = np.zeros((h, w))
    msgs = report.get("per_core", {}).get("messages_in_per_sample", [0] * len(report["blocks"]))
    for b, v in zip(report["blocks"], msgs):
        grid[b["y"], b["x"]] += v
    fig, ax = plt.subplots(figsize=(max(6.4, w * 0.6), max(3.6, h * 0.6)))
    im = ax.imshow(grid, cmap="viridis", origin="upper", aspect="auto")
    fig.colorbar(im, ax=ax, label="messages in per sample")
    ax.set_xlabel("tile x")
    ax.set_ylabel("tile y")
    ax.set_title(f"{report['chip']}: traffic per tile ({report['cores_used']} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_layer_energy(report: dict[str, Any], path: str | Path) -> Path:
    """Stacked bars of energy per sample per layer and term."""
    plt = _plt()
    layers = report["layers"]
    terms = report.get("terms_included", [])
    fig, ax = plt.subplots(figsize=(max(4, len(layers) * 0.8), 3.5))
    bottom = np.zeros(len(layers))
    for term in terms:
        vals = np.array([r["energy_j"].get(term, 0.0) for r in layers])
        ax.bar(range(len(layers)), vals, bottom=bottom, label=term)
        bottom += vals
    ax.set_xticks(range(len(layers)), [r["layer"] for r in layers], rotation=45, ha="right")
    ax.set_ylabel("J per sample")
    ax.set_title(f"{report['chip']}: energy per layer")
    if terms:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no priced energy terms for this chip", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
