"""``nasflow simulate``: run a NIR graph, a netx network or a trained model on a backend and record its activity.

Backends other than torch are imported only when asked for. The output folder receives ``simulate.json``
(``schema_version`` 1: backend, dt, steps, samples, accuracy, spikes_per_sample, synops_per_sample and
macs_per_sample; per node type, shape, spikes_per_sample (also for an Input fed with spikes) and nonzero_per_sample,
and for weight nodes ``synops`` (per target layer: source, acs_per_sample, macs_per_sample, counted by
``hwmodels.traffic.measured_synops`` from the simulated activity); ``compare`` with per-node precision/recall
against the torch reference when ``--compare torch``) and ``activity.npz`` (every node's output ``[T, B, *shape]``
on the reference time axis).

A stereo ``model.pt`` (``spikedhs-stereo``) with a stereo ``--dataset`` runs its feature network on both cameras
(``2 × --samples`` chip samples, left then right) and its host part on the backend's output spikes:
``simulate.json`` adds ``stereo_samples``, ``one_pixel_accuracy`` (also as ``accuracy``), ``mean_disparity_error``
and ``host_ops_per_stereo_sample``, which ``nasflow hw`` reports beside the chip's cost.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from exporters.core.jsonio import SCHEMA_VERSION, write_json
from exporters.dialects import DIALECTS
from nasflow.cli.export import export_graph

__all__ = ["BACKENDS", "add_simulate_parser", "cmd_simulate", "load_graph", "write_simulation"]

BACKENDS = ("torch", "lava", "lava-fixed", "lava-emu", "netx")


def add_simulate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand; returns its parser."""
    s = subparsers.add_parser("simulate", help="simulate a NIR graph (or netx .net) on torch, Lava or netx",
                              description="Run a NIR graph, a netx network or a trained model on test samples or "
                              "on a given input, with the torch reference, Lava (floating or fixed point) or "
                              "lava-dl netx. The output folder receives simulate.json (accuracy, spikes per node, "
                              "optionally a comparison with torch) and activity.npz (every node's output).")
    s.add_argument("model", help="a .nir graph, a .net (netx backend) or a model.pt (exported on the fly)")
    s.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="torch (the reference), lava, lava-fixed (Lava's fixed-point models), lava-emu (the same "
                   "fixed-point network emulated bit for bit without Lava, all samples at once) or netx (default "
                   "torch)")
    s.add_argument("--dataset", help="dataset whose test split feeds the model (e.g. digits)")
    s.add_argument("--data-dir", help="folder holding real datasets (never downloaded)")
    s.add_argument("--samples", type=int, default=16, help="number of test samples (default 16)")
    s.add_argument("--steps", type=int, help="time steps T (default: the graph's metadata['steps'])")
    s.add_argument("--input", help="an .npy array [T, B, *input_shape] replacing --dataset")
    s.add_argument("--dt", type=float, help="seconds per step (default: the graph's metadata['dt'])")
    s.add_argument("--dialect", choices=DIALECTS, default="nir",
                   help="whose discretisation a third-party .nir means: nir (NIR's reference semantics, the "
                   "default), snntorch, norse, sinabs or rockpool (the producing framework's own; README 'NIR "
                   "dialects')")
    s.add_argument("--fixed-point", help="lava-fixed/lava-emu: the integers of a fixed_point.npz (nasflow train --qat "
                   "lava) instead of quantising the graph's weights")
    s.add_argument("--compare", choices=["torch"], help="per-node spike precision/recall against the torch backend")
    s.add_argument("--timeout", type=float, default=600.0, help="seconds before a Lava/netx run is stopped")
    s.add_argument("--out", required=True, help="folder for simulate.json and activity.npz")
    s.set_defaults(handler=cmd_simulate)
    return s


def load_graph(path: str | Path, dt: float | None = None, dialect: str = "nir"):
    """A NIR graph from a ``.nir`` file (read with ``dialect``, ``exporters.dialects``), a lava-dl ``.net`` (its
    Loihi integers, ``exporters.netx_import``), or exported from a nasflow ``model.pt``; ``dt`` defaults to 1 ms
    for the latter two and to the file's or the dialect's step for a ``.nir``. A producer named in a ``.nir``'s
    metadata is reported on stderr, never applied."""
    import sys

    from exporters.core.traversal import check_finite_parameters
    from exporters.dialects import producer_hint
    from exporters.nir_io import read_nir

    path = Path(path)
    if path.suffix in (".net", ".pt") and dialect != "nir":
        raise ValueError(f"--dialect {dialect} applies to third-party .nir files, not to {path.name}")
    if path.suffix == ".net":
        from exporters.netx_import import read_netx

        return read_netx(path, dt=dt or 1e-3)
    if path.suffix == ".pt":
        graph = export_graph(path, dt or 1e-3)
        check_finite_parameters(graph, path)
        return graph
    graph = read_nir(path, dialect=dialect, dt=dt)
    hint = producer_hint(graph) if dialect == "nir" else None
    if hint:
        print(f"{path}: its metadata names {hint} as the producer; read with NIR's own semantics (pass --dialect "
              f"{hint} to run it as {hint} does)", file=sys.stderr)
    return graph


def _dataset_input(name: str, samples: int, steps: int | None, data_dir: str | None,
                   shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``x [T, B, *shape]`` float32 and labels from the first ``samples`` test samples."""
    import torch

    from nasflow.data import make_loaders

    if samples < 1:
        raise ValueError(f"--samples must be at least 1, got {samples}")
    loaders = make_loaders(name, batch_size=samples, data_dir=data_dir, T=steps)
    x, y = next(iter(loaders.test))
    if tuple(x.shape[1:]) == shape:  # static images: the direct encoder sees the image at every step
        if not steps:
            raise ValueError("the graph has no metadata['steps']: pass --steps T for a static dataset")
        x = x.unsqueeze(0).expand(steps, *x.shape)
    elif tuple(x.shape[2:]) == shape:  # event data: loaders give [B, T, ...]
        x = x.transpose(0, 1)
    else:
        raise ValueError(f"dataset {name!r} gives samples of shape {tuple(x.shape[1:])}; the graph's input is {shape}")
    return x.to(torch.float32).numpy(), y.numpy()


def _stereo_model(model_path: Path):
    """The stereo model saved in ``model_path`` (a ``model.pt`` whose host part matches the two cameras), else
    None."""
    if model_path.suffix != ".pt":
        return None
    from nasflow.models import load_model

    model, _ = load_model(model_path)
    return model.eval() if callable(getattr(model, "match", None)) else None


def _stereo_input(model, name: str, samples: int, steps: int | None, data_dir: str | None):
    """The first ``samples`` stereo test samples as the chip's input ``[T, 2B, 2, H, W]`` (``camera_streams``)
    and their disparity maps."""
    import torch

    from nasflow.data import make_loaders

    if samples < 1:
        raise ValueError(f"--samples must be at least 1, got {samples}")
    loaders = make_loaders(name, batch_size=samples, data_dir=data_dir, T=steps, size=tuple(model.in_hw))
    if loaders.spec.kind != "stereo":
        raise ValueError(f"the model is a stereo model; dataset {name!r} is not stereo (stereo-dots, mvsec)")
    x, d = next(iter(loaders.test))
    return model.camera_streams(x.to(torch.float32)).contiguous().numpy(), d


def _stereo_result(model, graph, activity: dict[str, np.ndarray], disparity) -> dict[str, Any]:
    """Disparity from the backend's feature spikes through the host part: one-pixel accuracy, mean disparity
    error, and the host operations per stereo sample (two chip samples: one per camera)."""
    import torch

    from exporters.core.traversal import output_ids
    from nasflow.train.tasks import StereoTask

    out = output_ids(graph)[0]
    task = StereoTask(model.disparity_step)
    with torch.no_grad():
        cost = model.match(torch.as_tensor(np.asarray(activity[out]), dtype=torch.float32))
    metrics = task.metrics(task.tally(cost, disparity))
    return {"stereo_samples": int(disparity.shape[0]), "one_pixel_accuracy": metrics["accuracy"],
            "mean_disparity_error": metrics["mean_disparity_error"], "chip_samples_per_stereo_sample": 2,
            "host_ops_per_stereo_sample": model.host_ops()}


def _run_backend(backend: str, graph, model_path: Path, x: np.ndarray, dt: float | None, timeout: float,
                 out_dir: Path, fixed_point: str | None = None) -> dict[str, np.ndarray]:
    if backend == "torch":
        from exporters.nir_torch import simulate

        return simulate(graph, x, dt=dt)
    if backend in ("lava", "lava-fixed"):
        from exporters import lava

        return lava.simulate(graph, x, dt, fixed_point=backend == "lava-fixed", timeout_s=timeout, quant=fixed_point)
    if backend == "lava-emu":
        from exporters import lava

        return lava.emulate(graph, x, dt, quant=fixed_point)
    from exporters import netx

    if model_path.suffix != ".net":
        net_path = out_dir / "model.net"
        out_dir.mkdir(parents=True, exist_ok=True)
        netx.export_netx(graph, net_path, dt=dt)
        return netx.complete_activity(graph, netx.simulate_netx(net_path, x, timeout_s=timeout))
    return netx.simulate_netx(model_path, x, timeout_s=timeout)


def _measured_synops(graph, activity: dict[str, np.ndarray]) -> tuple[dict[str, dict] | None, str | None]:
    """Per-connection synaptic ops of the simulated activity, counted by hwmodels (the one definition), so that
    ``nasflow hw`` gives the same ops from simulate.json as from activity.npz. (None, why) for graphs hwmodels
    does not map: the simulation itself stays valid, only its hardware accounting is missing."""
    from hwmodels.graph import build_layer_table
    from hwmodels.traffic import measured_synops

    if graph is None:
        return None, "synaptic ops not measured: no NIR graph (a bare .net file)"
    try:
        table = build_layer_table(graph)
        return measured_synops(table, {k: v for k, v in activity.items() if k in table.shapes}), None
    except ValueError as err:  # GraphError, ActivityError, NIRFormatError: the graph or activity hw cannot count
        return None, f"synaptic ops not measured: {err}"


def write_simulation(out_dir: str | Path, backend: str, graph, activity: dict[str, np.ndarray], dt: float | None,
                     accuracy: float | None, compare: dict[str, Any] | None,
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``simulate.json`` and ``activity.npz`` into ``out_dir``; returns the JSON dict. ``extra`` adds
    task fields (stereo: disparity metrics from the backend's spikes, host operations)."""
    from exporters.core.kinds import FIRING_TYPES, node_type
    from exporters.core.shapes import infer_shapes
    from exporters.core.traversal import input_ids

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first = next(iter(activity.values()))
    steps, batch = int(first.shape[0]), int(first.shape[1])
    nodes: dict[str, Any] = {}
    shapes = infer_shapes(graph) if graph is not None else {}
    inputs = input_ids(graph) if graph is not None else []
    total = 0.0
    for nid, arr in activity.items():
        a = np.asarray(arr)
        kind = node_type(graph.nodes[nid]) if graph is not None and nid in graph.nodes else None
        if graph is None and backend == "netx":
            kind = "netx"  # a bare .net file: every layer netx reports is a spiking (CUBA) layer
        spikes = float(a.sum()) / batch if kind in (*FIRING_TYPES, "netx") else None
        if spikes is not None:
            total += spikes
        nonzero = float(np.count_nonzero(a)) / batch
        if nid in inputs and np.isin(a, (0.0, 1.0, -1.0)).all():
            spikes = nonzero  # input spikes: not a neuron's output, so not in the total
        nodes[nid] = {"type": kind, "shape": list(shapes.get(nid, a.shape[2:])), "spikes_per_sample": spikes,
                      "nonzero_per_sample": nonzero}
    synops, why = _measured_synops(graph, activity)
    for nid, by_target in (synops or {}).items():
        nodes[nid]["synops"] = by_target
    conns = [rec for by_target in (synops or {}).values() for rec in by_target.values()]
    result = {
        "schema_version": SCHEMA_VERSION, "backend": backend, "dt": dt, "steps": steps, "samples": batch,
        "accuracy": accuracy, "spikes_per_sample": total,
        "synops_per_sample": sum(r["acs_per_sample"] for r in conns) if synops is not None else None,
        "macs_per_sample": sum(r["macs_per_sample"] for r in conns) if synops is not None else None,
        "nodes": nodes, "compare": compare, **(extra or {}),
    }
    if why is not None:
        result["synops_note"] = why
    write_json(out_dir / "simulate.json", result, indent=2, trailing_newline=True)
    np.savez_compressed(out_dir / "activity.npz", **{k: np.asarray(v) for k, v in activity.items()})
    return result


def cmd_simulate(args: argparse.Namespace) -> int:
    """``nasflow simulate MODEL --backend B [--dataset D --samples N | --input x.npy --dt DT] --out DIR``."""
    from exporters.core.shapes import infer_shapes
    from exporters.core.traversal import input_ids, output_ids, predecessors
    from exporters.equivalence import accuracy_from_output, compare_activity, is_membrane_readout

    model_path, out_dir = Path(args.model), Path(args.out)
    if model_path.suffix == ".net" and args.backend == "netx" and not args.compare:
        graph = None  # lava-dl runs the file itself
    else:
        graph = load_graph(model_path, args.dt, args.dialect)
    meta = graph.metadata if graph is not None and isinstance(graph.metadata, dict) else {}
    dt = args.dt if args.dt is not None else (float(meta["dt"]) if "dt" in meta else None)
    labels = disparity = None
    stereo = _stereo_model(model_path) if args.dataset and not args.input else None
    if args.input:
        x = np.load(args.input).astype(np.float32)
    elif stereo is not None:
        steps = args.steps or (int(meta["steps"]) if "steps" in meta else None)
        x, disparity = _stereo_input(stereo, args.dataset, args.samples, steps, args.data_dir)
    elif args.dataset:
        steps = args.steps or (int(meta["steps"]) if "steps" in meta else None)
        if graph is None:  # a .net file written by nasflow: its input layer holds the NIR (C, H, W) shape
            from exporters import netx

            shape = netx.netx_input_shape(model_path)
        else:
            shape = infer_shapes(graph)[input_ids(graph)[0]]
        x, labels = _dataset_input(args.dataset, args.samples, steps, args.data_dir, shape)
    else:
        raise ValueError("give the input: --dataset NAME (with --samples) or --input x.npy (with --dt)")
    if args.fixed_point and args.backend not in ("lava-fixed", "lava-emu"):
        raise ValueError(f"--fixed-point gives the integers of Lava's fixed point: use it with --backend lava-fixed "
                         f"or lava-emu, not {args.backend}")
    activity = _run_backend(args.backend, graph, model_path, x, dt, args.timeout, out_dir, args.fixed_point)
    accuracy, readout = None, []
    if graph is not None:
        outs = output_ids(graph)
        heads = predecessors(graph, outs[0]) if outs else []
        readout = heads[:1] if heads and is_membrane_readout(graph, heads[0]) else []
        if labels is not None and outs:
            accuracy = accuracy_from_output(activity, labels, outs[0], last_step=bool(readout))
    compare = None
    if args.compare == "torch":
        from exporters.nir_torch import simulate

        ref = activity if args.backend == "torch" else simulate(graph, x, dt=dt)
        compare = compare_activity(ref, activity, graph, values=[r for r in readout if r in activity])
        compare["reference"] = "torch"
    extra = _stereo_result(stereo, graph, activity, disparity) if stereo is not None else {}
    if extra:
        accuracy = extra["one_pixel_accuracy"]
    result = write_simulation(out_dir, args.backend, graph, activity, dt, accuracy, compare, extra)
    summary = {k: result[k] for k in ("backend", "steps", "samples", "accuracy", "spikes_per_sample",
                                      "mean_disparity_error") if k in result}
    if compare is not None:
        summary.update(min_precision=compare["min_precision"], min_recall=compare["min_recall"])
    print(json.dumps(summary))
    print(f"wrote {out_dir}/simulate.json, activity.npz")
    return 0
