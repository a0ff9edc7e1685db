"""``nasflow import``: a lava-dl netx network (``.net``) to a NIR graph (``.nir``) with its Loihi integers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_import_parser", "cmd_import"]


def add_import_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``import`` subcommand; returns its parser."""
    p = subparsers.add_parser("import", help="import a lava-dl netx network (.net) as a NIR graph (.nir)",
                              description="Decode a lava-dl / slayer netx network (CUBA layers: input, conv, flatten, "
                              "dense) into a NIR graph whose values are the file's Loihi integers, so nasflow's "
                              "fixed-point backends (lava-fixed, lava-emu) run exactly the network lava-dl runs. "
                              "nasflow simulate and nasflow hw also take the .net directly.")
    p.add_argument("model", help="a netx .net file")
    p.add_argument("--output", required=True, help="the .nir file to write")
    p.add_argument("--dt", type=float, default=1e-3, help="seconds per Loihi time step stored in the graph (1e-3)")
    p.add_argument("--layers", type=int, help="keep only the first N layers (netx's num_layers)")
    p.set_defaults(handler=cmd_import)
    return p


def cmd_import(args: argparse.Namespace) -> int:
    """``nasflow import MODEL.net --output MODEL.nir``."""
    from exporters.netx_import import read_netx
    from exporters.nir_io import write_nir

    graph = read_netx(args.model, dt=args.dt, layers=args.layers)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_nir(out, graph)
    print(json.dumps({"output": str(out), "nodes": len(graph.nodes), "edges": len(graph.edges), "dt": args.dt,
                      "fixed_point_units": "loihi"}))
    return 0
