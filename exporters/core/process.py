"""Children die with their parent: forked helpers (Lava's processes, data-loader workers) must not outlive a job
that is SIGKILLed, which runs no ``finally`` and cannot stop them itself.

``die_with_parent()`` registers a fork hook: every child this process forks from Python starts a daemon thread
that polls its parent pid and exits the child (``os._exit``) once the parent is gone. Polling the pid, rather
than Linux's ``PR_SET_PDEATHSIG``, ties the child to the parent *process*: the death signal fires when the forking
*thread* ends, and Lava forks from a worker thread that ends before its processes are stopped. Ray's processes are
started by exec, not fork; ``nasflow.strategies.ray_executor`` records and reaps them instead. ``scratch_dir``
gives a backend run its temporary folder and removes the ones killed runs left behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator

__all__ = ["die_with_parent", "scratch_dir"]

_installed = False
POLL_S = 0.5


def _watch(parent: int) -> None:
    while True:
        time.sleep(POLL_S)
        if os.getppid() != parent:
            os._exit(1)


def _after_fork_in_child(parent: int) -> None:
    threading.Thread(target=_watch, args=(parent,), name="nasflow-parent-watch", daemon=True).start()


def die_with_parent() -> None:
    """Install the fork hook once per process (idempotent), and remove scratch folders of dead processes."""
    global _installed
    if _installed:
        return
    _installed = True
    _sweep_stale_scratch("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    os.register_at_fork(after_in_child=lambda: _after_fork_in_child(os.getppid()))


_SCRATCH_PREFIX = "nasflow-"


def _sweep_stale_scratch(root: str) -> None:
    """Remove ``nasflow-<kind>-<pid>-*`` scratch folders whose process is gone (SIGKILL skipped their cleanup)."""
    import shutil

    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) >= 4 and name.startswith(_SCRATCH_PREFIX) and parts[2].isdigit() \
                and not os.path.exists(f"/proc/{parts[2]}"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[str]:
    """A private scratch folder for one backend run, in ``/dev/shm`` where it exists (memory, not disk), named
    ``nasflow-<kind>-<pid>-*`` and removed afterwards; ones left by killed processes are removed first."""
    root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    _sweep_stale_scratch(root or tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix=f"{_SCRATCH_PREFIX}{kind}-{os.getpid()}-", dir=root) as tmp:
        yield tmp
