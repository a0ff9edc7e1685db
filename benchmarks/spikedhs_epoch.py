"""Seconds and peak memory of one SpikeDHS search epoch against one training epoch of a decoded network.

    .venv/bin/python benchmarks/spikedhs_epoch.py [--rounds 4] [--threads 2] [--lam-hw 0.05] [--genotype G]

Two worker processes (spawned, one library state each) on digits with the search defaults (C = 8, T = 6,
5 cells, 3-node cells, batch 64): ``search`` runs SpikeDHS epochs (after one warm-up epoch with α frozen, every
timed epoch is bi-level: a weight step on half A and an α step on half B per batch pair, the hardware term priced
each epoch, then decode and validation), ``train`` runs the decoded network's epochs as ``nasflow train`` does
(the full training split, then the test split). The parent alternates the two, one at a time, rotating who goes
first, so load drift hits both alike. Each worker reads its RSS once everything is built (before the warm-up
epoch), resets the kernel's RSS high-water mark and reports ``VmHWM`` minus that RSS (``peak MB``: what the
epochs add, malloc's retention included) next to the absolute high-water mark (libraries and data included).
Prints a table and writes ``benchmarks/results/spikedhs_epoch.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from train_step import _proc_status_kb, _quartiles, _reset_hwm, machine_info  # noqa: PLC2701 (same folder)

RESULTS = Path(__file__).resolve().parent / "results"


def _build_search(args: dict[str, Any]):
    from nasflow.spikedhs_search import SpikeDHSConfig, search_loaders
    from nasflow.strategies.spikedhs import SpikeDHSStrategy

    cfg = SpikeDHSConfig(cost="energy:loihi", lam_hw=args["lam_hw"], warmup=1, retrain_epochs=0, progress=False)
    loaders = search_loaders(cfg)
    spec = loaders.spec
    strategy = SpikeDHSStrategy(spec.image_shape, spec.num_classes, channels=cfg.channels, steps=cfg.steps,
                                epochs=cfg.epochs, warmup=cfg.warmup, lr_w=cfg.lr_w, lr_min=cfg.lr_min,
                                lr_alpha=cfg.lr_alpha, lam_hw=cfg.lam_hw, chip=cfg.chip())
    strategy.relax(cfg.space())
    state = {"epoch": 0}

    def epoch() -> dict[str, float]:
        t0 = time.perf_counter()
        strategy.begin_epoch(state["epoch"])
        val_it = iter(loaders.val)
        for bt in loaders.train:
            try:
                bv = next(val_it)
            except StopIteration:
                val_it = iter(loaders.val)
                bv = next(val_it)
            strategy.step(bt, bv)
        t1 = time.perf_counter()
        strategy.decode()
        strategy.evaluate(loaders.val)
        state["epoch"] += 1
        return {"step_s": t1 - t0, "eval_s": time.perf_counter() - t1}

    return epoch


def _build_train(args: dict[str, Any]):
    from nasflow.data import make_loaders
    from nasflow.models import create_model
    from nasflow.snn.dhs import SPIKEDHS_NEURON
    from nasflow.spikedhs_search import SpikeDHSConfig
    from nasflow.train.trainer import TrainConfig, Trainer, evaluate

    cfg = SpikeDHSConfig()
    loaders = make_loaders("digits", cfg.batch_size, seed=0)
    spec = loaders.spec
    model = create_model("spikedhs", arch=args["genotype"], in_shape=spec.image_shape, num_classes=spec.num_classes,
                         channels=cfg.channels, steps=cfg.steps, neuron=SPIKEDHS_NEURON,
                         layers=cfg.layers, stem_multiplier=cfg.stem_multiplier)
    tc = TrainConfig(epochs=100, batch_size=cfg.batch_size, optimizer="sgd", lr=cfg.retrain_lr, momentum=0.9,
                     weight_decay=3e-4, schedule="cosine", loss="ce", progress=False)
    trainer = Trainer(model, tc, loaders.train, loaders.test, num_classes=spec.num_classes)

    def epoch() -> dict[str, float]:
        t0 = time.perf_counter()
        trainer.train_epoch()
        t1 = time.perf_counter()
        evaluate(trainer.model, loaders.test, trainer.device)
        return {"step_s": t1 - t0, "eval_s": time.perf_counter() - t1}

    return epoch


def _worker(name: str, args: dict[str, Any], conn: Any) -> None:
    import torch

    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    epoch = (_build_search if name == "search" else _build_train)(args)
    base_kb = _proc_status_kb("VmRSS") or 0  # model, optimisers and data built, no epoch run yet
    _reset_hwm()
    epoch()  # warm-up: the search's α-frozen epoch, the trainer's first allocation of everything
    conn.send("ready")
    while conn.recv() == "epoch":
        t0 = time.perf_counter()
        row = epoch()
        row["seconds"] = time.perf_counter() - t0
        hwm = _proc_status_kb("VmHWM") or 0
        row["peak_mb"] = max(hwm - base_kb, 0) / 1024
        row["hwm_mb"] = hwm / 1024
        conn.send(row)
    conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from nasflow.spaces.spikedhs import BASELINE

    wargs = {"threads": args.threads, "lam_hw": args.lam_hw, "genotype": args.genotype or BASELINE}
    ctx = mp.get_context("spawn")
    names = ["search", "train"]
    pipes, procs = {}, []
    for name in names:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(name, wargs, child), daemon=True)
        p.start()
        pipes[name], procs = parent, [*procs, p]
    try:
        for name in names:
            if pipes[name].recv() != "ready":
                raise RuntimeError(f"worker {name} failed to start")
        rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                pipes[name].send("epoch")
                rows[name].append(pipes[name].recv())
                print(f"round {r + 1}/{args.rounds} {name}: {rows[name][-1]['seconds']:.1f} s", file=sys.stderr)
        for name in names:
            pipes[name].send("stop")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    out: dict[str, Any] = {"machine": machine_info(args.threads), "rounds": args.rounds, "lam_hw": args.lam_hw,
                           "genotype": wargs["genotype"], "workers": {}}
    for name in names:
        secs = [row["seconds"] for row in rows[name]]
        q1, med, q3 = _quartiles(secs)
        out["workers"][name] = {
            "median_s": med, "iqr_s": [q1, q3],
            "step_s": statistics.median(row["step_s"] for row in rows[name]),
            "eval_s": statistics.median(row["eval_s"] for row in rows[name]),
            "peak_mb": max(row["peak_mb"] for row in rows[name]), "hwm_mb": max(row["hwm_mb"] for row in rows[name]),
            "rows": rows[name],
        }
    paired = [s["seconds"] / t["seconds"] for s, t in zip(rows["search"], rows["train"], strict=True)]
    out["search_over_train"] = statistics.median(paired)
    return out


def format_table(res: dict[str, Any]) -> str:
    lines = ["| epoch | median s | IQR s | steps s | eval s | peak MB (over built RSS) | VmHWM MB |",
             "|---|---|---|---|---|---|---|"]
    for name, w in res["workers"].items():
        lines.append(f"| {name} | {w['median_s']:.1f} | {w['iqr_s'][0]:.1f}–{w['iqr_s'][1]:.1f} | {w['step_s']:.1f} "
                     f"| {w['eval_s']:.1f} | {w['peak_mb']:.0f} | {w['hwm_mb']:.0f} |")
    lines.append(f"\nsearch epoch / training epoch (paired per round, median): {res['search_over_train']:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lam-hw", type=float, default=0.05)
    parser.add_argument("--genotype", default=None, help="decoded network to train (default: the all-conv3x3 baseline)")
    args = parser.parse_args(argv)
    res = run(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spikedhs_epoch.json").write_text(json.dumps(res, indent=2))
    print(format_table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
