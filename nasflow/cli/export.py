"""``nasflow export``: a trained model (``model.pt``) to a NIR graph (``.nir``) or a lava-dl netx file (``.net``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_export_parser", "cmd_export", "export_graph"]


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand; returns its parser."""
    p = subparsers.add_parser("export", help="export a trained model (model.pt) to NIR (.nir) or lava-dl netx (.net)",
                              description="Export a model trained by nasflow to a NIR graph, which other SNN "
                              "frameworks and the Lava backends read, or to a lava-dl netx network file.")
    p.add_argument("model", help="model.pt written by nasflow train (nasflow.models.save_model)")
    p.add_argument("--to", choices=["nir", "netx"], default="nir", help="target format (default nir)")
    p.add_argument("--output", required=True, help="file to write (.nir or .net)")
    p.add_argument("--dt", type=float, default=1e-3, help="seconds per time step stored in the graph (default 1e-3)")
    p.add_argument("--strict-threshold", action="store_true",
                   help="export NIR's v > v_th instead of the model's v >= v_th (differs only on exact ties)")
    p.add_argument("--allow-lossy", action="store_true", help="export ALIF as LIF instead of failing")
    p.set_defaults(handler=cmd_export)
    return p


def export_graph(model_path: str | Path, dt: float = 1e-3, strict_threshold: bool = False,
                 allow_lossy: bool = False):
    """The NIR graph of a model saved by nasflow (``model.pt``)."""
    from exporters.nir_export import to_nir
    from nasflow.models import load_model

    model, _meta = load_model(model_path)
    return to_nir(model.eval(), dt=dt, strict_threshold=strict_threshold, allow_lossy=allow_lossy)


def cmd_export(args: argparse.Namespace) -> int:
    """``nasflow export MODEL.pt --to nir|netx --output PATH``."""
    from exporters.nir_io import write_nir

    graph = export_graph(args.model, args.dt, args.strict_threshold, args.allow_lossy)
    out = Path(args.output)
    if args.to == "nir":
        write_nir(out, graph)
    else:
        from exporters import netx

        out.parent.mkdir(parents=True, exist_ok=True)
        netx.export_netx(graph, out)
    print(json.dumps({"output": str(out), "format": args.to, "nodes": len(graph.nodes), "edges": len(graph.edges),
                      "dt": args.dt}))
    return 0
