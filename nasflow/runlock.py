"""One job per run directory: an exclusive ``flock`` on ``DIR/.nasflow.lock`` held while a run writes there.

Two searches (or trainings, or main jobs) resuming the same directory would interleave journal lines and overwrite
each other's checkpoints. ``hold_run_dir`` takes a non-blocking exclusive lock; a second run is refused with the
holder's pid. The lock lives on an open file, not in the file's content: the kernel drops it when the holder exits
in any way, SIGKILL included, so ``--resume`` after a kill is never blocked by a stale lock file. The descriptor is
close-on-exec (Python's default), so programs the run executes do not inherit it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_NAME", "RunDirBusy", "hold_run_dir"]

LOCK_NAME = ".nasflow.lock"


class RunDirBusy(ValueError):
    """Another live nasflow process holds the run directory."""


@contextlib.contextmanager
def hold_run_dir(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir`` (created if needed) for the duration of the block; raises ``RunDirBusy`` naming the holder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirBusy(f"{run_dir} is in use by nasflow process {holder}; wait for it to finish (or stop it) "
                             "before running there again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield run_dir
    finally:
        os.close(fd)  # releases the lock
