"""Candidate-evaluation throughput: a two-node Ray cluster (2 workers × 1 thread) against the in-process executor at
1 and at 2 torch threads, alternated in one run; and whether every mode gives the same search.

    .venv/bin/python benchmarks/ray_throughput.py [--supernet DIR] [--evaluations 40] [--repeats 3]
        [--out runs/ray_throughput]

The candidates are the main job's: AutoSNN on digits (C = 16, T = 8) with the Loihi energy cost; ``--supernet DIR``
reuses a trained supernet (e.g. ``runs/main/search``), else a one-epoch one is trained first (throughput does not
depend on how well it is trained). Each run is a random search of ``--evaluations`` candidates in a fresh directory,
timed by the search itself (``search_seconds``: proposals and evaluations, after the executor exists; Ray's actors
start and receive the evaluator inside it). The cluster (``ray.cluster_utils.Cluster``: a head and a second node,
one CPU each, two raylets) is started once, outside the timings. Writes ``ray_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from exporters.core.jsonio import SCHEMA_VERSION, write_json
from nasflow.search import AutoSNNSearchConfig, run_autosnn_search

MODES = ("local-1", "ray-2x1", "local-2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", type=Path)
    ap.add_argument("--evaluations", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/ray_throughput"))
    args = ap.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    base = dict(dataset="digits", channels=16, steps=8, cost="energy:loihi", lam=-0.24, strategy="random",
                evaluations=args.evaluations, progress=False, seed=0)
    supernet = args.supernet
    if supernet is None:
        supernet = args.out / "supernet"
        run_autosnn_search(AutoSNNSearchConfig(**base, supernet_epochs=1), supernet)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    searches: dict[str, dict] = {}
    try:
        for rep in range(args.repeats):
            order = MODES[rep % 3:] + MODES[:rep % 3]  # rotate which mode runs first
            for mode in order:
                extra = {"executor": "ray", "ray_address": cluster.address, "workers": 2,
                         "threads_per_worker": 1} if mode.startswith("ray") else {}
                torch.set_num_threads(2 if mode == "local-2" else 1)
                out = args.out / f"{mode}-{rep}"
                t0 = time.perf_counter()
                res = run_autosnn_search(AutoSNNSearchConfig(**base, **extra), out, supernet_dir=supernet)
                wall = time.perf_counter() - t0
                times[mode].append(res["search_seconds"])
                searches.setdefault(mode, res)
                print(f"repeat {rep} {mode}: {res['search_seconds']:.1f} s search, {wall:.1f} s wall, "
                      f"{args.evaluations / res['search_seconds']:.2f} candidates/s", flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    same = {m: [r["arch"] for r in searches[m]["evaluated"]] == [r["arch"] for r in searches["local-1"]["evaluated"]]
            and [r["accuracy"] for r in searches[m]["evaluated"]] == [r["accuracy"] for r in
                                                                      searches["local-1"]["evaluated"]]
            and searches[m]["best"] == searches["local-1"]["best"] for m in MODES}
    med = {m: statistics.median(v) for m, v in times.items()}
    res = {"schema_version": SCHEMA_VERSION, "evaluations": args.evaluations, "repeats": args.repeats,
           "search_seconds": times, "median_seconds": med,
           "speedup_ray_vs_local_1": med["local-1"] / med["ray-2x1"],
           "speedup_ray_vs_local_2": med["local-2"] / med["ray-2x1"],
           "same_search_as_local_1": same, "torch_threads_local": {"local-1": 1, "local-2": 2}}
    write_json(args.out / "ray_throughput.json", res, indent=2)
    print(json.dumps({k: res[k] for k in ("median_seconds", "speedup_ray_vs_local_1", "speedup_ray_vs_local_2",
                                          "same_search_as_local_1")}, indent=2))


if __name__ == "__main__":
    main()
