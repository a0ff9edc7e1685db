"""Lava runtime guards: running a connected network with a timeout, and always stopping its processes.

Lava runs its processes in child processes and can block while waiting on them; ``run_network`` runs in a worker
thread, watches the children and, when a clean stop hangs, kills the actors and frees their shared memory.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
import time

from exporters.lava.errors import LavaBackendError

__all__ = ["run_network", "ensure_lava_importable"]

log = logging.getLogger(__name__)


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children()}


def _alive(actor: multiprocessing.Process) -> bool:
    try:
        return actor.is_alive()
    except ValueError:  # closed after a clean join
        return False


def _force_stop(runtime: object) -> None:
    """Kill the runtime's actor processes when a normal stop hangs, and free its shared memory."""
    if runtime is None:
        return
    infra = getattr(runtime, "_messaging_infrastructure", None)
    for actor in getattr(infra, "actors", []) or []:
        if _alive(actor):
            actor.kill()
            multiprocessing.Process.join(actor, 2)  # Lava's SystemProcess.join takes no timeout
    try:
        if infra is not None:
            infra.stop()
    except Exception as err:  # noqa: BLE001 - best effort cleanup; the original error is what matters
        log.warning("Lava shared-memory cleanup failed: %s", err)


def _stop(entry: object, grace_s: float = 10.0) -> None:
    """Stop the runtime of ``entry``; if that hangs (a crashed child), kill the actors."""
    runtime = getattr(entry, "runtime", None)
    if runtime is None:
        return
    before = set(getattr(getattr(runtime, "_messaging_infrastructure", None), "actors", []) or [])
    err: list[BaseException] = []

    def stop() -> None:
        try:
            entry.stop()
        except BaseException as e:  # noqa: BLE001 - reported below
            err.append(e)

    th = threading.Thread(target=stop, daemon=True)
    th.start()
    th.join(grace_s)
    if th.is_alive() or err or any(_alive(a) for a in before):
        _force_stop(runtime)


def _new_children(before: set[int]) -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.pid not in before]


def _kill(procs: list[multiprocessing.Process]) -> None:
    for p in procs:
        if _alive(p):
            p.kill()
    for p in procs:
        multiprocessing.Process.join(p, 2)


def run_network(entry: object, num_steps: int, fixed_point: bool, timeout_s: float = 120.0) -> None:
    """Run a connected Lava network for ``num_steps`` with the nasflow models; always stops the runtime.

    The run (compile, start-up and steps) happens in a worker thread so that the caller can enforce
    ``timeout_s`` and react to Ctrl-C even while Lava blocks. Raises ``TimeoutError`` after ``timeout_s``
    seconds and ``RuntimeError`` when a Lava process fails or dies; in every case the runtime is stopped
    and the child processes this run started are ended.
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from exporters.lava.models import model_map

    cfg = Loihi2SimCfg(select_tag="fixed_pt" if fixed_point else "floating_pt",
                       exception_proc_model_map=model_map(fixed_point))
    before = _children()
    outcome: dict[str, BaseException | bool] = {}

    def work() -> None:
        try:
            entry.run(condition=RunSteps(num_steps=int(num_steps), blocking=True), run_cfg=cfg)
            outcome["ok"] = True
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=work, name="nasflow-lava-run", daemon=True)
    t0 = time.monotonic()
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"Lava run of {num_steps} steps did not finish within {timeout_s:g} s")
            dead = [p for p in _new_children(before) if p.exitcode not in (None, 0)]
            if dead and worker.is_alive():
                raise RuntimeError(f"a Lava process died (exit code {dead[0].exitcode}) during the run")
        if "error" in outcome:
            raise RuntimeError(f"Lava run failed: {outcome['error']}") from outcome["error"]
    finally:
        ok = outcome.get("ok", False)
        if ok or not worker.is_alive():
            # After a failure a clean stop may wait on dead children: short grace, then kill.
            _stop(entry, grace_s=10.0 if ok else 2.0)
        else:  # the worker is still blocked inside Lava: do not call into the runtime from here
            _force_stop(getattr(entry, "runtime", None))
        _kill(_new_children(before))


def ensure_lava_importable() -> None:
    """Let Lava's import-time ``multiprocessing.set_start_method("fork")`` succeed in a process that already
    fixed its start method (any ``get_start_method()`` call does, e.g. from a data loader or a progress bar).

    When that method is ``fork`` too, forgetting it changes nothing; another method cannot host Lava.
    """
    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    current = multiprocessing.get_start_method(allow_none=True)
    if current is None:
        return
    if current != "fork":
        raise LavaBackendError(f"Lava needs the 'fork' multiprocessing start method, this process uses {current!r}")
    multiprocessing.context._default_context._actual_context = None
