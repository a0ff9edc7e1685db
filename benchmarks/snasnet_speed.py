"""Cost of scoring one SNASNet candidate (SAHD) against one plain forward pass over the scoring batches.

    .venv/bin/python benchmarks/snasnet_speed.py [--threads 2] [--cells 6] [--repeats 3] [--cifar-batches 1]
        [--skip-cifar] [--device cpu] [--out benchmarks/results/snasnet_speed.json]

Digits macro (C = 16, T = 8, two batches of 256 real digits images): for the released CIFAR-10 cell and
``--cells`` random backward cells, alternately times (a) ``SAHDScorer.score`` (hooks on every LIF, kernels,
slogdet) and (b) a plain ``torch.no_grad`` train-mode forward over the same batches; medians per cell
and their ratio (goal ≤ 1.2). The paper's CIFAR macro (C = 256, batch 256, T = 5, 32x32 synthetic input,
released CIFAR-10 cell, second pool 4) is timed the same way on ``--cifar-batches`` batches (one
repeat: a forward takes minutes on 2 cores); seconds per candidate are reported for the paper's two
batches. ``--kernel-ab`` also times the digits scoring as before the compiled kernel (the torch-op neuron loop,
``nasflow.kernels.using_torch_loop``, and one conv call over T·B, ``CONV_CHUNK_BYTES = 0``), alternated with the
current code in the same repeats (before/after).
Writes a JSON next to the printout.
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
from nasflow.evaluators.sahd import SAHDScorer
from nasflow.snn import layers
from nasflow.snn.neurons import reset_states
from nasflow.spaces.snasnet import RELEASED_CELLS, SNASNet, format_cell, sample_cell


def _forward(model: torch.nn.Module, batches) -> None:
    model.train()
    with torch.no_grad():
        for x in batches:
            reset_states(model)
            model(x)


def _time(fn) -> float:
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _measure(model, batches, repeats: int, warm: bool, kernel_ab: bool = False) -> dict:
    scorer = SAHDScorer()
    if warm:
        scorer.score(model, batches)
        _forward(model, batches)
    score_t, fwd_t, torch_t = [], [], []
    for _ in range(repeats):
        fwd_t.append(_time(lambda: _forward(model, batches)))
        score_t.append(_time(lambda: scorer.score(model, batches)))
        if kernel_ab:
            with before_issue_17():
                torch_t.append(_time(lambda: scorer.score(model, batches)))
    result = scorer.score(model, batches) if warm else None
    row = {"score_s": statistics.median(score_t), "forward_s": statistics.median(fwd_t),
           "ratio": statistics.median(s / f for s, f in zip(score_t, fwd_t)),
           "lif_kernels_per_batch": result.kernels_per_batch if result else None,
           "reused_per_batch": result.reused_per_batch if result else None}
    if torch_t:
        row.update(score_torch_loop_s=statistics.median(torch_t),
                   kernel_speedup=statistics.median(a / b for a, b in zip(torch_t, score_t)))
    return row


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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cells", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cifar-batches", type=int, default=1)
    parser.add_argument("--cifar-channels", type=int, default=256)
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/snasnet_speed.json")
    parser.add_argument("--kernel-ab", action="store_true",
                        help="also time the digits scoring as before the kernel (torch-op loop, no conv chunks), "
                             "alternated")
    args = parser.parse_args()
    if args.kernel_ab and kernels.backend() != "compiled":
        parser.error(f"--kernel-ab needs the compiled kernel: {kernels.why_fallback()}")
    torch.set_num_threads(args.threads)
    loaders = make_loaders("digits", 256, seed=0)
    dev = torch.device(args.device)
    batches = [x.to(dev) for x, _ in list(loaders.train)[:2]]
    rng = random.Random(0)
    cells = [RELEASED_CELLS["cifar10"]] + [format_cell(sample_cell(rng, "backward")) for _ in range(args.cells)]
    rows = []
    print(f"digits macro: C=16, T=8, 2 batches of 256, {args.threads} threads, device {dev}")
    for cell in cells:
        torch.manual_seed(0)
        model = SNASNet(cell=cell, in_shape=(1, 8, 8), channels=16, steps=8, second_pool=2, classifier_bn=True).to(dev)
        row = {"cell": cell, **_measure(model, batches, args.repeats, warm=True, kernel_ab=args.kernel_ab)}
        rows.append(row)
        ab = (f"  before {row['score_torch_loop_s']:.3f} s (x{row['kernel_speedup']:.2f})"
              if "kernel_speedup" in row else "")
        print(f"  {cell}  score {row['score_s']:.3f} s  forward {row['forward_s']:.3f} s  ratio {row['ratio']:.2f}"
              f"  (LIF kernels/batch {row['lif_kernels_per_batch']}, reused {row['reused_per_batch']}){ab}",
              flush=True)
    ratios = [r["ratio"] for r in rows]
    summary = {"digits_median_ratio": statistics.median(ratios), "digits_max_ratio": max(ratios),
               "digits_seconds_per_candidate": statistics.median(r["score_s"] for r in rows)}
    if args.kernel_ab:
        summary.update(digits_torch_loop_seconds_per_candidate=statistics.median(r["score_torch_loop_s"] for r in rows),
                       digits_kernel_speedup=statistics.median(r["kernel_speedup"] for r in rows))
        print(f"digits, before (torch-op loop, one conv call): "
              f"{summary['digits_torch_loop_seconds_per_candidate']:.3f} s per candidate; "
              f"compiled kernel x{summary['digits_kernel_speedup']:.2f} (median paired)")
    print(f"digits: median ratio {summary['digits_median_ratio']:.2f} (max {summary['digits_max_ratio']:.2f}), "
          f"{summary['digits_seconds_per_candidate']:.3f} s per candidate")
    cifar = None
    if not args.skip_cifar:
        c = args.cifar_channels
        torch.manual_seed(0)
        model = SNASNet(cell=RELEASED_CELLS["cifar10"], in_shape=(3, 32, 32), channels=c, steps=5, second_pool=4)
        model = model.to(dev)
        xb = [torch.randn(256, 3, 32, 32, device=dev) for _ in range(args.cifar_batches)]
        cifar = {"cell": RELEASED_CELLS["cifar10"], "channels": c, "batches": args.cifar_batches,
                 **_measure(model, xb, 1, warm=False)}
        cifar["seconds_per_candidate_2_batches"] = cifar["score_s"] * 2 / args.cifar_batches
        print(f"CIFAR macro (C={c}, batch 256, T=5): score {cifar['score_s']:.1f} s, forward "
              f"{cifar['forward_s']:.1f} s over {args.cifar_batches} batch(es), ratio {cifar['ratio']:.2f}; "
              f"{cifar['seconds_per_candidate_2_batches']:.1f} s per candidate (2 batches)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "threads": args.threads, "device": str(dev),
                               "digits": rows, "summary": summary, "cifar": cifar}, indent=1))


if __name__ == "__main__":
    main()
