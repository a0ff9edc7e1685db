"""Cost of evaluating one AutoSNN candidate during search vs a plain forward pass over D_val.

    .venv/bin/python benchmarks/candidate_eval.py [--archs 10] [--repeats 5] [--channels 16] [--steps 8]

For random architectures, alternately times (a) ``SupernetEvaluator.evaluate_one`` (path switch,
eval mode, activity accounting for the costs, accuracy) and (b) a plain ``torch.no_grad`` forward of
the extracted standalone candidate over the same D_val batches. Prints the median ratio (goal ≤ 1.10)
and writes ``benchmarks/results/candidate_eval.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from nasflow.data import make_loaders
from nasflow.evaluators.supernet_eval import SupernetEvaluator
from nasflow.snn.neurons import reset_states
from nasflow.train.supernet import AutoSNNSupernet, sample_path


def _plain_forward(net: torch.nn.Module, batches) -> None:
    net.eval()
    with torch.no_grad():
        for x, _ in batches:
            reset_states(net)
            net(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaders = make_loaders("digits", 32, seed=0, val_split=0.2, eval_batch_size=512)
    supernet = AutoSNNSupernet(in_shape=(1, 8, 8), channels=args.channels, steps=args.steps)
    evaluator = SupernetEvaluator(supernet, loaders.val)
    rng = random.Random(0)
    rows = []
    for _ in range(args.archs):
        arch = sample_path(rng)
        standalone = supernet.extract(arch)
        evaluator.evaluate_one(arch)  # warm-up both
        _plain_forward(standalone, evaluator.batches)
        t_eval, t_plain = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            evaluator.evaluate_one(arch)
            t_eval.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _plain_forward(standalone, evaluator.batches)
            t_plain.append(time.perf_counter() - t0)
        e, p = statistics.median(t_eval), statistics.median(t_plain)
        rows.append({"arch": ",".join(arch), "evaluate_s": e, "plain_forward_s": p, "ratio": e / p})
        print(f"{','.join(arch):40s} evaluate {e * 1e3:7.1f} ms  plain {p * 1e3:7.1f} ms  ratio {e / p:.3f}")
    ratio = statistics.median(r["ratio"] for r in rows)
    print(f"median evaluation / plain forward over D_val ({len(evaluator.batches)} batch(es), "
          f"{sum(len(y) for _, y in evaluator.batches)} samples): {ratio:.3f}  [goal <= 1.10]")
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "candidate_eval.json").write_text(json.dumps(
        {"schema_version": 1, "median_ratio": ratio, "threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
