"""How much of SNASNet's backward cell space exports to NIR and runs on Lava (``deployment_problem``).

    .venv/bin/python benchmarks/snasnet_deployable.py [--draws 5000] [--seed 0] [--kind backward]
        [--out benchmarks/results/snasnet_deployable.json]

Draws ``--draws`` cells with the released code's sampler (``sample_cell``), checks each distinct canonical cell
once (a tiny instance is exported and planned for Lava; the graph structure does not depend on sizes) and counts
draws, not distinct cells, per refusal reason, so the share is the share of the sampler's draws the search loses.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import Counter
from pathlib import Path

from exporters.core.jsonio import SCHEMA_VERSION
from nasflow.spaces.snasnet import canonical_cell, deployment_problem, format_cell, sample_cell


def reason(problem: str) -> str:
    """The refusal without the node names, so that one cause counts once."""
    return re.sub(r"'[^']*'", "<node>", re.sub(r"cell\d \(cell '[^']*'\)", "<cell>", problem))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kind", default="backward", choices=("backward", "forward"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/snasnet_deployable.json"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    problems: dict[str, str | None] = {}
    reasons: Counter[str] = Counter()
    t0 = time.monotonic()
    for i in range(args.draws):
        cell = format_cell(canonical_cell(sample_cell(rng, args.kind)))
        if cell not in problems:
            problems[cell] = deployment_problem(cell)
        if problems[cell] is not None:
            reasons[reason(problems[cell])] += 1
        if (i + 1) % 1000 == 0:
            print(f"{i + 1}/{args.draws} draws, {len(problems)} distinct cells, {sum(reasons.values())} refused "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)
    refused = sum(reasons.values())
    res = {"schema_version": SCHEMA_VERSION, "kind": args.kind, "draws": args.draws, "seed": args.seed,
           "distinct_cells": len(problems), "refused_draws": refused,
           "refused_distinct": sum(p is not None for p in problems.values()),
           "reasons": dict(reasons.most_common())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"{refused} of {args.draws} draws refused ({100 * refused / args.draws:.1f}%); "
          f"{res['refused_distinct']} of {len(problems)} distinct cells")
    for r, n in reasons.most_common():
        print(f"  {n:5d}  {r}")


if __name__ == "__main__":
    main()
