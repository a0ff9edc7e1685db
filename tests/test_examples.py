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
