"""Every script in examples/ runs (with tiny settings) and writes its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_digits_example(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_digits.py"), "--epochs", "1", "--channels", "4",
         "--steps", "2", "--arch", "SCB_k3,skip,skip,skip,skip", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["schema_version"] == 1 and result["test_samples"] == 360
    assert json.loads(proc.stdout)["test_accuracy"] == result["test_accuracy"]


def _run(script: str, *args: str, timeout: int = 600) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_search_autosnn_example(tmp_path: Path) -> None:
    out = _run("search_autosnn.py", "--out", str(tmp_path / "s"), "--channels", "4", "--steps", "2",
               "--supernet-epochs", "1", "--evaluations", "6")
    best = json.loads(out)
    assert best["energy_j"] > 0 and len(best["arch"].split(",")) == 5 and best["evaluated"] == 6


def test_export_and_simulate_example(tmp_path: Path) -> None:
    out = json.loads(_run("export_and_simulate.py", "--epochs", "1", "--samples", "6", "--out", str(tmp_path / "e")))
    # Lava floating point reproduces the torch reference spike for spike.
    assert out["lava_min_precision"] >= 0.999 and out["lava_min_recall"] >= 0.999
    assert out["lava_accuracy"] == out["torch_accuracy"]
    assert (tmp_path / "e" / "model.nir").exists()


def test_hardware_cost_example() -> None:
    rows = json.loads(_run("hardware_cost.py", "--samples", "2", "--steps", "4"))
    assert rows["speck"]["fits"] and rows["loihi"]["energy_per_sample_j"] > 0
    assert rows["loihi-sanafe"]["energy_per_sample_j"] != rows["loihi"]["energy_per_sample_j"]


def test_main_job_example(tmp_path: Path) -> None:
    out = _run("main_job.py", "--out", str(tmp_path / "m"), "--channels", "4", "--steps", "2",
               "--supernet-epochs", "1", "--evaluations", "4", "--epochs", "1", "--lava-samples", "4", timeout=900)
    assert "report:" in out and (tmp_path / "m" / "report.html").exists()


def test_peer_dialects_example(tmp_path: Path) -> None:
    _run("peer_dialects.py", "--out", str(tmp_path / "d"))
    rows = json.loads((tmp_path / "d" / "dialects.json").read_text())["cases"]
    assert len(rows) == 9 and all(r["wrong_with_dialect"] == 0 for r in rows)
    assert all(r["wrong_as_plain_nir"] != 0 for r in rows)  # a count or the reason the plain reading refuses
    assert (tmp_path / "d" / "dialects.md").read_text().count("\n") == 11
