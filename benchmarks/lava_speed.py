"""Lava steps per second for an exported digits model, its process count, the torch backend's rate
and a hand-built Lava chain of the same depth.

    .venv/bin/python benchmarks/lava_speed.py [--model runs/.../model.pt] [--samples 20] [--arch all-SRB_k3]

Without ``--model`` it builds an untrained AutoSNN (digits shape 1x8x8, C = 16, T = 8). The digits test
images run through ``exporters.nir_export.to_nir`` → ``exporters.lava.simulate`` (floating point,
aligned; also fixed point with ``--fixed``), compared per layer with the torch reference
(``exporters.nir_torch``). Rates are marginal: (steps of the long run − steps of a 1-sample run) /
(time difference), so the 0.2-0.4 s runtime start-up and the compile are not counted as steps; the
wall time with start-up is printed too. The hand-built chain is RingBuffer → (Dense → LIF) x depth with
Lava's stock models, one neuron layer per NIR neuron node, same sizes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from exporters import lava as lb
from exporters import nir_torch
from exporters.core.jsonio import SCHEMA_VERSION
from exporters.equivalence import compare_activity
from exporters.nir_export import to_nir
from nasflow.data.digits import load_digits_split
from nasflow.models import create_model, load_model


def _digits_input(n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    split = load_digits_split()
    x = split.x_test[:n].numpy()
    return np.repeat(x[None], steps, axis=0).astype(np.float32), split.y_test[:n].numpy()  # direct coding


def _timed(fn, *args, **kw) -> tuple[object, float]:  # noqa: ANN001 - small local helper
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def _hand_chain(sizes: list[int], in_size: int, steps: int) -> float:
    """Wall time of RingBuffer → (Dense → LIF)·depth on Lava's stock float models for ``steps`` steps."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF

    rng = np.random.default_rng(0)
    src = RingBuffer(data=(rng.random((in_size, steps)) < 0.2).astype(float))
    port, n_prev = src.s_out, in_size
    for n in sizes:
        dense = Dense(weights=rng.normal(0, 0.5, (n, n_prev)))
        neuron = LIF(shape=(n,), du=1.0, dv=0.5, vth=1.0)
        port.connect(dense.s_in)
        dense.a_out.connect(neuron.a_in)
        port, n_prev = neuron.s_out, n
    t0 = time.perf_counter()
    try:
        src.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
    finally:
        src.stop()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a trained model.pt (default: untrained)")
    parser.add_argument("--arch", default="all-SRB_k3")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--fixed", action="store_true", help="also run Loihi fixed point")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/lava_speed.json"))
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.model is not None:
        model, _ = load_model(args.model)
    else:
        model = create_model("autosnn", arch=args.arch, in_shape=(1, 8, 8), channels=16, steps=8)
    model.eval()
    steps = int(getattr(model, "config", {}).get("steps", 8) or 8)
    graph = to_nir(model, dt=1e-3)
    plan = lb.build_plan(graph)
    x, y = _digits_input(args.samples, steps)
    total = steps * args.samples

    ref, t_torch = _timed(nir_torch.simulate, graph, x)
    _, t_one = _timed(lb.simulate, graph, x[:, :1])
    act, t_all = _timed(lb.simulate, graph, x)
    lava_rate = (total - steps) / max(t_all - t_one, 1e-9)
    rep = compare_activity(ref, act, graph)
    out_ref, out_lava = ref["output"].sum(0).argmax(-1), act["output"].sum(0).argmax(-1)
    sizes = [int(np.prod(s.shape)) for s in plan.neurons.values()]
    in_size = int(np.prod(plan.shapes[plan.input_id]))
    t_c1 = _hand_chain(sizes, in_size, steps)
    t_cn = _hand_chain(sizes, in_size, total)
    chain_rate = (total - steps) / max(t_cn - t_c1, 1e-9)
    result = {
        "schema_version": SCHEMA_VERSION,
        "model": str(args.model) if args.model else f"untrained {args.arch}",
        "samples": args.samples, "steps_per_sample": steps,
        "lava_processes": plan.n_processes, "neuron_layers": len(plan.neurons), "connections": len(plan.conns),
        "lava_float_steps_per_s": lava_rate, "lava_float_wall_s": t_all,
        "torch_reference_steps_per_s": total / t_torch,
        "hand_chain_processes": 1 + 2 * len(sizes), "hand_chain_steps_per_s": chain_rate,
        "min_precision": rep["min_precision"], "min_recall": rep["min_recall"],
        "reference_spikes_per_sample": rep["total"]["reference_spikes"] / args.samples,
        "accuracy_torch": float((out_ref == y).mean()), "accuracy_lava_float": float((out_lava == y).mean()),
    }
    if args.fixed:
        fx, t_fx = _timed(lb.simulate, graph, x, fixed_point=True)
        rep_fx = compare_activity(ref, fx, graph)
        result.update(lava_fixed_wall_s=t_fx, accuracy_lava_fixed=float((fx["output"].sum(0).argmax(-1) == y).mean()),
                      fixed_min_precision=rep_fx["min_precision"], fixed_min_recall=rep_fx["min_recall"])
    for k, v in result.items():
        print(f"{k:32s} {v:.4g}" if isinstance(v, float) else f"{k:32s} {v}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
