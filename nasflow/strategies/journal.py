"""Append-only JSON-lines journal of evaluated candidates, and a caching executor for resume.

A killed search is resumed by running the (deterministic) strategy again with the same seed while
``JournaledEvaluator`` answers already-journaled architectures from the file; only new ones reach
the real evaluator. A last line cut off mid-write is dropped (with a warning); any other
unreadable line is an error naming the file and line.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["JournalError", "JournaledEvaluator", "read_journal"]


class JournalError(ValueError):
    """The journal file is corrupt (not just cut off at its end) or belongs to another search."""


def read_journal(path: str | Path, header: dict[str, Any] | None = None) -> dict[tuple[str, ...], dict[str, Any]]:
    """Entries by architecture; checks the header line against ``header`` when given."""
    path = Path(path)
    if not path.exists():
        return {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    entries: dict[tuple[str, ...], dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not raw.endswith(b"\n"):
                warnings.warn(f"{path}: dropping a last line cut off mid-write (line {number})", stacklevel=2)
                break
            raise JournalError(f"{path}, line {number}: not valid JSON; the journal is corrupt") from None
        if row.get("type") == "header":
            if header is not None and {k: row.get(k) for k in header} != header:
                diff = sorted(k for k in header if row.get(k) != header[k])
                raise JournalError(f"{path} belongs to a different search (differs in {', '.join(diff)})")
            continue
        if "arch" not in row or "accuracy" not in row or "costs" not in row:
            raise JournalError(f"{path}, line {number}: an entry needs arch, accuracy and costs")
        entries[tuple(row["arch"].split(","))] = row
    return entries


class JournaledEvaluator:
    """Wraps an evaluator: journaled architectures are answered from the file, new ones are
    evaluated and appended (flushed and fsynced) before they are returned."""

    def __init__(
        self,
        evaluate: Callable[[Sequence[tuple[str, ...]]], list[tuple[float, dict[str, float]]]],
        path: str | Path,
        header: dict[str, Any],
    ) -> None:
        self.evaluate = evaluate
        self.path = Path(path)
        self.header = header
        self.cache = read_journal(self.path, header)
        self.hits = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._append({"type": "header", **header})

    def _repair_tail(self) -> None:
        # Cut a partial last line so the next append starts on a fresh line.
        if self.path.exists():
            raw = self.path.read_bytes()
            if raw and not raw.endswith(b"\n"):
                self.path.write_bytes(raw[: raw.rfind(b"\n") + 1])

    def _append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def __call__(self, archs: Sequence[tuple[str, ...]]) -> list[tuple[float, dict[str, float]]]:
        out = []
        for arch in archs:
            arch = tuple(arch)
            if arch in self.cache:
                row = self.cache[arch]
                self.hits += 1
            else:
                acc, costs = self.evaluate([arch])[0]
                row = {"type": "candidate", "arch": ",".join(arch), "accuracy": acc, "costs": costs}
                self._append(row)
                self.cache[arch] = row
            out.append((float(row["accuracy"]), {k: float(v) for k, v in row["costs"].items()}))
        return out
