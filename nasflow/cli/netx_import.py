"""``nasflow import``: a lava-dl netx network (``.net``) to a NIR graph (``.nir``) with its Loihi integers, or a
third-party ``.nir`` to one that states its producer's discretisation (``--dialect``) in NIR's reference terms."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exporters.dialects import DIALECTS

__all__ = ["add_import_parser", "cmd_import"]


def add_import_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``import`` subcommand; returns its parser."""
    p = subparsers.add_parser("import", help="import a lava-dl netx network (.net) or a peer's .nir as a NIR graph",
                              description="Decode a lava-dl / slayer netx network (CUBA layers: input, conv, flatten, "
                              "dense) into a NIR graph whose values are the file's Loihi integers, so nasflow's "
                              "fixed-point backends (lava-fixed, lava-emu) run exactly the network lava-dl runs; or "
                              "rewrite a .nir from snnTorch, Norse, Sinabs or Rockpool (--dialect) into a graph whose "
                              "parameters and metadata conventions compute what that framework computes. nasflow "
                              "simulate and nasflow hw also take both directly.")
    p.add_argument("model", help="a netx .net file, or a .nir file with --dialect")
    p.add_argument("--output", required=True, help="the .nir file to write")
    p.add_argument("--dt", type=float, help="seconds per time step stored in the graph (.net: default 1e-3; .nir: "
                   "the file's or the dialect's)")
    p.add_argument("--dialect", choices=DIALECTS, default="nir", help="the producer of a .nir (see nasflow simulate)")
    p.add_argument("--layers", type=int, help="keep only the first N layers (netx's num_layers)")
    p.set_defaults(handler=cmd_import)
    return p


def cmd_import(args: argparse.Namespace) -> int:
    """``nasflow import MODEL.net --output MODEL.nir``."""
    from exporters.netx_import import read_netx
    from exporters.nir_io import read_nir, write_nir

    out = Path(args.output)
    if Path(args.model).suffix == ".net":
        if args.dialect != "nir":
            raise ValueError(f"--dialect {args.dialect} applies to third-party .nir files; a .net has Loihi's own")
        graph = read_netx(args.model, dt=args.dt or 1e-3, layers=args.layers)
        info = {"fixed_point_units": "loihi"}
    else:
        if args.dialect == "nir":
            raise ValueError(f"{args.model}: a .nir needs --dialect (snntorch, norse, sinabs or rockpool) to be "
                             "imported; plain NIR files run as they are")
        if args.layers:
            raise ValueError("--layers applies to .net files only")
        graph = read_nir(args.model, dialect=args.dialect, dt=args.dt)
        info = {"dialect": args.dialect, "conventions": graph.metadata["conventions"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_nir(out, graph)
    print(json.dumps({"output": str(out), "nodes": len(graph.nodes), "edges": len(graph.edges),
                      "dt": graph.metadata.get("dt"), **info}))
    return 0
