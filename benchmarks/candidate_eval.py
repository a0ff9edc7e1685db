"""Cost of evaluating one AutoSNN candidate during search vs a plain forward pass over D_val.

    .venv/bin/python benchmarks/candidate_eval.py [--archs 10] [--repeats 5] [--channels 16] [--steps 8]
                                                  [--hw-cost loihi] [--fixed-point] [--supernet DIR]

For random architectures, alternately times (a) ``SupernetEvaluator.evaluate_one`` (path switch,
eval mode, activity accounting for the costs, accuracy) and (b) a plain ``torch.no_grad`` forward of
the extracted standalone candidate over the same D_val batches. Prints the median ratio (goal ≤ 1.10).
With ``--hw-cost CHIP`` it also times (c) the evaluation with the hardware cost on that chip (export to
NIR, mapping, traffic and energy) and prints how much that adds to (a) (goal ≤ 5%); the hardware
model's caches warm up on the architectures of the first pass, as they do during a search.
With ``--fixed-point`` it also times (e) the evaluation with the fixed-point costs (export, plan, quantisation and the
bit-exact ``lava-emu`` run of the candidate over D_val: ``nasflow.evaluators.fixed_point``) and prints what that adds
to (a) (goal ≤ 20%). ``--supernet DIR`` loads the trained ``supernet.pt`` of a search run there (its channels and
steps), so the candidates spike as they do in a real search; without it the supernet is freshly initialised.
With ``--kernel-ab`` it also times (d) the same evaluation as before the compiled kernel (the torch-op neuron
loop, ``nasflow.kernels.using_torch_loop``, and one conv call over T·B, ``CONV_CHUNK_BYTES = 0``), alternated
with (a) in the same repeats: the before/after on one machine state.
Writes ``benchmarks/results/candidate_eval.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import time
from pathlib import Path

import torch

from exporters.core.jsonio import SCHEMA_VERSION
from nasflow import kernels
from nasflow.data import make_loaders
from nasflow.evaluators.supernet_eval import SupernetEvaluator
from nasflow.snn import layers
from nasflow.snn.neurons import reset_states
from nasflow.train.supernet import AutoSNNSupernet, sample_path


def _plain_forward(net: torch.nn.Module, batches) -> None:
    net.eval()
    with torch.no_grad():
        for x, _ in batches:
            reset_states(net)
            net(x)


@contextlib.contextmanager
def before_issue_17():
    """The state before the compiled kernel: the torch-op neuron loop and one conv call over T·B."""
    saved = layers.CONV_CHUNK_BYTES
    layers.CONV_CHUNK_BYTES = 0
    try:
        with kernels.using_torch_loop():
            yield
    finally:
        layers.CONV_CHUNK_BYTES = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hw-cost", metavar="CHIP", help="also time the hardware cost on CHIP (e.g. loihi)")
    parser.add_argument("--fixed-point", action="store_true",
                        help="also time the evaluation with the fixed-point costs (lava-emu over D_val)")
    parser.add_argument("--supernet", metavar="DIR", help="trained supernet.pt of a search run in DIR")
    parser.add_argument("--kernel-ab", action="store_true",
                        help="also time the evaluation as before the kernel (torch-op loop, no conv chunks), "
                             "alternated")
    args = parser.parse_args()
    if args.kernel_ab and kernels.backend() != "compiled":
        parser.error(f"--kernel-ab needs the compiled kernel: {kernels.why_fallback()}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaders = make_loaders("digits", 32, seed=0, val_split=0.2, eval_batch_size=512)
    if args.supernet:
        from nasflow.train.checkpoint import load_checkpoint

        state = load_checkpoint(Path(args.supernet) / "supernet.pt")
        args.channels, args.steps = state["fingerprint"]["channels"], state["fingerprint"]["steps"]
    supernet = AutoSNNSupernet(in_shape=(1, 8, 8), channels=args.channels, steps=args.steps)
    if args.supernet:
        supernet.load_state_dict(state["state_dict"])
    evaluator = SupernetEvaluator(supernet, loaders.val)
    fp_evaluator = None
    if args.fixed_point:
        from nasflow.evaluators.fixed_point import FixedPointSearchCost

        fp_evaluator = SupernetEvaluator(supernet, loaders.val,
                                         cost_fns=[FixedPointSearchCost(loaders.val, steps=args.steps)])
    hw_evaluator = None
    if args.hw_cost:
        from nasflow.evaluators.hw_cost import HardwareSearchCost

        hw_evaluator = SupernetEvaluator(supernet, loaders.val, cost_fns=[HardwareSearchCost(args.hw_cost)])
        warm = random.Random(1)
        for _ in range(30):  # a search has evaluated many candidates before most of its budget is spent
            hw_evaluator.evaluate_one(sample_path(warm))
    rng = random.Random(0)
    rows = []
    for _ in range(args.archs):
        arch = sample_path(rng)
        standalone = supernet.extract(arch)
        evaluator.evaluate_one(arch)  # warm-up both
        _plain_forward(standalone, evaluator.batches)
        t_eval, t_plain, t_hw, t_torch, t_fp = [], [], [], [], []
        fp_costs: dict = {}
        if fp_evaluator is not None:
            fp_costs = fp_evaluator.evaluate_one(arch)[1]
        if args.kernel_ab:
            with before_issue_17():
                evaluator.evaluate_one(arch)
        for _ in range(args.repeats):
            if args.kernel_ab:
                with before_issue_17():
                    t0 = time.perf_counter()
                    evaluator.evaluate_one(arch)
                    t_torch.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            evaluator.evaluate_one(arch)
            t_eval.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _plain_forward(standalone, evaluator.batches)
            t_plain.append(time.perf_counter() - t0)
            if hw_evaluator is not None:
                t0 = time.perf_counter()
                hw_evaluator.evaluate_one(arch)
                t_hw.append(time.perf_counter() - t0)
            if fp_evaluator is not None:
                t0 = time.perf_counter()
                fp_evaluator.evaluate_one(arch)
                t_fp.append(time.perf_counter() - t0)
        e, p = statistics.median(t_eval), statistics.median(t_plain)
        row = {"arch": ",".join(arch), "evaluate_s": e, "plain_forward_s": p, "ratio": e / p}
        line = f"{','.join(arch):40s} evaluate {e * 1e3:7.1f} ms  plain {p * 1e3:7.1f} ms  ratio {e / p:.3f}"
        if t_hw:
            h = statistics.median(t_hw)
            row.update(evaluate_with_hw_s=h, hw_overhead=h / e - 1)
            line += f"  with hw {h * 1e3:7.1f} ms (+{100 * (h / e - 1):.1f}%)"
        if t_fp:
            f = statistics.median(t_fp)
            row.update(evaluate_with_fixed_point_s=f, fixed_point_overhead=f / e - 1,
                       fixed_point_costs={k: v for k, v in fp_costs.items() if k.startswith("fixed_")})
            line += (f"  with fixed point {f * 1e3:7.1f} ms (+{100 * (f / e - 1):.1f}%, "
                     f"drop {fp_costs['fixed_acc_drop']:+.3f})")
        if t_torch:
            tl = statistics.median(t_torch)
            row.update(evaluate_torch_loop_s=tl, kernel_speedup=statistics.median(
                a / b for a, b in zip(t_torch, t_eval)))
            line += f"  before {tl * 1e3:7.1f} ms (x{row['kernel_speedup']:.2f})"
        rows.append(row)
        print(line)
    ratio = statistics.median(r["ratio"] for r in rows)
    hw_overhead = statistics.median(r["hw_overhead"] for r in rows) if hw_evaluator is not None else None
    if hw_overhead is not None:
        print(f"median hardware-cost overhead ({args.hw_cost}): {100 * hw_overhead:.1f}%  [goal <= 5%]")
    fp_overhead = statistics.median(r["fixed_point_overhead"] for r in rows) if fp_evaluator is not None else None
    if fp_overhead is not None:
        print(f"median fixed-point-cost overhead (lava-emu over D_val): {100 * fp_overhead:.1f}%  [goal <= 20%]")
    kernel_ab = None
    if args.kernel_ab:
        kernel_ab = {"torch_loop_s": statistics.median(r["evaluate_torch_loop_s"] for r in rows),
                     "compiled_s": statistics.median(r["evaluate_s"] for r in rows),
                     "median_speedup": statistics.median(r["kernel_speedup"] for r in rows)}
        print(f"seconds per candidate evaluation: before (torch-op loop, one conv call) "
              f"{kernel_ab['torch_loop_s']:.3f} s, compiled kernel "
              f"{kernel_ab['compiled_s']:.3f} s (median paired speed-up {kernel_ab['median_speedup']:.2f}x)")
    print(f"median evaluation / plain forward over D_val ({len(evaluator.batches)} batch(es), "
          f"{sum(len(y) for _, y in evaluator.batches)} samples): {ratio:.3f}  [goal <= 1.10]")
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "candidate_eval.json").write_text(json.dumps(
        {"schema_version": SCHEMA_VERSION, "median_ratio": ratio, "hw_cost": args.hw_cost,
         "median_hw_overhead": hw_overhead, "median_fixed_point_overhead": fp_overhead,
         "supernet": args.supernet, "kernel_ab": kernel_ab, "threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
