"""Files that point outside themselves or promise huge arrays, and two jobs on one run directory: each refused by
name before anything is read or overwritten."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from exporters.core.errors import NIRFormatError
from exporters.netx import NetxFormatError, open_netx
from exporters.nir_io import read_nir, write_nir
from nasflow.runlock import RunDirBusy, hold_run_dir


def _graph() -> nir.NIRGraph:
    return nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([3])}),
                               "w": nir.Linear(weight=np.ones((2, 3))),
                               "out": nir.Output(output_type={"output": np.array([2])})},
                        edges=[("in", "w"), ("w", "out")])


@pytest.fixture
def nir_file(tmp_path):
    return write_nir(tmp_path / "g.nir", _graph())


def test_external_link_is_refused(nir_file, tmp_path):
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["weight"] = np.full((2, 3), 7.0)
    with h5py.File(nir_file, "r+") as f:
        del f["node/nodes/w/weight"]
        f["node/nodes/w/weight"] = h5py.ExternalLink(str(secret), "/weight")
    with pytest.raises(NIRFormatError, match=r"g.nir: /node/nodes/w/weight is an external link to .*secret.h5"):
        read_nir(nir_file)


def test_virtual_dataset_and_external_storage_are_refused(nir_file, tmp_path):
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f["data"] = np.ones((2, 3))
    layout = h5py.VirtualLayout(shape=(2, 3), dtype="f8")
    layout[:] = h5py.VirtualSource(str(src), "data", shape=(2, 3))
    with h5py.File(nir_file, "r+") as f:
        del f["node/nodes/w/weight"]
        f["node/nodes/w"].create_virtual_dataset("weight", layout)
    with pytest.raises(NIRFormatError, match="/node/nodes/w/weight is a virtual dataset"):
        read_nir(nir_file)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.ones(6).tobytes())
    with h5py.File(nir_file, "r+") as f:
        del f["node/nodes/w/weight"]
        f["node/nodes/w"].create_dataset("weight", shape=(2, 3), dtype="f8", external=[(str(raw), 0, 48)])
    with pytest.raises(NIRFormatError, match=r"/node/nodes/w/weight keeps its data in external file\(s\)"):
        read_nir(nir_file)


def test_a_tiny_file_declaring_terabytes_is_refused_unread(nir_file):
    with h5py.File(nir_file, "r+") as f:
        del f["node/nodes/w/weight"]
        f["node/nodes/w"].create_dataset("weight", shape=(2**20, 2**20), dtype="f4", chunks=(64, 64),
                                         compression="gzip")
    assert nir_file.stat().st_size < 1_000_000
    with pytest.raises(NIRFormatError, match=r"/node/nodes/w/weight declares shape \(1048576, 1048576\)"):
        read_nir(nir_file)


def test_soft_links_and_hard_link_cycles_are_refused(nir_file):
    with h5py.File(nir_file, "r+") as f:
        f["node/nodes/w/again"] = h5py.SoftLink("/node/nodes/w/weight")
    with pytest.raises(NIRFormatError, match="is a soft link"):
        read_nir(nir_file)
    with h5py.File(nir_file, "r+") as f:
        del f["node/nodes/w/again"]
        f["node/nodes/w/loop"] = f["node/nodes"]  # a hard link back up the tree
    with pytest.raises(NIRFormatError, match="a cycle of hard links"):
        read_nir(nir_file)


def test_netx_files_pass_the_same_check(tmp_path):
    path = tmp_path / "m.net"
    with h5py.File(path, "w") as f:
        f.create_group("layer/0")
        f["layer/0/shape"] = h5py.ExternalLink("/etc/hostname", "/x")
    with pytest.raises(NetxFormatError, match=r"m.net: /layer/0/shape is an external link to /etc/hostname"):
        open_netx(path)


def test_a_second_job_on_one_directory_is_refused_until_the_first_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from nasflow.runlock import hold_run_dir\n"
        f"with hold_run_dir({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy, match=rf"{tmp_path} is in use by nasflow process {holder.pid}"):
            with hold_run_dir(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)  # SIGKILL skips every finally: the kernel drops the lock
        holder.wait()
    time.sleep(0.1)
    with hold_run_dir(tmp_path) as held:
        assert held == tmp_path and (tmp_path / ".nasflow.lock").read_text().strip() == str(os.getpid())


def test_cli_refuses_a_busy_run_directory(tmp_path, capsys):
    from nasflow.cli import main

    with hold_run_dir(tmp_path / "run"):
        code = main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert code == 2
    assert f"{tmp_path / 'run'} is in use by nasflow process {os.getpid()}" in capsys.readouterr().err


def test_ray_started_by_a_live_driver_is_not_reaped(tmp_path):
    import json

    from nasflow.strategies.ray_executor import reap_stale_ray

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        cmdline = Path(f"/proc/{live.pid}/cmdline")
        while b"sleep" not in cmdline.read_bytes() and time.monotonic() < deadline:  # until its exec has finished
            time.sleep(0.01)
        (tmp_path / "ray.json").write_text(json.dumps({"driver_pid": live.pid, "pids": [live.pid]}))
        with pytest.raises(RunDirBusy, match=rf"Ray was started by nasflow process {live.pid}, which is still"):
            reap_stale_ray(tmp_path)
        assert live.poll() is None  # nothing was killed
    finally:
        live.kill()
        live.wait()
    assert reap_stale_ray(tmp_path) == [] and not (tmp_path / "ray.json").exists()  # a dead driver: cleaned up
