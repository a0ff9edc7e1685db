"""Fault injection: SIGKILL a search, a training run and the main job at seeded random moments and inside their
durable writes, resume each with the same command, and compare with an uninterrupted run (``make faults``; two or
three trials run in the suite).

    .venv/bin/python tests/fault_harness.py [--targets search train run] [--random 3] [--writes 3] [--seed 0]
        [--out runs/faults]

Per target, one uninterrupted reference run, then trials: *random* ones kill the job after a seeded delay drawn
from 10-90% of the reference's wall time; *write* ones set ``NASFLOW_FAULT`` (``exporters.core.faults``) so the job
kills itself in the middle of its N-th journal line, checkpoint or result file. Every trial is resumed with the
same command (``--resume`` for the main job) and its result compared with the reference: ``search.json`` (every
candidate, its values and costs, the winner), ``result.json`` and the weights in ``model.pt`` for training,
``report.json`` for the main job, timing fields excluded (and a resumed session's own bookkeeping:
``resumed_from_epoch``, ``*_this_session``). After each trial no process of the trial may survive
(its command lines name the trial's directory: Lava's forked processes included) and ``/dev/shm`` must hold no
new entry. Writes ``faults.json``; prints one line per trial.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"supernet_seconds", "search_seconds", "train_seconds", "seconds", "step_seconds", "search_cost_seconds",
          "total_seconds_this_session", "journal_hits", "seconds_per_candidate", "wall_seconds", "epoch_seconds"}

TINY_RUN = ["--set=model.channels=4", "--set=model.steps=3", "--set=autosnn.supernet_epochs=1",
            "--set=autosnn.evaluations=6", "--set=autosnn.rounds=2", "--set=retrain.epochs=1",
            "--set=lava.samples=4", "--set=lava.qat_epochs=1", "--set=progress=false",
            "--set=retrain.progress=false"]


def command(target: str, out: Path, resume: bool = False) -> list[str]:
    """The job a trial runs (tiny digits configs, one torch thread so that results are reproducible)."""
    cli = [sys.executable, "-m", "nasflow.cli"]
    if target == "search":
        return cli + ["search", "autosnn", "--dataset", "digits", "--supernet-epochs", "2", "--channels", "4",
                      "--steps", "2", "--evaluations", "16", "--threads", "1", "--seed", "0", "--no-progress",
                      "--out", str(out)]
    if target == "train":
        return cli + ["train", "--dataset", "digits", "--epochs", "3", "--channels", "4", "--steps", "2",
                      "--threads", "1", "--no-progress", "--out", str(out)]
    return cli + ["run", "--out", str(out), "--threads", "1", *TINY_RUN] + (["--resume"] if resume else [])


WRITE_SITES = {"search": ("journal", "checkpoint"), "train": ("checkpoint", "json"), "run": ("journal", "json")}


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING and not k.endswith("_seconds")
                and not k.endswith("_this_session") and not k.startswith("resumed_from")}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def result(target: str, out: Path) -> object:
    """What must equal the uninterrupted run (timing fields removed)."""
    def load(name: str) -> object:  # paths inside name the run's own directory, which differs per trial
        return _strip(json.loads((out / name).read_text().replace(str(out), "<run>")))

    if target == "search":
        return load("search.json")
    if target == "train":
        import torch

        state = torch.load(out / "model.pt", weights_only=True)["state_dict"]
        return {"result": load("result.json"),
                "weights": {k: v.numpy().tobytes().hex() for k, v in sorted(state.items())}}
    return load("report.json")


def survivors(out: Path) -> list[int]:
    """Processes whose command line names ``out`` (the job, Lava's forks, data-loader workers)."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                line = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(out) in line:
                found.append(int(p.name))
    return found


def _shm() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


def run_job(cmd: list[str], env: dict[str, str] | None = None, kill_after: float | None = None,
            timeout: float = 900) -> tuple[int, float]:
    """Run ``cmd``; SIGKILL it after ``kill_after`` seconds when given. Returns (exit status, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=kill_after if kill_after is not None else timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    return proc.returncode, time.monotonic() - t0


def trial(target: str, base: Path, name: str, reference: object, ref_seconds: float, *, fault: str | None = None,
          delay: float | None = None) -> dict:
    """One kill and resume; returns what happened and whether the result equals the reference."""
    out = base / name
    shm = _shm()
    env = {"NASFLOW_FAULT": fault} if fault else None
    code, _ = run_job(command(target, out), env=env, kill_after=delay)
    time.sleep(0.7)  # forked helpers notice their parent is gone within their 0.5 s poll
    left_after_kill = survivors(out)
    killed = code == -signal.SIGKILL
    run_job(command(target, out, resume=True))
    time.sleep(0.7)
    row = {"target": target, "trial": name, "fault": fault, "delay_s": delay, "killed": killed,
           "survivors_after_kill": left_after_kill, "survivors_after_resume": survivors(out),
           "new_shm": sorted(_shm() - shm), "equal": result(target, out) == reference}
    row["ok"] = row["equal"] and not row["survivors_after_kill"] and not row["survivors_after_resume"] \
        and not row["new_shm"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["search", "train", "run"], choices=["search", "train", "run"])
    ap.add_argument("--random", type=int, default=3, help="random-moment kills per target")
    ap.add_argument("--writes", type=int, default=3, help="write-site kills per target")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/faults"))
    args = ap.parse_args()
    out = args.out.resolve()
    rng = random.Random(args.seed)
    rows = []
    for target in args.targets:
        ref_dir = out / f"{target}-reference"
        _, seconds = run_job(command(target, ref_dir))
        reference = result(target, ref_dir)
        print(f"{target}: reference in {seconds:.1f} s", flush=True)
        plans = [(f"random{i}", None, rng.uniform(0.1, 0.9) * seconds) for i in range(args.random)]
        sites = WRITE_SITES[target]
        plans += [(f"write{i}", f"{sites[i % len(sites)]}:{rng.randint(1, 3)}", None) for i in range(args.writes)]
        for name, fault, delay in plans:
            row = trial(target, out, f"{target}-{name}", reference, seconds, fault=fault, delay=delay)
            rows.append(row)
            print(f"{target:6s} {name:8s} {fault or f'after {delay:.1f} s':>22s}: killed {row['killed']}, "
                  f"equal {row['equal']}, survivors {row['survivors_after_kill']}/{row['survivors_after_resume']}, "
                  f"new /dev/shm {row['new_shm']}", flush=True)
    ok, kills = sum(r["ok"] for r in rows), sum(r["killed"] for r in rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps({"trials": rows, "ok": ok, "killed": kills, "total": len(rows)},
                                                indent=1) + "\n")
    print(f"{ok} of {len(rows)} trials resumed to the uninterrupted result with nothing left behind; {kills} of "
          "them killed the job (a write fault past the job's last such write lets it finish)")
    sys.exit(0 if ok == len(rows) else 1)


if __name__ == "__main__":
    main()
