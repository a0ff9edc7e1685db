"""Evaluate a search's candidates on a Ray cluster: the ``Executor`` of ``nasflow.strategies.runner`` across machines.

``RayExecutor.map(fn, archs, indices)`` yields ``fn(arch, index)`` in the order given, as the in-process executor
does, whatever order the workers finish in, so a strategy sees the same results and makes the same proposals. Its
pieces:

* **Workers** are Ray actors (``workers`` of them, ``threads_per_worker`` torch threads each, set explicitly: Ray
  sets ``OMP_NUM_THREADS=1`` in workers). ``fn`` is a bound method of an evaluator (the supernet evaluator holds the
  trained supernet and the validation data): the evaluator is shipped once per worker, not once per candidate.
* **Faults**: a worker that dies (killed, out of memory, its node gone) is replaced and the candidates it held are
  queued again; nothing else changes. A killed driver loses only the candidates in flight: the runner journals each
  result (fsynced) as it is yielded, so the same command evaluates at most those again.
* **Ray's lifetime**: without ``address`` nasflow starts a local Ray (no dashboard, a bounded object store) and
  shuts it down on ``close`` and at exit. The processes it started are recorded in ``run_dir/ray.json``; the next
  run in that directory stops what a killed driver left behind (``reap_stale_ray``). With ``address`` it joins an
  existing cluster and leaves it running.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from nasflow.runlock import RunDirBusy

__all__ = ["RayExecutor", "open_executor", "reap_stale_ray"]

RAY_RECORD = "ray.json"
OBJECT_STORE_BYTES = 256 * 1024**2
_RAY_PROCESS_MARKERS = ("raylet", "gcs_server", "ray::", "ray/_private", "ray/dashboard", "ray/autoscaler",
                        "default_worker.py", "log_monitor.py", "monitor.py")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def reap_stale_ray(run_dir: str | Path) -> list[int]:
    """Kill the Ray processes a previous driver in ``run_dir`` started and never stopped (it was killed); returns
    the pids killed. Only processes whose command line is still a Ray one are touched (pids are reused)."""
    path = Path(run_dir) / RAY_RECORD
    if not path.exists():
        return []
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        record = {}
    driver = int(record.get("driver_pid", 0) or 0)
    if driver and driver != os.getpid() and "python" in _cmdline(driver):
        raise RunDirBusy(f"{run_dir}: Ray was started by nasflow process {driver}, which is still running; "
                         "wait for it or stop it before running in this directory again")
    killed = []
    for pid in record.get("pids", []):
        line = _cmdline(int(pid))
        if line and any(m in line for m in _RAY_PROCESS_MARKERS):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
    path.unlink(missing_ok=True)
    return killed


def _started_pids() -> list[int]:
    """Pids of the processes ``ray.init`` started in this driver (GCS, raylet, monitors)."""
    import ray

    node = getattr(ray._private.worker.global_worker, "node", None)
    pids: list[int] = []
    for infos in getattr(node, "all_processes", {}).values():
        for info in infos:
            proc = getattr(info, "process", None)
            if proc is not None and getattr(proc, "pid", None):
                pids.append(int(proc.pid))
    return pids


def _worker_class():
    import ray

    @ray.remote(max_restarts=0)
    class EvalWorker:
        """Holds evaluators shipped to it and evaluates candidates with a fixed number of torch threads."""

        def __init__(self, threads: int) -> None:
            import torch

            os.environ["OMP_NUM_THREADS"] = str(threads)
            torch.set_num_threads(threads)
            self.owners: dict[str, Any] = {}

        def pid(self) -> int:
            return os.getpid()

        def load(self, key: str, owner: Any) -> None:
            self.owners[key] = owner

        def run(self, key: str, method: str, arch: Any, index: int) -> Any:
            owner = self.owners[key]
            return (getattr(owner, method) if method else owner)(arch, index)

    return EvalWorker


class RayExecutor:
    """An ``Executor`` whose workers are Ray actors (see the module docstring).

    ``address``: a running cluster (``ray start --head`` prints it; ``"auto"`` finds the local one); None starts a
    local Ray with ``workers · threads_per_worker`` CPUs. ``run_dir`` records what was started.
    """

    def __init__(self, workers: int = 2, threads_per_worker: int = 1, address: str | None = None,
                 run_dir: str | Path | None = None, inflight_per_worker: int = 1) -> None:
        if workers < 1 or threads_per_worker < 1 or inflight_per_worker < 1:
            raise ValueError(f"workers ({workers}), threads per worker ({threads_per_worker}) and in-flight tasks "
                             f"per worker ({inflight_per_worker}) must be at least 1")
        import ray

        self.workers, self.threads, self.address = workers, threads_per_worker, address
        self.inflight = inflight_per_worker
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.started = False
        self.replaced = 0  # workers replaced after a failure
        self.requeued = 0  # candidates evaluated again because their worker died
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            reap_stale_ray(self.run_dir)
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=workers * threads_per_worker, include_dashboard=False,
                         object_store_memory=OBJECT_STORE_BYTES, log_to_driver=False, configure_logging=False)
                self.started = True
                self._record()
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        self._cls = _worker_class()
        self._actors = [self._new_actor() for _ in range(workers)]
        self._owners: dict[int, tuple[Any, str, Any]] = {}  # id(owner) → (owner, key, object ref)
        self._loaded: dict[int, set[str]] = collections.defaultdict(set)  # id(actor) → owner keys it holds
        atexit.register(self.close)

    def _record(self) -> None:
        if self.run_dir is None:
            return
        path = self.run_dir / RAY_RECORD
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"driver_pid": os.getpid(), "pids": _started_pids()}))
        os.replace(tmp, path)

    def _new_actor(self):
        return self._cls.options(num_cpus=self.threads).remote(self.threads)

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for fault tests and monitoring)."""
        import ray

        return ray.get([a.pid.remote() for a in self._actors])

    def _owner(self, fn: Callable) -> tuple[str, str]:
        import ray

        owner = getattr(fn, "__self__", None)
        method = getattr(fn, "__name__", "") if owner is not None else ""
        owner = fn if owner is None else owner
        if id(owner) not in self._owners:
            self._owners[id(owner)] = (owner, f"owner{len(self._owners)}", ray.put(owner))
        return self._owners[id(owner)][1], method

    def _submit(self, actor, key: str, method: str, arch: Any, index: int):
        if key not in self._loaded[id(actor)]:
            ref = next(r for _, k, r in self._owners.values() if k == key)
            import ray

            ray.get(actor.load.remote(key, ref))  # raises here what stops a worker from unpickling the evaluator
            self._loaded[id(actor)].add(key)
        return actor.run.remote(key, method, arch, index)

    def map(self, fn: Callable[[Any, int], Any], archs: Iterable[Any], indices: Iterable[int]) -> Iterator[Any]:
        """``fn(arch, index)`` for each pair, yielded in the given order (see the module docstring)."""
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        key, method = self._owner(fn)
        todo = collections.deque(enumerate(zip(archs, indices)))
        done: dict[int, Any] = {}
        running: dict[Any, tuple[Any, int, Any, int]] = {}  # future → (actor, position, arch, index)
        busy: collections.Counter = collections.Counter()
        nxt = 0
        while todo or running or nxt in done:
            while nxt in done:
                yield done.pop(nxt)
                nxt += 1
            for actor in self._actors:
                while todo and busy[id(actor)] < self.inflight:
                    pos, (arch, index) = todo.popleft()
                    running[self._submit(actor, key, method, arch, index)] = (actor, pos, arch, index)
                    busy[id(actor)] += 1
            if not running:
                continue
            ready, _ = ray.wait(list(running), num_returns=1)
            fut = ready[0]
            actor, pos, arch, index = running.pop(fut)
            busy[id(actor)] -= 1
            try:
                done[pos] = ray.get(fut)
            except (RayActorError, ActorDiedError, ActorUnavailableError):
                lost = [(pos, arch, index)] + [running.pop(f)[1:] for f in
                                               [f for f, v in running.items() if v[0] is actor]]
                todo.extend((p, (a, i)) for p, a, i in lost)
                todo = collections.deque(sorted(todo, key=lambda e: e[0]))  # the earliest proposals first
                self.requeued += len(lost)
                busy.pop(id(actor), None)
                self._replace(actor)

    def _replace(self, actor) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(actor)
        self._loaded.pop(id(actor), None)
        self._actors[self._actors.index(actor)] = self._new_actor()
        self.replaced += 1
        if self.started:
            self._record()

    def close(self) -> None:
        """Stop the workers and, if this executor started Ray, Ray itself (also called at exit)."""
        import ray

        atexit.unregister(self.close)
        if not ray.is_initialized():
            return
        for actor in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self._actors = []
        if self.started:
            ray.shutdown()
            deadline = time.monotonic() + 10
            record = self.run_dir / RAY_RECORD if self.run_dir is not None else None
            pids = json.loads(record.read_text()).get("pids", []) if record is not None and record.exists() else []
            while time.monotonic() < deadline and any(_cmdline(int(p)) for p in pids):
                time.sleep(0.1)
            if record is not None:
                reap_stale_ray(self.run_dir)  # anything ray.shutdown left running
        self.started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def open_executor(kind: str, run_dir: str | Path, address: str | None = None, workers: int = 2,
                  threads_per_worker: int = 1) -> Iterator[Any]:
    """The executor a search config names (``local``: in this process; ``ray``: a ``RayExecutor``), closed after."""
    if kind == "local":
        from nasflow.strategies.runner import InProcessExecutor

        yield InProcessExecutor()
        return
    if kind != "ray":
        raise ValueError(f"unknown executor {kind!r}; use local or ray")
    executor = RayExecutor(workers, threads_per_worker, address, run_dir)
    try:
        yield executor
    finally:
        executor.close()
