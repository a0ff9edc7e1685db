"""The one search loop: a strategy proposes, an executor evaluates, the journal remembers.

``run_search`` is shared by every search (AutoSNN's supernet search, SNASNet's training-free
search). It owns what all of them need and no strategy should re-implement:

* the journal (``journal.jsonl``, keyed by ``space.key``): a killed search run again with the same
  header replays its deterministic strategy and evaluates only architectures not journaled yet;
* the proposal index: the ``i``-th distinct architecture proposed gets index ``i``, the same on
  every run and resume, so an evaluator can seed per candidate (SNASNet: ``seed·1,000,003 + i``);
* the executor (``Executor``), the progress bar and the timing.

Evaluators implement ``Evaluator``: ``value_name`` (what their value is: ``accuracy``, a score)
and ``evaluate(arch, index) -> (value, costs)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from nasflow.spaces.base import SearchSpace
from nasflow.strategies.evolution import Arch, Candidate, FitnessFn, SearchResult
from nasflow.strategies.journal import JOURNAL_FORMAT, Journal

__all__ = ["Evaluation", "Evaluator", "Executor", "InProcessExecutor", "SearchRun", "Strategy", "run_search"]

Evaluation = tuple[float, dict[str, float]]


class Evaluator(Protocol):
    """Evaluates one architecture. ``index`` is its proposal index (stable across resumes), for
    evaluators that seed per candidate; ``value_name`` names the value in journals and reports."""

    value_name: str

    def evaluate(self, arch: Arch, index: int) -> Evaluation: ...


class Executor(Protocol):
    """Runs evaluations: ``map(fn, archs, indices)`` yields ``fn(arch, index)`` for each pair, *in order*.

    The signature is ``concurrent.futures.Executor.map``'s, so a ``ThreadPoolExecutor`` fits as is.
    Results may be yielded lazily: the runner journals each one as it arrives, so a search killed
    in the middle of a batch keeps what finished. A cluster executor (e.g. Ray: submit
    ``fn`` as remote tasks, then ``ray.get`` them in submission order) only has to keep that order;
    ``fn`` must then be picklable (the evaluator object and its data travel to the workers).
    """

    def map(self, fn: Callable[[Arch, int], Evaluation], archs: Iterable[Arch],
            indices: Iterable[int]) -> Iterable[Evaluation]: ...


class InProcessExecutor:
    """The default executor: evaluates one architecture after the other in this process."""

    def map(self, fn: Callable[[Arch, int], Evaluation], archs: Iterable[Arch],
            indices: Iterable[int]) -> Iterable[Evaluation]:
        return (fn(a, i) for a, i in zip(archs, indices))


class Strategy(Protocol):
    """A search strategy: proposes architectures of ``space`` to the batch ``evaluate`` callable.

    ``evolutionary_search`` (with ``functools.partial`` for its config) and ``random_search`` fit.
    """

    def __call__(self, space: SearchSpace, evaluate: Callable[[Sequence[Arch]], list[Evaluation]],
                 fitness: FitnessFn, *, budget: int, seed: int) -> SearchResult: ...


@dataclass
class SearchRun:
    """What a search did: every evaluated candidate in proposal order, the strategy's top-k, the
    best, and how much came from the journal."""

    space: SearchSpace
    value_name: str
    evaluated: list[Candidate]
    topk: list[Candidate]
    journal_hits: int
    seconds: float

    @property
    def best(self) -> Candidate:
        return max(self.evaluated, key=lambda c: c.fitness)

    @property
    def fresh(self) -> int:
        """Candidates evaluated in this run (not answered by the journal)."""
        return len(self.evaluated) - self.journal_hits

    def row(self, candidate: Candidate) -> dict[str, Any]:
        """A search.json row: the space's spelling of the architecture and the value under its name."""
        return candidate.to_dict(self.space.format(candidate.arch), self.value_name)


class _JournaledBatches:
    """The batch ``evaluate`` a strategy calls: journal first, executor for the rest, progress."""

    def __init__(self, space: SearchSpace, evaluator: Evaluator, journal: Journal, executor: Executor, bar) -> None:
        self.space, self.evaluator, self.journal, self.executor, self.bar = space, evaluator, journal, executor, bar
        self.index: dict[str, int] = {}
        self.best = float("-inf")

    def _index(self, key: str) -> int:
        return self.index.setdefault(key, len(self.index))

    def __call__(self, archs: Sequence[Arch]) -> list[Evaluation]:
        keys = [self.space.key(a) for a in archs]
        out: dict[int, Evaluation] = {}
        todo = []
        for pos, key in enumerate(keys):
            index = self._index(key)
            hit = self.journal.lookup(key)
            if hit is None:
                todo.append((pos, index))
            else:
                out[pos] = hit
                self._tick(hit[0])
        results = self.executor.map(self.evaluator.evaluate, [archs[p] for p, _ in todo], [i for _, i in todo])
        for (pos, index), (value, costs) in zip(todo, results, strict=True):
            self.journal.record(keys[pos], index, float(value), costs)
            out[pos] = (float(value), dict(costs))
            self._tick(float(value))
        return [out[p] for p in range(len(archs))]

    def _tick(self, value: float) -> None:
        self.best = max(self.best, value)
        self.bar.update(1)
        self.bar.set_postfix({f"best_{self.evaluator.value_name}": f"{self.best:.3f}"})


def run_search(
    space: SearchSpace,
    strategy: Strategy,
    evaluator: Evaluator,
    fitness: FitnessFn,
    out_dir: str | Path,
    header: dict[str, Any],
    budget: int,
    seed: int,
    progress: bool | str = True,
    executor: Executor | None = None,
) -> SearchRun:
    """Run (or resume) ``strategy`` over ``space`` with the journal ``out_dir/journal.jsonl``.

    The journal header is ``header`` plus the journal format, the evaluator's ``value_name`` and
    ``space.fingerprint()``: a journal of another space, evaluator or format is refused. ``progress``
    is False (no bar), True or the bar's label.
    """
    journal = Journal(Path(out_dir) / "journal.jsonl", {
        "journal_format": JOURNAL_FORMAT, "value_name": evaluator.value_name, **space.fingerprint(), **header,
    })
    desc = progress if isinstance(progress, str) else f"search {space.name}"
    bar = tqdm(total=budget, desc=desc, disable=not progress)
    evaluate = _JournaledBatches(space, evaluator, journal, executor or InProcessExecutor(), bar)
    t0 = time.perf_counter()
    try:
        result = strategy(space, evaluate, fitness, budget=budget, seed=seed)
    finally:
        bar.close()
    return SearchRun(space, evaluator.value_name, result.evaluated, result.topk, journal.hits,
                     time.perf_counter() - t0)
