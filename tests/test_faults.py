"""Fault injection in the suite (``make faults`` runs the full set): a search and a training run SIGKILLed inside
their journal and checkpoint writes resume to the uninterrupted result; a full disk keeps the previous checkpoint
usable; Lava's forked processes die with a SIGKILLed parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _paths import INTEROP
from fault_harness import command, result, run_job, survivors, trial

from nasflow.train.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("faults")
    out = {"base": base}
    for target in ("search", "train"):
        _, seconds = run_job(command(target, base / f"{target}-reference"))
        out[target] = (result(target, base / f"{target}-reference"), seconds)
    return out


@pytest.mark.parametrize("target, fault", [("search", "journal:3"), ("train", "checkpoint:2")])
def test_kill_inside_a_write_then_resume(references, target, fault):
    reference, seconds = references[target]
    row = trial(target, references["base"], f"{target}-{fault.replace(':', '')}", reference, seconds, fault=fault)
    assert row["killed"], row  # the job did die inside the write
    assert row["equal"] and not row["survivors_after_kill"] and not row["survivors_after_resume"], row
    assert not row["new_shm"], row


def test_full_disk_keeps_the_previous_checkpoint(references, tmp_path):
    out = tmp_path / "train"
    cmd = command("train", out)
    proc = subprocess.run(cmd, env={**os.environ, "NASFLOW_FAULT": "checkpoint:2:enospc"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2 and "No space left on device" in proc.stderr, proc.stderr[-1000:]
    state = load_checkpoint(out / "checkpoint.pt")  # the first epoch's checkpoint, whole
    assert state["kind"] == "train-state" and state["epoch"] in (0, 1) and state["model"]
    assert not list(out.glob("*.tmp"))  # the failed write cleaned up after itself
    run_job(cmd)
    assert result("train", out) == references["train"][0]


def test_lava_processes_die_with_a_killed_parent(tmp_path):
    pytest.importorskip("lava")
    x = tmp_path / "x.npy"
    import numpy as np

    np.save(x, np.ones((3000, 1, 1), np.float32))
    out = tmp_path / "sim"
    proc = subprocess.Popen([sys.executable, "-m", "nasflow.cli", "simulate", str(INTEROP / "lif_norse.nir"),
                             "--backend", "lava", "--input", str(x), "--dt", "1e-4", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not children:
        time.sleep(0.1)
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == proc.pid]
    assert children, "Lava started no process"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.5)
    alive = [p for p in children if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
    assert not alive and not survivors(out), alive


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
