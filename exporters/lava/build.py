"""Creating the Lava processes of a plan: a RingBuffer source per input, one LIFReset per neuron layer
(recording into files, see ``exporters.lava.models``) and one Dense or Conv per connection, in Lava layout.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from exporters.lava.layout import lava_perm, lava_shape, to_lava_layout
from exporters.lava.plan import CONST, LavaPlan
from exporters.lava.quantize import QuantPlan
from exporters.lava.runtime import ensure_lava_importable

__all__ = ["build_network"]


def _source(data_lava: np.ndarray, fixed_point: bool) -> object:
    from lava.proc.io.source import RingBuffer

    return RingBuffer(data=data_lava.astype(np.int32) if fixed_point else data_lava.astype(np.float64))


def _graded(x: np.ndarray) -> bool:
    return bool(np.any((x != 0) & (x != 1)))


def build_network(plan: LavaPlan, xs: np.ndarray, period: int, fixed_point: bool, align: bool, rec_dir: Path,
                  quant: QuantPlan | None, want_v: bool) -> tuple[object, dict[str, tuple[Path | None, Path | None]]]:
    """Create the Lava processes of ``plan``; returns an entry process and the recording files."""
    ensure_lava_importable()
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIFReset

    steps = xs.shape[0]
    in_shape = plan.shapes[plan.input_id]
    graded = _graded(xs)
    x_in = xs if quant is None else np.rint(xs * quant.input_scale)
    # RingBuffer data: Lava layout plus time last.
    data = np.moveaxis(to_lava_layout(x_in, len(in_shape)), 0, -1)
    procs: dict[str, object] = {plan.input_id: _source(data, fixed_point)}
    if any(c.src == CONST for c in plan.conns):
        procs[CONST] = _source(np.ones((1, 1)), fixed_point)
    files: dict[str, tuple[Path | None, Path | None]] = {}
    for nid, spec in plan.neurons.items():
        n = int(np.prod(spec.shape))
        paths = []
        for what in ("s", "v"):
            if (what == "s" and spec.record == "s") or (what == "v" and (spec.record == "v" or want_v)):
                path = rec_dir / f"{len(files)}.{what}.f32"
                np.zeros((steps, n), dtype=np.float32).tofile(path)
                paths.append(path)
            else:
                paths.append(None)
        files[nid] = (paths[0], paths[1])
        perm = lava_perm(spec.shape)
        if quant is None:
            params = dict(du=spec.du, dv=spec.dv, vth=spec.vth if math.isfinite(spec.vth) else 1e300,
                          bias_mant=spec.bias_v[perm].reshape(lava_shape(spec.shape)), bias_exp=0)
        else:
            q = quant.neurons[nid]
            params = dict(du=q.du, dv=q.dv, vth=q.vth, bias_mant=q.bias_mant[perm].reshape(lava_shape(spec.shape)),
                          bias_exp=q.bias_exp)
        lif = LIFReset(shape=lava_shape(spec.shape), reset_interval=max(period, 1), reset_offset=1 % max(period, 1),
                       name=nid, **params)
        lif.proc_params["nasflow_period"] = period
        lif.proc_params["nasflow_record"] = (None if paths[0] is None else str(paths[0]),
                                             None if paths[1] is None else str(paths[1]), steps)
        procs[nid] = lif
    for i, c in enumerate(plan.conns):
        src_shape = (1,) if c.src == CONST else plan.shapes[c.src]
        bits = 24 if (c.src == plan.input_id and graded) else 0
        q = None if quant is None else quant.conns[i]
        if c.dense is not None:
            w = c.dense if q is None else q.weights
            w = w[lava_perm(plan.shapes[c.dst])][:, lava_perm(src_shape)]
            kw = {} if q is None else dict(weight_exp=q.weight_exp, num_weight_bits=8)
            name = f"{c.src}->{c.dst}" + (" (late)" if c.delayed else "")
            conn = Dense(weights=w, num_message_bits=bits, name=name, **kw)
            src_port = procs[c.src].s_out
            src_port = src_port.flatten() if len(src_shape) > 1 else src_port
            src_port.connect(conn.s_in)
            out = conn.a_out.reshape(lava_shape(plan.shapes[c.dst])) if len(plan.shapes[c.dst]) > 1 else conn.a_out
        else:
            cv = c.conv
            w = cv["weight"] if q is None else q.weights
            # NIR/torch cross-correlation (Cout, Cin, kh, kw) → Lava's true convolution (Cout, W, H, Cin).
            w_lava = np.ascontiguousarray(np.transpose(w, (0, 3, 2, 1))[:, ::-1, ::-1, :])
            conn = Conv(weight=w_lava, input_shape=lava_shape(src_shape), stride=cv["stride"][::-1],
                        padding=cv["padding"][::-1], dilation=cv["dilation"][::-1], groups=cv["groups"],
                        num_message_bits=bits, weight_exp=0 if q is None else q.weight_exp, name=f"{c.src}->{c.dst}")
            procs[c.src].s_out.connect(conn.s_in)
            out = conn.a_out
        conn.proc_params["nasflow_zero_delay"] = bool(align and not c.delayed)
        if c.delays is not None:  # per target neuron in NIR order → the connection's output (Lava) order
            conn.proc_params["nasflow_delays"] = c.delays[lava_perm(plan.shapes[c.dst])]
        conn.proc_params["nasflow_period"] = period
        out.connect(procs[c.dst].a_in)
    return procs[plan.input_id], files
