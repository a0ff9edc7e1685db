"""``nasflow hw``: map a NIR graph on a chip and write hw.json, hw.md and plots."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from exporters.dialects import DIALECTS

__all__ = ["add_hw_parser", "cmd_hw"]


def add_hw_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``hw`` subcommand; returns its parser."""
    p = subparsers.add_parser("hw", help="map a NIR graph on a neuromorphic chip and estimate traffic and energy",
                              description="Place a NIR graph's neurons and synapses on the cores of a neuromorphic "
                              "chip model and estimate cores used, spike traffic, latency and energy per sample. "
                              "Activity from nasflow simulate makes the estimates count real spikes. The output "
                              "folder receives hw.json, hw.md and plots.")
    p.add_argument("model", nargs="?", help="MODEL.nir, or a model.pt (exported on the fly)")
    p.add_argument("--dialect", choices=DIALECTS, default="nir",
                   help="read a third-party .nir as its producer means it (see nasflow simulate --dialect)")
    p.add_argument("--chip", default="loihi", help="chip name (see --list-chips) or a profile .json file")
    p.add_argument("--activity", help="DIR/activity.npz (per-neuron) or DIR/simulate.json (per-node totals; synaptic "
                   "ops as measured by nasflow simulate when the file records them)")
    p.add_argument("--steps", type=int, help="time steps (only needed for per-node totals without 'steps')")
    p.add_argument("--placement", choices=["greedy", "traffic"], default="greedy",
                   help="core placement: greedy (layers in order) or traffic (swaps cores to shorten busy routes)")
    p.add_argument("--input", choices=["auto", "spikes", "analog"], default="auto",
                   help="input events for per-node totals: spikes (ACs), analog (MACs) or auto (spikes when "
                   "simulate.json counts input spikes, else dense analog input every step); synaptic ops that "
                   "simulate.json measured keep their measured ACs/MACs")
    p.add_argument("--include-static", action="store_true", help="add static power × time to the energy")
    p.add_argument("--out", help="output directory for hw.json, hw.md and plots")
    p.add_argument("--list-chips", action="store_true", help="list the bundled chip profiles")
    p.set_defaults(handler=cmd_hw)
    return p


def _host_ops(activity: str) -> dict[str, Any] | None:
    """Host operations ``nasflow simulate`` recorded next to the activity (stereo matching), or None."""
    sim = Path(activity).with_name("simulate.json")
    data = json.loads(sim.read_text()) if sim.is_file() else {}
    if "host_ops_per_stereo_sample" not in data:
        return None
    return {"unit": f"stereo sample ({data['chip_samples_per_stereo_sample']} chip samples: one per camera)",
            "ops": data["host_ops_per_stereo_sample"]}


def cmd_hw(args: argparse.Namespace) -> int:
    """Handler of ``nasflow hw``; errors a user can fix raise ValueError with one clear message."""
    from hwmodels import (
        ActivityError,
        GraphError,
        hw_report,
        list_profiles,
        load_activity,
        load_profile,
        read_graph,
        write_report,
    )
    from hwmodels.energy import DEFAULT_TERMS

    if args.list_chips:
        for name in list_profiles():
            p = load_profile(name)
            print(f"{name:20s} {p.kind:13s} {p.description}")
        return 0
    if not args.model or not args.out:
        raise ValueError("nasflow hw needs MODEL.nir and --out DIR (or --list-chips)")
    if str(args.model).endswith((".pt", ".net")) or args.dialect != "nir":  # a trained model, a lava-dl netx
        from nasflow.cli.simulate import load_graph  # file (its Loihi integers), or a peer's file in its dialect

        graph = load_graph(args.model, dialect=args.dialect)
    else:
        graph = read_graph(args.model)
    activity, steps = load_activity(args.activity) if args.activity else (None, None)
    terms = DEFAULT_TERMS + (("static",) if args.include_static else ())
    spiking = {"auto": None, "spikes": True, "analog": False}[args.input]
    try:
        report = hw_report(graph, args.chip, activity, args.steps or steps, args.placement, terms, spiking)
    except GraphError as err:
        raise GraphError(f"{args.model}: {err}") from None
    except ActivityError as err:
        raise ActivityError(f"{args.activity}: {err}") from None
    host = _host_ops(args.activity) if args.activity else None
    if host:
        report = dataclasses.replace(report, host=host)
    path = write_report(report, args.out)
    if activity is not None:
        from nasflow.hw_plots import plot_layer_energy, plot_traffic_heatmap

        plot_traffic_heatmap(report, Path(args.out) / "traffic_heatmap.png")
        plot_layer_energy(report, Path(args.out) / "energy_per_layer.png")
    keys = ("fits", "cores_used", "chips_needed", "energy_per_sample_j", "max_core_messages_per_step",
            "latency_per_step_s")
    print(json.dumps({k: getattr(report, k) for k in keys}, indent=2))
    print(f"wrote {path}")
    return 0
