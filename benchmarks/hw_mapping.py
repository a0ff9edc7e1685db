"""Speed of hwmodels: map + cost a one-million-neuron convolutional graph; per-call cost of HardwareCost.evaluate.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/hw_mapping.py``. Goals (issue 5): mapping and costing the
1M-neuron graph ≤ 5 s on 2 cores; ``evaluate`` on per-node totals a few ms (< 5% of a ~0.1 s candidate evaluation).
"""

from __future__ import annotations

import time

import nir
import numpy as np

from hwmodels import HardwareCost


def conv_graph(channels: int = 8, size: int = 128, layers: int = 8) -> nir.NIRGraph:
    """input 2×size² → `layers` × (3×3 conv, channels, LIF) at full resolution: channels·size²·layers neurons."""
    rng = np.random.default_rng(0)
    nodes = [nir.Input(input_type={"input": np.array([2, size, size])})]
    cin = 2
    for _ in range(layers):
        shape = (channels, size, size)
        nodes += [
            nir.Conv2d((size, size), rng.normal(size=(channels, cin, 3, 3)), 1, 1, 1, 1, np.zeros(channels)),
            nir.LIF(np.ones(shape), np.ones(shape), np.zeros(shape), np.ones(shape)),
        ]
        cin = channels
    nodes.append(nir.Output(output_type={"output": np.array([channels, size, size])}))
    return nir.NIRGraph.from_list(*nodes)


def main() -> None:
    g = conv_graph()
    n = sum(int(np.prod(v.output_type["output"])) for v in g.nodes.values() if isinstance(v, nir.LIF))
    t0 = time.perf_counter()
    hc = HardwareCost(g, "loihi", steps=8)
    t_map = time.perf_counter() - t0
    totals = {k: {"spikes_per_sample": 0.05 * n / 4 * 8} for k, v in g.nodes.items() if isinstance(v, nir.LIF)}
    t0 = time.perf_counter()
    r = hc.evaluate(totals)
    t_cost = time.perf_counter() - t0
    print(
        f"{n:,} neurons: map {t_map:.2f} s + cost (per-node totals) {t_cost:.2f} s = {t_map + t_cost:.2f} s "
        f"(goal <= 5 s); cores {r['cores_used']}, chips {r['chips_needed']}, energy {r['energy_per_sample_j']:.3g} J"
    )
    rng = np.random.default_rng(0)
    act = {
        k: (rng.random((2, 1, *v.output_type["output"])) < 0.05).astype(np.float32)
        for k, v in g.nodes.items()
        if isinstance(v, (nir.LIF, nir.Input))
    }
    t0 = time.perf_counter()
    hc.evaluate(act)
    print(f"cost from per-neuron activity (T=2, B=1): {time.perf_counter() - t0:.2f} s")
    # a search candidate: the digits-sized graph (8x8 input), per-node totals
    small = conv_graph(channels=16, size=8, layers=5)
    hs = HardwareCost(small, "loihi", steps=8)
    tot = {k: {"spikes_per_sample": 100.0} for k, v in small.nodes.items() if isinstance(v, nir.LIF)}
    hs.evaluate(tot)
    reps = 200
    t0 = time.perf_counter()
    for _ in range(reps):
        hs.evaluate(tot)
    per = (time.perf_counter() - t0) / reps
    print(
        f"HardwareCost.evaluate per call (digits-sized candidate, per-node totals): {per * 1e3:.2f} ms "
        f"= {per / 0.1:.1%} of a 0.1 s candidate evaluation (goal < 5%)"
    )


if __name__ == "__main__":
    main()
