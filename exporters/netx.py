"""NIR → lava-dl netx (``.net`` HDF5, the Loihi 2 deployment format) and back onto Lava.

The file follows what ``lava.lib.dl.netx.hdf5.Network`` reads (REFERENCE.md §7): ``layer/0`` is the input
(``type`` ``input``, ``shape`` in NIR's ``(C, H, W)`` order), then one ``conv`` or ``dense`` layer per
neuron node (``flatten`` in between where a conv layer feeds a dense one), each with ``shape``,
``weight`` (integers; conv in torch layout ``(Cout, Cin, kh, kw)``, dense ``(out, in)`` in CHW-flat
order), optional ``bias`` and ``neuron`` {``type`` CUBA, ``iDecay``, ``vDecay``, ``vThMant``,
``refDelay``, ``gradedSpike``}. Parameters are Loihi fixed point from ``exporters.lava.quantize`` with no
weight exponent (netx's conv synapse has none). Linear paths between neurons are collapsed as in
``exporters.lava`` (pool → conv becomes one conv; pool → flatten → affine one dense), because
netx implements no pooling layer.

netx expresses a chain only: residual fan-in, recurrence, skip connections, current biases on CUBA
neurons and non-spiking readouts are refused with ``ValueError`` naming the node.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import nir
import numpy as np

from exporters.core.hdf5 import check_hdf5
from exporters.core.jsonio import SCHEMA_VERSION
from exporters.core.process import scratch_dir
from exporters.core.traversal import topology
from exporters.lava.layout import lava_perm, lava_shape
from exporters.lava.plan import CONST, LavaPlan, build_plan
from exporters.lava.quantize import QuantPlan, quantize_plan
from exporters.lava.runtime import run_network

__all__ = ["export_netx", "open_netx", "simulate_netx", "NetxFormatError"]



class NetxFormatError(ValueError):
    """A ``.net`` file that is missing, truncated, not HDF5 or not a netx network (message names it)."""


def _check_chain(plan: LavaPlan) -> list[str]:
    """Neuron ids in chain order; raises ``ValueError`` naming the node netx cannot express."""
    chain: list[str] = []
    prev = plan.input_id
    for nid in [n for n in plan.order if n in plan.neurons]:
        spec = plan.neurons[nid]
        conns = [c for c in plan.conns if c.dst == nid]
        if spec.record != "s":
            raise ValueError(f"node {nid!r} ({spec.kind}): netx has no non-spiking readout neuron")
        if any(c.src == CONST for c in conns):
            raise ValueError(f"node {nid!r} ({spec.kind}): a bias into the synaptic current has no netx field "
                             "(netx biases add to the voltage)")
        if any(c.delays is not None and c.dense is None for c in conns):
            raise ValueError(f"node {nid!r}: netx has axonal delays on dense layers only, not on convolutions")
        if any(c.delayed for c in conns):
            raise ValueError(f"node {nid!r}: recurrence (a cycle through this node) cannot be expressed in netx")
        if len(conns) != 1:
            srcs = sorted(c.src for c in conns)
            raise ValueError(f"node {nid!r}: residual fan-in from {srcs} cannot be expressed in netx "
                             "(netx layers form a chain)")
        if conns[0].src != prev:
            raise ValueError(f"node {nid!r}: fed by {conns[0].src!r}, not by the previous layer {prev!r}; "
                             "netx layers form a chain")
        chain.append(nid)
        prev = nid
    if not chain:
        raise ValueError("the graph has no neuron layer to export to netx")
    return chain


def _write_neuron(grp: h5py.Group, q: object) -> None:
    neuron = grp.create_group("neuron")
    neuron.create_dataset("type", data=np.bytes_("CUBA"))
    neuron.create_dataset("iDecay", data=int(q.du) + 1)  # netx passes du = iDecay - 1
    neuron.create_dataset("vDecay", data=int(q.dv))
    neuron.create_dataset("vThMant", data=int(q.vth))
    neuron.create_dataset("refDelay", data=1)
    neuron.create_dataset("gradedSpike", data=False)


NETX_BIAS_MAX = 2**15 - 1  # netx hands the bias to Lava's LIF as bias_mant (int16) with bias_exp 6


def _netx_biases(quant: QuantPlan) -> QuantPlan:
    """``quant`` with every bias as netx stores it: a mantissa shifted by 6 (``bias << 6``), so that the plan returned
    by :func:`export_netx` holds exactly the file's integers (a finer exponent would be rounded away in the file)."""
    neurons = {}
    for nid, q in quant.neurons.items():
        value = np.asarray(q.bias_mant, dtype=np.int64) << q.bias_exp if q.bias_exp >= 0 else \
            np.asarray(q.bias_mant, dtype=np.int64) >> -q.bias_exp
        mant = np.rint(value / 64.0).astype(np.int64)
        if np.any(np.abs(mant) > NETX_BIAS_MAX):
            raise ValueError(f"node {nid!r}: bias up to {np.abs(value).max() / 64:g} (in 64ths of Lava's v) exceeds "
                             f"the {NETX_BIAS_MAX} that lava-dl's int16 bias_mant holds")
        neurons[nid] = dataclasses.replace(q, bias_mant=mant.astype(np.int32), bias_exp=6)
    return dataclasses.replace(quant, neurons=neurons)


def export_netx(graph: nir.NIRGraph, path: str | Path, dt: float | None = None,
                input_scale: float | None = None) -> QuantPlan:
    """Write ``graph`` as a netx ``.net`` file; returns the fixed-point plan (per-layer scales).

    ``input_scale``: ``None`` for spike input; for graded input (e.g. pixel values) the factor that turns
    an input value into the integer message netx receives. A graph exported by nasflow with direct coding
    (``metadata["input_encoding"] == "direct"``: analog images in [0, 1] every step) defaults to 255, the
    largest 8-bit graded message, since treating its pixels as binary spikes changes the network's drive.
    Raises ``ValueError`` naming the node for graphs netx cannot express.
    """
    plan = build_plan(graph, dt)
    graph = plan.compiled.graph
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if input_scale is None and str(meta.get("input_encoding", "")) == "direct":
        input_scale = 255.0
    chain = _check_chain(plan)
    quant = _netx_biases(quantize_plan(plan, input_scale=1.0 if input_scale is None else input_scale,
                                       max_weight_exp=0))
    conn_of = {c.dst: (i, c) for i, c in enumerate(plan.conns)}
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.attrs["nasflow_schema_version"] = SCHEMA_VERSION
        f.attrs["nasflow_input_scale"] = float(quant.input_scale)
        f.attrs["nasflow_graded_input"] = input_scale is not None
        layers = f.create_group("layer")
        inp = layers.create_group("0")
        inp.create_dataset("type", data=np.bytes_("input"))
        inp.create_dataset("shape", data=np.asarray(plan.shapes[plan.input_id]))
        k = 1
        prev_ndim = len(plan.shapes[plan.input_id])
        for nid in chain:
            i, c = conn_of[nid]
            q, qc, shape = quant.neurons[nid], quant.conns[i], plan.shapes[nid]
            if c.dense is not None and prev_ndim > 1:
                layers.create_group(str(k)).create_dataset("type", data=np.bytes_("flatten"))
                k += 1
            grp = layers.create_group(str(k))
            grp.attrs["nasflow_node"] = nid
            grp.create_dataset("shape", data=np.asarray(shape))
            if c.dense is not None:
                grp.create_dataset("type", data=np.bytes_("dense"))
                # netx takes the integers as they are; a negative exponent only carries odd mixed-sign weights
                w = qc.weights.astype(np.int64)
                grp.create_dataset("weight", data=(w >> -qc.weight_exp if qc.weight_exp < 0 else w).astype(np.int32))
                if c.delays is not None:  # per output neuron: netx delays the current into each neuron
                    grp.create_dataset("delay", data=c.delays.astype(np.float32))
                bias = q.bias_mant.astype(np.int64) << q.bias_exp  # in 64ths: netx shifts its bias by 6
                grp.create_dataset("bias", data=np.rint(bias / 64.0).astype(np.int32))
            else:
                cv = c.conv
                grp.create_dataset("type", data=np.bytes_("conv"))
                grp.create_dataset("weight", data=qc.weights.astype(np.int32))
                for key in ("stride", "padding", "dilation"):
                    grp.create_dataset(key, data=np.asarray(cv[key], dtype=np.int32))
                grp.create_dataset("groups", data=int(cv["groups"]))
                bias = np.rint((q.bias_mant.astype(np.int64) << q.bias_exp) / 64.0).astype(np.int32)
                # neuron-wise bias in Lava's (W, H, C) layout
                grp.create_dataset("bias", data=bias[lava_perm(shape)].reshape(lava_shape(shape)))
            _write_neuron(grp, q)
            k += 1
            prev_ndim = len(shape)
    return quant


def open_netx(path: Path) -> h5py.File:
    """``path`` opened read-only, checked to be an HDF5 file with a ``layer`` group (``NetxFormatError`` naming it)."""
    if not path.is_file():
        raise NetxFormatError(f"{path}: no such netx file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise NetxFormatError(f"{path}: not a readable HDF5 file (truncated or another format?): {err}") from err
    try:
        check_hdf5(f, path, NetxFormatError)
    except NetxFormatError:
        f.close()
        raise
    if "layer" not in f:
        f.close()
        raise NetxFormatError(f"{path}: HDF5 file without a 'layer' group, not a netx network")
    return f


def _layers(path: Path) -> tuple[tuple[int, ...], list[tuple[str, tuple[int, ...]]], float, bool]:
    """(input shape, [(node id, NIR shape)] of the neuron layers, input scale, graded input)."""
    with open_netx(path) as f:
        try:
            grp = f["layer"]
            keys = sorted(grp.keys(), key=int)
            in_shape = tuple(int(s) for s in grp[keys[0]]["shape"][()])
            out = []
            for k in keys[1:]:
                t = grp[k]["type"][()]
                t = (t[0] if np.ndim(t) else t).decode()
                if t in ("dense", "dense_rec", "conv"):
                    node = grp[k].attrs.get("nasflow_node", f"layer{k}")
                    out.append((str(node), tuple(int(s) for s in grp[k]["shape"][()])))
            scale = float(f.attrs.get("nasflow_input_scale", 1.0))
            graded = bool(f.attrs.get("nasflow_graded_input", False))
        except (KeyError, ValueError, IndexError) as err:
            raise NetxFormatError(f"{path}: malformed netx layer description: {err}") from err
    return in_shape, out, scale, graded


def netx_input_shape(path: str | Path) -> tuple[int, ...]:
    """The input layer's shape as ``export_netx`` stores it (NIR order, e.g. ``(C, H, W)``)."""
    return _layers(Path(path))[0]


def simulate_netx(path: str | Path, x: np.ndarray, timeout_s: float = 120.0) -> dict[str, np.ndarray]:
    """Load a ``.net`` with ``lava.lib.dl.netx.hdf5.Network``, run ``x`` ``[T, B, *input_shape]`` on Lava.

    Returns the spikes ``[T, B, *shape]`` of every netx layer under its NIR node id, shifted onto the
    reference time axis (netx layer k, counted from 1, lags k steps). Samples run back to back with
    netx's own staggered resets. Raises ``NetxFormatError`` for a missing, truncated or foreign file.
    """
    from exporters.lava.runtime import ensure_lava_importable
    from exporters.quiet import preload_lava_dl

    ensure_lava_importable()
    preload_lava_dl()  # lava-dl prints an unrelated dataset notice to stdout on import
    from lava.lib.dl.netx import hdf5
    from lava.proc.io.source import RingBuffer

    path = Path(path)
    in_shape, layers, scale, graded = _layers(path)
    with open_netx(path) as f:
        if "neuron" in f["layer"][sorted(f["layer"].keys(), key=int)[0]]:
            raise NetxFormatError(
                f"{path}: layer 0 is a neuron layer, which lava-dl drives through its bias (net.inp feeds nothing), "
                "so inputs cannot be streamed into it; run the imported graph instead (nasflow simulate "
                f"{path.name} --backend lava-emu or lava-fixed)")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 + len(in_shape) or tuple(x.shape[2:]) != in_shape:
        raise ValueError(f"{path}: input must be [T, B, {', '.join(map(str, in_shape))}], got {x.shape}")
    t_len, b = x.shape[:2]
    depth = len(layers)
    steps = b * t_len + depth
    xs = np.moveaxis(x, 1, 0).reshape((b * t_len,) + in_shape)
    xs = np.rint(xs * scale) if graded else (xs != 0)
    # Lava layout, time last; `depth` zero steps at the end flush the pipeline.
    data = np.moveaxis(np.transpose(xs, [0] + list(range(xs.ndim - 1, 0, -1))), 0, -1).astype(np.int32)
    data = np.concatenate([data, np.zeros(data.shape[:-1] + (depth,), dtype=np.int32)], axis=-1)
    try:
        net = hdf5.Network(net_config=str(path), reset_interval=t_len, reset_offset=1,
                           input_message_bits=8 if graded else 0)
    except (KeyError, OSError, ValueError, RuntimeError) as err:
        raise NetxFormatError(f"{path}: lava-dl netx could not build the network: {err}") from err
    with scratch_dir("netx") as tmp:
        files = []
        for i, (block, (_, shape)) in enumerate(zip(net.layers, layers)):
            rec = Path(tmp) / f"{i}.f32"
            np.zeros((steps, int(np.prod(shape))), dtype=np.float32).tofile(rec)
            block.neuron.proc_params["nasflow_record"] = (str(rec), None, steps)
            files.append(rec)
        source = RingBuffer(data=data)
        out = source.s_out
        if out.shape != net.inp.shape and int(np.prod(out.shape)) == int(np.prod(net.inp.shape)):
            out = out.reshape(net.inp.shape)  # netx flattens an input that feeds a flatten/dense layer
        out.connect(net.inp)
        run_network(source, steps, fixed_point=True, timeout_s=timeout_s)
        act = {}
        for k, ((nid, shape), rec) in enumerate(zip(layers, files), start=1):
            raw = np.fromfile(rec, dtype=np.float32).reshape((steps,) + lava_shape(shape))
            raw = raw[k:k + b * t_len].reshape((b, t_len) + lava_shape(shape))
            nd = len(shape)
            raw = np.transpose(raw, [0, 1] + list(range(raw.ndim - 1, 1, -1)))  # back to NIR layout
            act[nid] = np.ascontiguousarray(raw.swapaxes(0, 1), dtype=np.float32)
            assert act[nid].shape[2:] == shape, (nd, act[nid].shape)
    return act


def complete_activity(graph: nir.NIRGraph, activity: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add the nodes netx does not run: the linear read-out after its last layer and the Output node.

    netx holds spiking layers only, so a graph's non-spiking voting layer (an Affine) and ``output`` are
    computed here from the last layer's spikes, in the reference semantics (feed-forward within the step).
    """
    from exporters.lava.linalg import apply_linear

    out = dict(activity)
    topo = topology(graph)
    for node_id in topo.order:
        if node_id in out:
            continue
        preds = [s for s, _ in topo.sources[node_id]]
        kind = type(graph.nodes[node_id]).__name__
        if len(preds) != 1 or preds[0] not in out:
            continue
        src = out[preds[0]]
        if kind == "Output":
            out[node_id] = src
        elif kind in ("Affine", "Linear", "Scale", "Flatten"):
            t, b = src.shape[:2]
            y = apply_linear(graph.nodes[node_id], node_id, src.reshape(t * b, *src.shape[2:]))
            out[node_id] = y.reshape(t, b, *y.shape[1:]).astype(np.float32)
    return out
