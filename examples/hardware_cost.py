"""Cost a NIR graph on neuromorphic chips: capacity, then traffic and energy from simulated activity.

    python examples/hardware_cost.py --nir runs/example-sim/model.nir --chips loihi loihi-sanafe speck

For each chip: does it fit, how many cores, and (with activity from the torch reference simulator on
digits) energy per sample with its per-term breakdown, busiest-core traffic and the latency bound.
Without ``--nir`` it costs the Sinabs N-MNIST CNN from the NIR paper on random input events.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from exporters.core.shapes import infer_shapes
from exporters.core.traversal import input_ids
from exporters.nir_io import read_nir
from exporters.nir_torch import simulate
from hwmodels import hw_report

FIXTURE = Path(__file__).resolve().parent / "interop" / "cnn_sinabs.nir"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nir", default=str(FIXTURE))
    parser.add_argument("--chips", nargs="+", default=["loihi", "loihi-sanafe", "speck"])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    graph = read_nir(args.nir)
    shape = infer_shapes(graph)[input_ids(graph)[0]]
    rng = np.random.default_rng(0)
    events = args.nir == str(FIXTURE)  # the Sinabs CNN takes DVS events; nasflow models take images
    x = (rng.random((args.steps, args.samples, *shape)) < 0.05) if events else rng.random(
        (1, args.samples, *shape)).repeat(args.steps, 0)
    activity = simulate(graph, x.astype(np.float32), dt=graph.metadata.get("dt", 1e-3))
    rows = {}
    for chip in args.chips:
        r = hw_report(graph, chip, activity=activity)
        rows[chip] = {k: getattr(r, k) for k in ("fits", "cores_used", "chips_needed", "energy_per_sample_j",
                                            "max_core_messages_per_step", "latency_per_step_s")}
        rows[chip]["violations"] = [v["message"] for v in r.violations]
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
