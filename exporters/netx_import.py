"""lava-dl netx ``.net`` → NIR: a slayer/lava-dl network, decoded from Loihi fixed point, as a NIR graph that nasflow's
fixed-point backends run with the file's own integers (REFERENCE.md §7).

A netx CUBA (``LOIHI``/``CUBA``) layer holds integers: weights (Dense: ``a_in = W·s``; Conv: torch cross-correlation
with the stored kernel), a bias mantissa entering ``v`` as ``bias << 6``, ``vThMant`` (``v > vThMant << 6``) and
12-bit decays ``iDecay``/``vDecay``. With ``dt`` the graph's step, each becomes a ``CubaLIF`` whose float dynamics are
the integers' up to the decays' floors: ``tau_syn = dt·4096/iDecay``, ``tau_mem = dt·4096/vDecay``, ``w_in = 1/a_syn``
and ``r = 1/a_mem`` (so the plan's gain is 1 and NIR weights *are* the file's weights), ``v_threshold = vThMant``,
``v_leak = bias/a_mem``, reset to 0 with ``v > θ``. ``metadata["fixed_point_units"] = "loihi"`` tells nasflow's
quantiser that the values are already Loihi integers (scale 1, 64 Lava units per unit of v), so re-quantising the
graph gives back the file's integers exactly and ``lava-fixed``/``lava-emu`` reproduce lava-dl's own runs.

netx specifics kept: an input layer with a neuron is driven by its bias (lava-dl tests set ``bias_mant`` to the
image; its stored weight/bias transform is never applied by netx): the graph feeds the input values through a
weight-1 identity (``layer0_drive``) into that layer's synapse, which equals netx for ``iDecay = 4096``. Timing is
NIR's (zero-delay feed-forward): layer k of the file runs k steps later in lava-dl (one step per synapse).
``refDelay`` is recorded in the node's metadata (netx ignores it as well). Axonal delays of a dense layer (netx
delays the current into each output neuron; slayer wrote them as the previous layer's output delays) become a NIR
``Delay`` between the weights and the neuron (the torch reference, Lava float and fixed point and ``lava-emu`` run
it). A recurrent dense layer (``dense_rec``) adds ``weight_rec`` from the neuron back into its own input, a NIR
back edge (one step late, as netx's recurrent synapse). Refused by name: sigma-delta (``SDNN``) and
resonate-and-fire neurons, graded spikes, complex, pooling and transposed layers, delays on recurrent layers,
per-input delays, neuron-less hidden layers, ``iDecay = 0``.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from exporters.core.conventions import Conventions
from exporters.netx import NetxFormatError, open_netx

__all__ = ["LOIHI_UNITS", "read_netx"]

LOIHI_UNITS = "loihi"  # metadata["fixed_point_units"]: values are Loihi integers, scale 1
_REFUSED_TYPES = {
    "dense_comp": "complex dense layers", "average": "average layers",
    "pool": "pooling layers", "convT": "transposed convolutions", "unpool": "unpooling layers",
    "concat": "concatenation layers",
}
_MEMBRANE_FOREVER = 2.0**20  # vDecay = 0 (no leak): a tau_mem so long that 4096·dt/tau rounds to 0


def _text(value) -> str:
    v = value[()] if hasattr(value, "shape") else value
    v = v[0] if np.ndim(v) else v
    return v.decode() if isinstance(v, bytes) else str(v)


def _ints(grp, key: str, where: str) -> np.ndarray:
    values = np.asarray(grp[key][()], dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise NetxFormatError(f"{where}: {key} holds non-integer values; a netx file stores Loihi integers")
    return values


def _neuron(grp, where: str, shape: tuple[int, ...], dt: float, bias: np.ndarray) -> nir.CubaLIF:
    ngrp = grp["neuron"]
    kind = _text(ngrp["type"])
    if kind not in ("LOIHI", "CUBA"):
        what = "sigma-delta (SDNN)" if kind == "SDNN" else f"{kind!r}"
        raise NetxFormatError(f"{where}: {what} neurons are not supported; nasflow imports CUBA/LOIHI layers")
    if "gradedSpike" in ngrp and bool(np.asarray(ngrp["gradedSpike"][()]).reshape(-1)[0]):
        raise NetxFormatError(f"{where}: graded spikes are not supported (Lava's LIF sends binary spikes)")
    i_decay = float(np.asarray(ngrp["iDecay"][()]).reshape(-1)[0])
    v_decay = float(np.asarray(ngrp["vDecay"][()]).reshape(-1)[0])
    vth = float(np.asarray(ngrp["vThMant"][()]).reshape(-1)[0])
    if not (0 < i_decay <= 4096 and 0 <= v_decay <= 4096 and vth > 0):
        raise NetxFormatError(f"{where}: iDecay {i_decay:g}, vDecay {v_decay:g}, vThMant {vth:g}; nasflow needs "
                              "0 < iDecay <= 4096, 0 <= vDecay <= 4096 and vThMant > 0")
    a_syn = i_decay / 4096.0
    tau_mem = dt * 4096.0 / v_decay if v_decay > 0 else dt * _MEMBRANE_FOREVER
    a_mem = dt / tau_mem
    full = np.ones(shape)
    meta = {"netx_refractory_delay": int(np.asarray(ngrp["refDelay"][()]).reshape(-1)[0])} if "refDelay" in ngrp else {}
    return nir.CubaLIF(tau_syn=full * dt / a_syn, tau_mem=full * tau_mem, r=full / a_mem,
                       v_leak=np.broadcast_to(bias, shape) / a_mem, v_threshold=full * vth, v_reset=0 * full,
                       w_in=full / a_syn, metadata=meta)


def _identity(shape: tuple[int, ...]) -> nir.NIRNode:
    """Weight-1 identity into the input layer (a 1x1 conv for images): what drives it, as a weight node every
    consumer (Lava plan, hardware models) maps; on the chip netx writes the value into the layer's bias instead."""
    c = shape[0]
    if len(shape) == 3:
        return nir.Conv2d(input_shape=shape[1:], weight=np.eye(c).reshape(c, c, 1, 1), stride=1, padding=0,
                          dilation=1, groups=1, bias=np.zeros(c))
    return nir.Linear(weight=np.eye(int(np.prod(shape))))


def _bias(grp, where: str, shape: tuple[int, ...]) -> np.ndarray:
    """The bias per neuron in NIR order (conv: per channel, or neuron-wise in Lava's (W, H, C) as nasflow writes)."""
    if "bias" not in grp:
        return np.zeros(shape)
    b = _ints(grp, "bias", where)
    if b.size == 1:
        return np.full(shape, float(b.reshape(-1)[0]))
    if len(shape) == 3 and b.shape == (shape[0],):
        return np.broadcast_to(b[:, None, None], shape).copy()
    if len(shape) == 3 and b.shape == shape[::-1]:
        return np.ascontiguousarray(b.transpose(2, 1, 0))
    if b.size == int(np.prod(shape)):
        return b.reshape(shape)
    raise NetxFormatError(f"{where}: bias of shape {b.shape} does not fit the layer's shape {shape}")


def read_netx(path: str | Path, dt: float = 1e-3, layers: int | None = None) -> nir.NIRGraph:
    """The NIR graph of the netx network in ``path`` (see the module docstring); ``dt`` seconds per step; ``layers``
    keeps the first that many layers (netx's ``num_layers``, e.g. to drop a final pooling layer).

    Raises ``NetxFormatError`` naming the file and layer for anything it cannot represent exactly.
    """
    path = Path(path)
    try:
        return _read(path, dt, layers)
    except NetxFormatError:
        raise
    except KeyError as err:
        raise NetxFormatError(f"{path}: a layer lacks {err}; the file is truncated or not a netx network") from None
    except (ValueError, TypeError, IndexError, OverflowError, OSError, RuntimeError, AttributeError) as err:
        # a damaged file: empty, misshapen or mistyped datasets, unreadable HDF5 objects
        raise NetxFormatError(f"{path}: malformed netx network ({type(err).__name__}: {err})") from None


def _read(path: Path, dt: float, layers: int | None) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    with open_netx(path) as f:
        grp = f["layer"]
        try:
            keys = sorted(grp.keys(), key=int)
        except ValueError:
            raise NetxFormatError(f"{path}: layer names must be 0, 1, ...; got {sorted(grp.keys())}") from None
        if layers is not None:
            if layers < 1:
                raise NetxFormatError(f"{path}: layers must be >= 1, got {layers}")
            keys = keys[:layers]
        if not keys or _text(grp[keys[0]]["type"]) != "input":
            raise NetxFormatError(f"{path}: layer 0 must be the input layer")
        try:
            shape = tuple(int(s) for s in grp[keys[0]]["shape"][()])
            nodes["input"] = nir.Input(input_type={"input": np.array(shape)})
            last = "input"
            if "neuron" in grp[keys[0]]:  # netx drives this layer through its bias: the input goes straight in
                nodes["layer0_drive"] = _identity(shape)
                nodes["layer0"] = _neuron(grp[keys[0]], f"{path}: layer 0", shape, dt, np.zeros(shape))
                edges += [("input", "layer0_drive"), ("layer0_drive", "layer0")]
                last = "layer0"
            for key in keys[1:]:
                last, shape = _layer(grp[key], f"{path}: layer {key}", key, last, shape, dt, nodes, edges)
        except KeyError as err:
            raise NetxFormatError(f"{path}: a layer lacks {err}; the file is truncated or not a netx network") from None
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((last, "output"))
    meta = {**Conventions(dt=dt, threshold=">", reset="to_v_reset").to_metadata(), "fixed_point_units": LOIHI_UNITS,
            "source": f"netx:{path.name}"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _layer(grp, where: str, key: str, last: str, shape: tuple[int, ...], dt: float,
           nodes: dict, edges: list) -> tuple[str, tuple[int, ...]]:
    """Add one netx layer after node ``last`` (output ``shape``); returns the new last node and its shape."""
    kind = _text(grp["type"])
    if kind in _REFUSED_TYPES:
        raise NetxFormatError(f"{where}: {_REFUSED_TYPES[kind]} ({kind!r}) are not supported; nasflow imports "
                              "input, conv, flatten, dense and dense_rec layers")
    if kind == "flatten":
        nid = f"layer{key}"
        nodes[nid] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        edges.append((last, nid))
        return nid, (int(np.prod(shape)),)
    if kind not in ("conv", "dense", "dense_rec"):
        raise NetxFormatError(f"{where}: unknown layer type {kind!r}")
    if "neuron" not in grp:
        raise NetxFormatError(f"{where}: a {kind} layer without a neuron (netx's non-spiking integrator) is not "
                              "supported yet")
    delay = np.asarray(grp["delay"][()], dtype=np.float64).reshape(-1) if "delay" in grp else np.zeros(1)
    w = _ints(grp, "weight", where)
    out_shape = tuple(int(s) for s in np.atleast_1d(grp["shape"][()]))
    syn = f"layer{key}"
    if kind == "conv":
        if w.ndim == 5:
            w = w[..., 0]
        if len(shape) != 3 or w.ndim != 4:
            raise NetxFormatError(f"{where}: conv weight {w.shape} after input {shape}; expected (O, I, kH, kW) on "
                                  "a (C, H, W) input")
        pair = {k: tuple(int(v) for v in np.broadcast_to(np.asarray(grp[k][()]), (2,))) if k in grp else (1, 1)
                for k in ("stride", "dilation")}
        padding = tuple(int(v) for v in np.broadcast_to(np.asarray(grp["padding"][()]), (2,))) \
            if "padding" in grp else (0, 0)
        groups = int(np.asarray(grp["groups"][()]).reshape(-1)[0]) if "groups" in grp else 1
        nodes[syn] = nir.Conv2d(input_shape=shape[1:], weight=w, stride=pair["stride"], padding=padding,
                                dilation=pair["dilation"], groups=groups, bias=np.zeros(w.shape[0]))
        out_shape = out_shape if len(out_shape) == 3 else (w.shape[0],) + out_shape[1:]
    else:
        if len(shape) > 1:  # netx flattens a dense layer's input itself (C, H, W order, as NIR's Flatten)
            flat = f"layer{key}_flatten"
            nodes[flat] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            edges.append((last, flat))
            last, shape = flat, (int(np.prod(shape)),)
        n_in = int(np.prod(shape))
        w = w.reshape(-1, n_in) if w.size % n_in == 0 else w
        if w.shape[1] != n_in:
            raise NetxFormatError(f"{where}: dense weight {w.shape} does not take the previous layer's {n_in} values"
                                  " (a flatten layer missing?)")
        nodes[syn] = nir.Linear(weight=w)
        out_shape = (w.shape[0],)
    edges.append((last, syn))
    if np.any(delay != 0):
        whole = np.all(delay >= 0) and np.all(delay == np.rint(delay))
        if kind == "conv" or delay.size not in (1, out_shape[0]) or not whole:
            raise NetxFormatError(f"{where}: delays of shape {delay.shape} on a {kind} layer; nasflow imports whole, "
                                  "non-negative delays per output neuron of a dense layer (or one for all)")
        if np.any(delay > 62):
            raise NetxFormatError(f"{where}: delays up to {delay.max():g} steps; netx clips them at 62")
        nodes[f"{syn}_delay"] = nir.Delay(delay=np.broadcast_to(delay, out_shape) * dt)
        edges.append((syn, f"{syn}_delay"))
        syn = f"{syn}_delay"  # netx delays the current into each neuron by its delay
    nid = f"layer{key}_neuron"
    nodes[nid] = _neuron(grp, where, out_shape, dt, _bias(grp, where, out_shape))
    edges.append((syn, nid))
    if kind == "dense_rec":  # the neuron's spikes through weight_rec back into its own input, one step late
        if np.any(delay != 0):
            raise NetxFormatError(f"{where}: a recurrent dense layer with delays is not supported (netx delays the "
                                  "recurrent sums too, one step more than NIR's back edge)")
        w_rec = _ints(grp, "weight_rec", where)
        n = out_shape[0]
        if w_rec.size != n * n:
            raise NetxFormatError(f"{where}: weight_rec of shape {w_rec.shape}; a recurrent layer of {n} neurons "
                                  f"needs ({n}, {n})")
        nodes[f"layer{key}_rec"] = nir.Linear(weight=w_rec.reshape(n, n))
        edges += [(nid, f"layer{key}_rec"), (f"layer{key}_rec", nid)]
    return nid, out_shape
