"""What every study script in ``benchmarks/`` shares: running the real CLI into a log, mean ± sd, and writing
``study.json`` / ``study.md``. Scripts run as ``python benchmarks/NAME.py``, so this module is found beside them."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["mean_sd", "run_nasflow", "write_study"]


def run_nasflow(args: list[str], log: Path) -> None:
    """``python -m nasflow.cli ARGS``, its output appended to ``log``; a failure raises ``CalledProcessError``."""
    print("nasflow " + " ".join(args), file=sys.stderr)
    with open(log, "a") as fh:
        subprocess.run([sys.executable, "-m", "nasflow.cli", *args], stdout=fh, stderr=subprocess.STDOUT, check=True)


def mean_sd(xs: list[float], digits: int = 4) -> str:
    """``mean ± sd`` of ``xs`` (the value alone for one run)."""
    if len(xs) > 1:
        return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"
    return f"{xs[0]:.{digits}f}"


def write_study(study: Path, res: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> str:
    """Write ``study.json`` and ``study.md`` (``markdown(res)``) into ``study``; returns the Markdown."""
    (study / "study.json").write_text(json.dumps(res, indent=2))
    text = markdown(res)
    (study / "study.md").write_text(text)
    return text
