"""The Ray executor on a real two-node Ray cluster (two raylets on this machine): the same search as in process,
a SIGKILLed worker (same result), a SIGKILLed driver (the same command completes it, re-evaluating only what was in
flight), and no Ray process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nasflow.search import AutoSNNSearchConfig, run_autosnn_search
from nasflow.strategies.ray_executor import RAY_RECORD, RayExecutor, _cmdline

ray = pytest.importorskip("ray")

TINY = dict(dataset="digits", supernet_epochs=1, channels=4, steps=2, evaluations=12, rounds=3, progress=False)


def _ray_pids() -> set[int]:
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            line = _cmdline(int(p.name))
            if "raylet" in line or "gcs_server" in line:
                out.add(int(p.name))
    return out


@pytest.fixture(scope="module")
def supernet(tmp_path_factory) -> Path:
    """One tiny supernet every search here reuses (so they compare evaluations, not training)."""
    d = tmp_path_factory.mktemp("supernet")
    run_autosnn_search(AutoSNNSearchConfig(**TINY), d)
    return d


@pytest.fixture(scope="module")
def local_search(supernet, tmp_path_factory) -> dict:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_autosnn_search(AutoSNNSearchConfig(**TINY), tmp_path_factory.mktemp("local"), supernet_dir=supernet)
    finally:
        torch.set_num_threads(threads)


def _same(a: dict, b: dict) -> None:
    assert [r["arch"] for r in a["evaluated"]] == [r["arch"] for r in b["evaluated"]]
    assert [r["accuracy"] for r in a["evaluated"]] == [r["accuracy"] for r in b["evaluated"]]
    assert [r["spikes"] for r in a["evaluated"]] == [r["spikes"] for r in b["evaluated"]]
    assert a["best"] == b["best"]


def test_two_node_cluster_gives_the_in_process_search(supernet, local_search, tmp_path):
    from ray.cluster_utils import Cluster

    before = _ray_pids()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        cfg = AutoSNNSearchConfig(**TINY, executor="ray", ray_address=cluster.address, workers=2,
                                  threads_per_worker=1)
        out = run_autosnn_search(cfg, tmp_path / "ray", supernet_dir=supernet)
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
    _same(local_search, out)
    assert not (tmp_path / "ray" / RAY_RECORD).exists()  # it joined a cluster: nothing of its own to record
    time.sleep(1)
    assert _ray_pids() <= before


def test_killed_worker_is_replaced_and_its_candidates_requeued(tmp_path):
    class Slow:  # defined here so that Ray ships it by value (workers cannot import test modules)
        """Deterministic evaluations that take a while, so a worker can be killed mid-map."""

        def evaluate(self, arch, index):
            time.sleep(0.3)
            return float(arch) * 2.0, {"index": float(index)}

    before = _ray_pids()
    ex = RayExecutor(workers=2, threads_per_worker=1, run_dir=tmp_path)
    try:
        victim = ex.worker_pids()[0]
        threading.Timer(1.0, lambda: os.kill(victim, signal.SIGKILL)).start()
        out = list(ex.map(Slow().evaluate, list(range(16)), list(range(16))))
        assert out == [(2.0 * a, {"index": float(a)}) for a in range(16)]  # in order, complete, unchanged
        assert ex.replaced == 1 and ex.requeued >= 1
        assert victim not in ex.worker_pids()
        record = json.loads((tmp_path / RAY_RECORD).read_text())
    finally:
        ex.close()
    assert not (tmp_path / RAY_RECORD).exists()
    time.sleep(1)
    assert not any(_cmdline(p) for p in record["pids"] if p != os.getpid())  # everything it started has stopped
    assert _ray_pids() <= before


N_FIXED = 24  # fixed-point costs (lava-emu per candidate) make each evaluation last long enough to be cut off


@pytest.fixture(scope="module")
def local_fixed(supernet, tmp_path_factory) -> dict:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_autosnn_search(AutoSNNSearchConfig(**{**TINY, "evaluations": N_FIXED}, fixed_point=True),
                                  tmp_path_factory.mktemp("local_fixed"), supernet_dir=supernet)
    finally:
        torch.set_num_threads(threads)


def _journaled(path: Path) -> int:
    return path.read_text().count('"candidate"') if path.exists() else 0


def test_worker_killed_mid_search_changes_nothing(supernet, local_fixed, tmp_path):
    out = tmp_path / "run"
    killed: list[int] = []

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _journaled(out / "journal.jsonl") < 3:
            time.sleep(0.02)
        workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                   and "ray::EvalWorker" in _cmdline(int(p.name))]
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(_journaled(out / "journal.jsonl"))

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    cfg = AutoSNNSearchConfig(**{**TINY, "evaluations": N_FIXED}, fixed_point=True, executor="ray", workers=2,
                              threads_per_worker=1)
    res = run_autosnn_search(cfg, out, supernet_dir=supernet)
    killer.join()
    assert killed and killed[0] < N_FIXED  # a worker died mid-search
    assert _journaled(out / "journal.jsonl") == N_FIXED  # every candidate once
    _same(local_fixed, res)


def test_killed_driver_resumes_with_the_same_command(supernet, local_fixed, tmp_path):
    n, local = N_FIXED, local_fixed
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nasflow.cli", "search", "autosnn", "--dataset", "digits", "--supernet", str(supernet),
           "--supernet-epochs", "1", "--channels", "4", "--steps", "2", "--evaluations", str(n), "--seed", "0",
           "--fixed-point", "--executor", "ray", "--workers", "2", "--threads-per-worker", "1", "--out", str(out),
           "--no-progress"]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count('"candidate"') >= 3:
            break
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    journaled = journal.read_text().count('"candidate"')
    assert 3 <= journaled < n
    started = json.loads((out / RAY_RECORD).read_text())["pids"]  # left behind by the killed driver
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = json.loads((out / "search.json").read_text())
    assert resumed["journal_hits"] == journaled  # nothing journaled was evaluated again
    assert journal.read_text().count('"candidate"') == n  # each candidate journaled once
    _same(local, resumed)
    time.sleep(1)
    assert not any(_cmdline(p) for p in started)  # the second run stopped what the killed driver started
    assert not (out / RAY_RECORD).exists()
