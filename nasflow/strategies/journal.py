"""Append-only JSON-lines journal of evaluated candidates: what makes a killed search resumable.

Line 1 is a header (``{"type": "header", ...}``) describing the search; a journal is reused only
by a search with the same header. Every other line is one candidate,
``{"type": "candidate", "index": i, "arch": KEY, "value": v, "costs": {...}}``, where ``KEY`` is
``space.key(arch)``, ``i`` the proposal index and ``value`` the evaluation value whose name
(``accuracy``, a training-free score...) the header's ``value_name`` gives. A last line cut off
mid-write is dropped (with a warning); any other unreadable line is an error naming the file and line.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from exporters.core.faults import fault_point

__all__ = ["JOURNAL_FORMAT", "Journal", "JournalError", "read_journal"]

# Version of the line layout above. Journals of format 1 stored the value under "accuracy".
JOURNAL_FORMAT = 2


class JournalError(ValueError):
    """The journal file is corrupt (not just cut off at its end) or belongs to another search."""


def _check_header(path: Path, row: dict[str, Any], header: dict[str, Any]) -> None:
    if "journal_format" in header and row.get("journal_format") != header["journal_format"]:
        raise JournalError(
            f"{path.parent}: {path.name} was written in journal format {row.get('journal_format', 1)}, this "
            f"nasflow reads format {header['journal_format']} (candidates keep their value under 'value'); "
            "use a new run directory, or move the old journal away to search again there")
    if {k: row.get(k) for k in header} != header:
        diff = sorted(k for k in header if row.get(k) != header[k])
        raise JournalError(f"{path} belongs to a different search (differs in {', '.join(diff)})")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_entry(path: Path, number: int, row: dict[str, Any]) -> None:
    """An entry's fields have the types the search reads back (a number value, numeric costs, a string key)."""
    costs = row["costs"]
    if not isinstance(row["arch"], str) or not _number(row["value"]) or not isinstance(costs, dict) \
            or not all(isinstance(k, str) and _number(v) for k, v in costs.items()) \
            or not (_number(row.get("index", 0)) and float(row.get("index", 0)).is_integer()):
        raise JournalError(f"{path}, line {number}: an entry needs a string arch, a numeric value, numeric costs "
                           "and an integer index; the journal is corrupt")


def read_journal(path: str | Path, header: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Entries by architecture key; checks the header line against ``header`` when given."""
    path = Path(path)
    if not path.exists():
        return {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    entries: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if number == len(lines) and not raw.endswith(b"\n"):
                warnings.warn(f"{path}: dropping a last line cut off mid-write (line {number})", stacklevel=2)
                break
            raise JournalError(f"{path}, line {number}: not valid JSON; the journal is corrupt") from None
        if not isinstance(row, dict):
            raise JournalError(f"{path}, line {number}: a {type(row).__name__}, not an entry; the journal is corrupt")
        if row.get("type") == "header":
            if header is not None:
                _check_header(path, row, header)
            continue
        if "arch" not in row or "value" not in row or "costs" not in row:
            old = " (an older journal format: it names the value 'accuracy')" if "accuracy" in row else ""
            raise JournalError(f"{path}, line {number}: an entry needs arch, value and costs{old}")
        _check_entry(path, number, row)
        entries[str(row["arch"])] = row
    return entries


class Journal:
    """The journal of one search directory: finished evaluations by key, and a durable append.

    Appends are flushed and fsynced before they return, so a candidate is either fully journaled
    or re-evaluated on resume.
    """

    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = header
        self.entries = read_journal(self.path, header)
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
        line = json.dumps(row) + "\n"
        with open(self.path, "a") as f:
            f.write(line[: len(line) // 2])
            f.flush()
            fault_point("journal")  # a kill here leaves half a line, which the next run drops
            f.write(line[len(line) // 2:])
            f.flush()
            os.fsync(f.fileno())

    def lookup(self, key: str) -> tuple[float, dict[str, float]] | None:
        """The journaled ``(value, costs)`` of ``key`` (counted as a hit), or None."""
        row = self.entries.get(key)
        if row is None:
            return None
        self.hits += 1
        return float(row["value"]), {k: float(v) for k, v in row["costs"].items()}

    def record(self, key: str, index: int, value: float, costs: dict[str, float]) -> None:
        """Append one finished evaluation."""
        row = {"type": "candidate", "index": index, "arch": key, "value": value, "costs": dict(costs)}
        self._append(row)
        self.entries[key] = row
