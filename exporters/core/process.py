"""Children die with their parent: forked helpers (Lava's processes, data-loader workers) must not outlive a job
that is SIGKILLed, which runs no ``finally`` and cannot stop them itself.

``die_with_parent()`` registers a fork hook: every child this process forks from Python starts a daemon thread
that polls its parent pid and exits the child (``os._exit``) once the parent is gone. Polling the pid, rather
than Linux's ``PR_SET_PDEATHSIG``, ties the child to the parent *process*: the death signal fires when the forking
*thread* ends, and Lava forks from a worker thread that ends before its processes are stopped. Ray's processes are
started by exec, not fork; ``nasflow.strategies.ray_executor`` records and reaps them instead.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["die_with_parent"]

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
    """Install the fork hook once per process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    os.register_at_fork(after_in_child=lambda: _after_fork_in_child(os.getppid()))
