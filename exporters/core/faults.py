"""Fault injection at named write sites, for the tests and ``benchmarks/fault_injection.py`` (stdlib only).

``NASFLOW_FAULT="SITE:N[:ACTION]"`` makes the ``N``-th pass through ``fault_point(SITE)`` in this process either
SIGKILL the process (``kill``, the default: what a crash, the OOM killer or a pulled plug does in the middle of a
write) or raise ``OSError(ENOSPC)`` (``enospc``: a full disk). Sites sit inside every durable write:
``journal`` (a search journal line half written), ``checkpoint`` (the new checkpoint written, not yet renamed
into place) and ``json`` (a result file's temporary written, not yet renamed). Without the variable a fault point
costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal

__all__ = ["FAULT_ENV", "SITES", "fault_point"]

FAULT_ENV = "NASFLOW_FAULT"
SITES = ("journal", "checkpoint", "json")
_counts: dict[str, int] = {}


def _spec() -> tuple[str, int, str] | None:
    text = os.environ.get(FAULT_ENV)
    if not text:
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in SITES or not parts[1].isdigit() or \
            (len(parts) == 3 and parts[2] not in ("kill", "enospc")):
        raise ValueError(f"{FAULT_ENV}={text!r}: expected SITE:N[:kill|enospc] with SITE one of {', '.join(SITES)}")
    return parts[0], int(parts[1]), parts[2] if len(parts) == 3 else "kill"


def fault_point(site: str) -> None:
    """Count a pass through ``site``; on the configured pass, die or fail as ``NASFLOW_FAULT`` says."""
    spec = _spec()
    if spec is None or spec[0] != site:
        return
    _counts[site] = _counts.get(site, 0) + 1
    if _counts[site] != spec[1]:
        return
    if spec[2] == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (injected by {FAULT_ENV} at {site} #{spec[1]})")
    os.kill(os.getpid(), signal.SIGKILL)
