"""Kendall τ between training-free scores and trained accuracy for random SNASNet cells on digits.

    .venv/bin/python benchmarks/snasnet_kendall.py [--archs 32] [--cell backward] [--channels 8] [--steps 4]
        [--epochs 6] [--lr 0.5] [--threads 1] [--seed 0] [--out benchmarks/results/snasnet_kendall.json]

For each of ``--archs`` distinct random cells: score the randomly initialised network once with every
kernel variant (SAHD paper/code normalisation × sum/mean, plain Hamming sum/mean; two batches of 256
training images, train mode), then train it briefly from a fresh init (SGD momentum 0.9, wd 5e-4, cosine,
CE on the mean output over T, batch 64) and measure test accuracy. Rows are appended to the JSON as they
finish, so a killed run resumes. Prints Kendall τ and its p-value (scipy) per variant.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau

from exporters.core.jsonio import SCHEMA_VERSION
from nasflow.data import make_loaders
from nasflow.evaluators.sahd import SAHDConfig, SAHDScorer
from nasflow.snasnet_search import SNASNetSearchConfig, build_candidate, sample_candidates, take_batches
from nasflow.train.trainer import TrainConfig, Trainer, evaluate

VARIANTS = [
    SAHDConfig("sahd", "paper", "sum"), SAHDConfig("sahd", "paper", "mean"),
    SAHDConfig("sahd", "code", "sum"), SAHDConfig("sahd", "code", "mean"),
    SAHDConfig("hamming", "paper", "sum"), SAHDConfig("hamming", "paper", "mean"),
]


def _row(cfg: SNASNetSearchConfig, cell: str, index: int, args, batches, loaders) -> dict:
    spec = loaders.spec
    torch.manual_seed(cfg.seed * 1_000_003 + index)
    model = build_candidate(cfg, cell, spec.image_shape, spec.num_classes)
    t0 = time.perf_counter()
    result = SAHDScorer(VARIANTS).score(model, batches)
    score_s = time.perf_counter() - t0
    torch.manual_seed(index)
    model = build_candidate(cfg, cell, spec.image_shape, spec.num_classes)
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=64, optimizer="sgd", lr=args.lr, momentum=0.9,
                            weight_decay=5e-4, schedule="cosine", loss="ce", seed=index, device="cpu",
                            progress=False)
    t1 = time.perf_counter()
    Trainer(model, train_cfg, loaders.train, None, None, num_classes=spec.num_classes).fit(resume=False)
    ev = evaluate(model, loaders.test, torch.device("cpu"))
    return {"cell": cell, "scores": result.scores, "accuracy": ev["accuracy"],
            "spikes_per_sample": ev["spikes_per_sample"], "score_seconds": score_s,
            "train_seconds": time.perf_counter() - t1}


def _table(rows: list[dict]) -> dict[str, dict[str, float]]:
    acc = [r["accuracy"] for r in rows]
    out = {}
    for v in VARIANTS:
        scores = [r["scores"][v.name] for r in rows]
        finite = [(s, a) for s, a in zip(scores, acc) if math.isfinite(s)]
        tau, p = kendalltau([s for s, _ in finite], [a for _, a in finite])
        out[v.name] = {"tau": float(tau), "p_value": float(p), "n": len(finite)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=32)
    parser.add_argument("--cell", default="backward", choices=["backward", "forward"])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/snasnet_kendall.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = SNASNetSearchConfig(cell=args.cell, channels=args.channels, steps=args.steps, seed=args.seed,
                              candidates=args.archs, progress=False)
    setup = {"archs": args.archs, "cell": args.cell, "channels": args.channels, "steps": args.steps,
             "epochs": args.epochs, "lr": args.lr, "seed": args.seed, "score_batch": cfg.score_batch,
             "score_batches": cfg.score_batches, "threads": args.threads}
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    rows = data.get("rows", []) if data.get("setup") == setup else []
    loaders = make_loaders("digits", 64, seed=args.seed, augment="standard", eval_batch_size=512)
    batches = take_batches(make_loaders("digits", cfg.score_batch, seed=args.seed).train, cfg.score_batches,
                           "digits")
    done = {r["cell"] for r in rows}
    for i, cell in enumerate(sample_candidates(args.archs, args.cell, args.seed)):
        if cell in done:
            continue
        rows.append(_row(cfg, cell, i, args, batches, loaders))
        r = rows[-1]
        print(f"[{len(rows)}/{args.archs}] {cell}  acc {r['accuracy']:.4f}  sahd {r['scores']['sahd-paper-sum']:.1f}"
              f"  hd {r['scores']['hamming-sum']:.1f}  train {r['train_seconds']:.0f}s", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "setup": setup, "rows": rows}, indent=1))
    table = _table(rows)
    accs = [r["accuracy"] for r in rows]
    out.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "setup": setup, "rows": rows, "kendall": table,
                               "accuracy_range": [min(accs), max(accs)]}, indent=1))
    print(f"\n{len(rows)} architectures, test accuracy {min(accs):.3f}-{max(accs):.3f}")
    print(f"{'score':<18}{'Kendall tau':>12}{'p-value':>12}")
    for name, t in table.items():
        print(f"{name:<18}{t['tau']:>12.3f}{t['p_value']:>12.2e}")


if __name__ == "__main__":
    main()
