"""``nasflow run``: the main job (search, retrain, export, simulate, cost, report) and its one-screen summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nasflow.cli.common import parse_set
from nasflow.runlock import hold_run_dir

__all__ = ["add_run_parser", "cmd_run", "summary_screen"]


def add_run_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``run`` subcommand; returns its parser."""
    p = subparsers.add_parser(
        "run", help="the main job: search, retrain, export to NIR, simulate on Lava, cost, report",
        description="The main job: search an architecture, retrain the winner and a baseline, export both to NIR, "
        "simulate them on Lava, cost them on a chip model and write a report. Each finished step is saved, so a "
        "killed run continues with --resume.")
    p.add_argument("--out", required=True, help="run directory (report.json, report.md, report.html, model.nir)")
    p.add_argument("--config",
                   help="run.yaml with PipelineConfig sections (data, model, autosnn, snasnet, retrain, lava, ...)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. model.steps=5, autosnn.evaluations=100 or chip=loihi-sanafe")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out from its last finished step")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (step lines only)")
    p.set_defaults(handler=cmd_run)
    return p


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or resume) the pipeline; prints ``summary_screen`` and returns 0."""
    import torch

    from nasflow.pipeline import load_pipeline_config, run_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_set(args.set)
    if args.no_progress:
        overrides["progress"] = False
    cfg = load_pipeline_config(args.config, overrides)  # checked before any work starts
    with hold_run_dir(args.out):
        report = run_pipeline(cfg, args.out, resume=args.resume)
    print(summary_screen(report, args.out))
    return 0


def summary_screen(report: dict[str, Any], out: str) -> str:
    """The one-screen summary printed at the end of ``nasflow run``."""
    from nasflow.report import format_value

    w, b = report["winner"], report["baseline"]
    rows = [("", "winner", "baseline"), ("architecture", w["arch"], b["arch"])]
    for label, key, kind in (("torch test accuracy", "torch_accuracy", "pct"), ("Lava float accuracy*",
                             "lava_accuracy", "pct"), ("Lava fixed accuracy*", "lava_fixed_accuracy", "pct"),
                             ("spikes / sample", "spikes_per_sample", ""), ("energy / sample", "energy_per_sample_j",
                             "j"), ("cores used", "cores_used", "")):
        rows.append((label, format_value(w[key], kind), format_value(b[key], kind)))
    width = [max(len(str(r[i])) for r in rows) for i in range(3)]
    lines = ["  ".join(str(c).ljust(width[i]) for i, c in enumerate(r)) for r in rows]
    same = [format_value(r["torch_accuracy_on_lava_samples"], "pct") for r in (w, b)]
    lines.append(f"* on the first {w['lava_samples']} test samples (torch on the same: {same[0]} / {same[1]})")
    lines.append(_time_line(report, out))
    lines.append(f"report: {out}/report.html, {out}/report.md, {out}/report.json; NIR: {out}/model.nir")
    return "\n".join(lines)


def _time_line(report: dict[str, Any], out: str) -> str:
    """Seconds of every pipeline step and their total (steps of a resumed run count with their first time)."""
    seconds = dict(report.get("step_seconds") or {})
    done = Path(out) / "steps" / "report.json"
    if "report" not in seconds and done.exists():  # the report step finishes after report.json is written
        try:
            seconds["report"] = float(json.loads(done.read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    parts = [f"{name} {value:.1f}" for name, value in seconds.items()]
    text = f"seconds: {', '.join(parts)}; total {sum(seconds.values()):.1f}"
    session = report.get("total_seconds_this_session")
    if session is not None:
        text += f" (this session {session:.1f})"
    return text
