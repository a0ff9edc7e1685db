"""``lava-emu`` against ``lava-fixed`` on the main job's two digits models: identical rasters over all test samples,
and the steady-state cost per sample of both (process start-up excluded on both sides), in one run.

    .venv/bin/python benchmarks/lava_emu.py [--samples 360] [--models winner,baseline] [--batch1 40]

The models are the seed-0 winner and the ``all-SCB_k3`` baseline of ``nasflow run`` (``tests/golden/models/``, or
``--model PATH`` for any saved model). Lava's per-sample cost is marginal: (wall of the N-sample run − wall of an
8-sample run) / (N − 8), so runtime start-up, compile and the plan are not counted. The emulator's is measured on a
prepared network (``exporters.lava.emulate.FixedPointNetwork``): the median over ``--batch1`` single-sample calls,
and the wall of one call on all N samples (median of 3). Results: ``benchmarks/results/lava_emu.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from exporters import lava as lb
from exporters.core.jsonio import SCHEMA_VERSION
from exporters.core.traversal import output_ids
from exporters.equivalence import accuracy_from_output
from exporters.lava.emulate import FixedPointNetwork
from exporters.nir_export import to_nir
from nasflow.data.digits import load_digits_split
from nasflow.models import load_model

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "models"
SMALL = 8


def _timed(fn, *args, **kw) -> tuple[object, float]:  # noqa: ANN001 - small local helper
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def _model_case(path: Path, n: int) -> tuple[object, np.ndarray, np.ndarray]:
    model, _ = load_model(path)
    steps = int(model.config.get("steps", 8))
    split = load_digits_split()
    x = np.repeat(split.x_test[:n].numpy()[None], steps, axis=0).astype(np.float32)  # direct coding
    return to_nir(model.eval(), dt=1e-3), x, split.y_test[:n].numpy()


def bench_model(name: str, path: Path, n: int, batch1: int) -> dict:
    graph, x, y = _model_case(path, n)
    out = output_ids(graph)[0]
    print(f"{name}: lava-fixed on {SMALL} and {n} samples ...", flush=True)
    _, t_small = _timed(lb.simulate, graph, x[:, :SMALL], fixed_point=True, timeout_s=1800)
    ref, t_full = _timed(lb.simulate, graph, x, fixed_point=True, timeout_s=3600)
    emu = lb.emulate(graph, x)
    mismatched = [k for k in ref if not np.array_equal(ref[k], emu[k])]
    plan = lb.build_plan(graph)
    net = FixedPointNetwork(plan, lb.quantize_plan(plan, x))
    single = []
    for i in range(batch1 + 1):
        _, t = _timed(net.run, x[:, i % n:i % n + 1])
        if i:  # the first call warms torch up
            single.append(t)
    full = [_timed(net.run, x)[1] for _ in range(3)]
    lava_per_sample = (t_full - t_small) / (n - SMALL)
    emu1 = statistics.median(single)
    spikes = {k: int(v.sum()) for k, v in ref.items() if k in plan.neurons}
    res = {
        "model": str(path), "samples": n, "steps": int(x.shape[0]), "lava_processes": plan.n_processes,
        "identical_rasters": not mismatched, "mismatched_nodes": mismatched,
        "spikes_compared": int(sum(spikes.values())),
        "accuracy_lava_fixed": accuracy_from_output(ref, y, out),
        "accuracy_emulator": accuracy_from_output(emu, y, out),
        "lava_fixed_wall_s": {"samples_8": t_small, f"samples_{n}": t_full},
        "lava_fixed_s_per_sample": lava_per_sample,
        "emulator_batch1_s_per_sample": emu1,
        "emulator_batchN_wall_s": statistics.median(full),
        "emulator_batchN_samples_per_s": n / statistics.median(full),
        "speedup_batch1": lava_per_sample / emu1,
        "speedup_batchN": lava_per_sample / (statistics.median(full) / n),
    }
    print(f"{name}: identical={res['identical_rasters']} over {res['spikes_compared']} spikes; lava-fixed "
          f"{lava_per_sample * 1e3:.1f} ms/sample, emulator {emu1 * 1e3:.2f} ms/sample at batch 1 "
          f"({res['speedup_batch1']:.0f}x), {res['emulator_batchN_samples_per_s']:.0f} samples/s at batch {n} "
          f"({res['speedup_batchN']:.0f}x); accuracy {res['accuracy_emulator']:.4f}", flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=360, help="digits test samples (all 360 by default)")
    p.add_argument("--models", default="winner,baseline", help="golden main-job models to run")
    p.add_argument("--model", type=Path, action="append", default=[], help="another saved model.pt (repeatable)")
    p.add_argument("--batch1", type=int, default=40, help="single-sample emulator calls to time")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/lava_emu.json"))
    args = p.parse_args()
    if args.samples <= SMALL:
        p.error(f"--samples must exceed {SMALL} (the short run that measures Lava's start-up)")
    paths = {m: GOLDEN / f"{m}.pt" for m in args.models.split(",") if m} | {str(m): m for m in args.model}
    t0 = time.perf_counter()
    results = {name: bench_model(name, path, args.samples, args.batch1) for name, path in paths.items()}
    import torch

    result = {"schema_version": SCHEMA_VERSION, "torch_threads": torch.get_num_threads(),
              "wall_s": time.perf_counter() - t0, "models": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
