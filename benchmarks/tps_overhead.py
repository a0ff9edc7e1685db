"""The cost of a TPS training step against a plain one: K candidate dynamics per layer in one pass.

    .venv/bin/python benchmarks/tps_overhead.py [--rounds 5] [--steps 5] [--threads 2] [--candidates 7]

The SpikeDHS baseline network on digits (C = 8, T = 6, batch 64): a plain step (forward, cross-entropy, backward,
SGD) against a TPS search step of the same network (``nasflow.strategies.tps``: every neuron layer runs K decay
candidates on its input and mixes them, γ and weights updated). The two alternate in one process, ``--steps``
steps per round after a warm-up step each; the result is the median over rounds of the per-step seconds and of
the paired ratio. K plain forwards would cost about K times a plain step's neuron share; the candidate pass
shares the synaptic layers and costs what its neuron loops cost.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from nasflow.data import make_loaders
    from nasflow.models import create_model
    from nasflow.snn.neurons import reset_states
    from nasflow.snn.tps import DEFAULT_CANDIDATES
    from nasflow.spaces.temporal import TemporalSpace
    from nasflow.strategies.tps import TPSStrategy

    torch.manual_seed(0)
    x, y = next(iter(make_loaders("digits", 64, seed=0).train))
    plain = create_model("spikedhs", in_shape=(1, 8, 8), num_classes=10, channels=8, steps=6)
    opt = torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9)
    cands = DEFAULT_CANDIDATES["decay"][: args.candidates]
    strategy = TPSStrategy((1, 8, 8), 10, channels=8, steps=6, epochs=2, warmup=0, every=10**9)
    strategy.relax(TemporalSpace(candidates={"decay": cands}))
    strategy.begin_epoch(0)

    def plain_step() -> None:
        plain.train()
        reset_states(plain)
        loss = torch.nn.functional.cross_entropy(plain(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def tps_step() -> None:
        strategy.step((x, y), (x, y))

    def timed(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        return (time.perf_counter() - t0) / args.steps

    rows = []
    for r in range(args.rounds):
        pair = (timed(plain_step), timed(tps_step)) if r % 2 == 0 else tuple(reversed((timed(tps_step),
                                                                                        timed(plain_step))))
        rows.append(pair)
        print(f"round {r + 1}: plain {pair[0]:.3f} s, TPS {pair[1]:.3f} s per step", flush=True)
    plain_s = statistics.median(p for p, _ in rows)
    tps_s = statistics.median(t for _, t in rows)
    ratio = statistics.median(t / p for p, t in rows)
    print(f"\nK = {len(cands)} candidates: plain {plain_s:.3f} s, TPS {tps_s:.3f} s per step; TPS / plain = "
          f"{ratio:.2f}x (median of paired rounds, {args.threads} threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
