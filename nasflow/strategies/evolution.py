"""AutoSNN's evolutionary search (Algorithm 1 and the released code) and the random-search baseline.

Both work on any ``SearchSpace`` (``nasflow.spaces.base``): they draw, mutate and cross
architectures only through the space, so one strategy serves AutoSNN's block sequences and
SNASNet's cells alike. A strategy only proposes architectures and keeps pools; evaluation goes
through a batch ``evaluate`` callable (the search runner's, which journals and executes), and
scoring through a fitness function. A strategy is deterministic for a seed and a given sequence of
evaluation results, so a killed search resumes by replaying it against the journal of finished
evaluations (``nasflow.strategies.runner``): no candidate is evaluated twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from nasflow.spaces.base import SearchSpace

__all__ = [
    "Candidate",
    "EvolutionConfig",
    "Evaluator",
    "SearchResult",
    "evolutionary_search",
    "random_search",
    "update_topk",
]

Arch = Hashable
FitnessFn = Callable[[float, dict[str, float]], float]


@dataclass
class Candidate:
    """One evaluated architecture: its evaluation value (accuracy, a training-free score...), costs
    and fitness."""

    arch: Arch
    value: float
    costs: dict[str, float]
    fitness: float
    round: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, arch: str | None = None, value_name: str = "accuracy") -> dict[str, Any]:
        """A search.json row; ``arch`` is the space's spelling (default: block names joined by commas)."""
        text = arch if arch is not None else ",".join(self.arch)  # type: ignore[arg-type]
        return {"arch": text, value_name: self.value, **self.costs, "costs": dict(self.costs),
                "fitness": self.fitness, "round": self.round, **self.extra}


class Evaluator(Protocol):
    """Evaluate architectures: returns ``(value, costs)`` per architecture, in order."""

    def __call__(self, archs: Sequence[Arch]) -> list[tuple[float, dict[str, float]]]: ...


@dataclass(frozen=True)
class EvolutionConfig:
    """Algorithm 1's parameters (defaults: the released code; the paper's text says 10 rounds)."""

    rounds: int = 20
    pool_size: int = 20  # evaluation pool P_e
    topk: int = 10  # top-k pool P_k
    num_mutations: int = 10
    num_crossovers: int = 10
    mutation_prob: float = 0.2
    budget: int = 200  # maximum number of evaluated architectures
    max_attempts: int = 100  # tries per generated child before giving up (dedup may reject many)

    def __post_init__(self) -> None:
        bad = [k for k in ("rounds", "pool_size", "topk", "budget", "max_attempts") if getattr(self, k) < 1]
        if not 0.0 <= self.mutation_prob <= 1.0:
            bad.append("mutation_prob")
        if self.num_mutations < 0 or self.num_crossovers < 0:
            bad.append("num_mutations/num_crossovers")
        if bad:
            raise ValueError(f"invalid evolution setting(s): {', '.join(bad)}")


@dataclass
class SearchResult:
    """Every evaluated candidate in evaluation order, the final top-k pool and the best candidate."""

    evaluated: list[Candidate]
    topk: list[Candidate]

    @property
    def best(self) -> Candidate:
        return max(self.evaluated, key=lambda c: c.fitness)


def update_topk(topk: list[Candidate], new: Sequence[Candidate], k: int) -> list[Candidate]:
    """Merge ``new`` into the top-k pool: the k highest fitness values, ties kept in arrival order."""
    merged = {c.arch: c for c in [*topk, *new]}
    ranked = sorted(merged.values(), key=lambda c: -c.fitness)  # sorted() is stable
    return ranked[:k]


class _Admitter:
    """Adds new, not yet evaluated architectures to an evaluation pool of bounded size (dedup)."""

    def __init__(self, pool: list[Arch], seen: set[Arch], room: int) -> None:
        self.pool, self.seen, self.room = pool, seen, room

    def __call__(self, arch: Arch) -> bool:
        if arch in self.seen or arch in self.pool or len(self.pool) >= self.room:
            return False
        self.pool.append(arch)
        return True


def _score(archs: list[Arch], evaluate: Evaluator, fitness: FitnessFn, round_: int) -> list[Candidate]:
    results = evaluate(archs)
    if len(results) != len(archs):
        raise RuntimeError(f"evaluator returned {len(results)} results for {len(archs)} architectures")
    return [Candidate(a, acc, dict(costs), fitness(acc, costs), round_) for a, (acc, costs) in zip(archs, results)]


def evolutionary_search(
    space: SearchSpace,
    evaluate: Evaluator,
    fitness: FitnessFn,
    config: EvolutionConfig | None = None,
    seed: int = 0,
    on_round: Callable[[int, list[Candidate]], None] | None = None,
    budget: int | None = None,
) -> SearchResult:
    """Algorithm 1: rounds of mutation + crossover from the top-k pool, random fill, dedup, budget.

    ``budget`` (when given) replaces ``config.budget``, so the runner can hand every strategy the
    same budget argument.
    """
    cfg = config or EvolutionConfig()
    if budget is not None:
        cfg = replace(cfg, budget=budget)
    rng = random.Random(seed)
    seen: set[Arch] = set()
    evaluated: list[Candidate] = []
    topk: list[Candidate] = []
    for round_ in range(cfg.rounds):
        room = min(cfg.pool_size, cfg.budget - len(evaluated))
        if room <= 0:
            break
        pool: list[Arch] = []
        admit = _Admitter(pool, seen, room)
        if topk:
            for _ in range(cfg.num_mutations):
                for _ in range(cfg.max_attempts):
                    if admit(space.mutate(rng.choice(topk).arch, rng, cfg.mutation_prob)):
                        break
            if len(topk) >= 2:
                for _ in range(cfg.num_crossovers):
                    for _ in range(cfg.max_attempts):
                        a, b = rng.sample(topk, 2)
                        if admit(space.crossover(a.arch, b.arch, rng)):
                            break
        attempts = 0
        while len(pool) < room and attempts < cfg.max_attempts * room:
            admit(space.sample(rng))
            attempts += 1
        if not pool:
            break  # the space is exhausted
        scored = _score(pool, evaluate, fitness, round_)
        seen.update(pool)
        evaluated.extend(scored)
        topk = update_topk(topk, scored, cfg.topk)
        if on_round:
            on_round(round_, topk)
    return SearchResult(evaluated, topk)


def random_search(
    space: SearchSpace,
    evaluate: Evaluator,
    fitness: FitnessFn,
    budget: int = 200,
    seed: int = 0,
    batch: int = 20,
    topk: int = 10,
    max_misses: int | None = None,
) -> SearchResult:
    """"WS + random search": ``budget`` distinct random architectures scored with the same fitness.

    Architectures are the first ``budget`` distinct draws of ``space.sample`` from
    ``random.Random(seed)``, evaluated in batches of ``batch`` in draw order. Where distinct draws
    can name the same architecture (SNASNet's pruned cells) the space may hold fewer than
    ``space.size()``; the search stops early after ``max_misses`` repeated draws in all
    (default ``200·budget``) and returns what it found.
    """
    rng = random.Random(seed)
    seen: set[Arch] = set()
    evaluated: list[Candidate] = []
    pool_topk: list[Candidate] = []
    total = space.size()
    misses, miss_limit = 0, max_misses if max_misses is not None else 200 * budget
    while len(evaluated) < min(budget, total) and misses <= miss_limit:
        pool: list[Arch] = []
        while len(pool) < min(batch, budget - len(evaluated), total - len(seen)) and misses <= miss_limit:
            arch = space.sample(rng)
            if arch not in seen and arch not in pool:
                pool.append(arch)
            else:
                misses += 1
        if not pool:
            break
        scored = _score(pool, evaluate, fitness, len(evaluated) // batch)
        seen.update(pool)
        evaluated.extend(scored)
        pool_topk = update_topk(pool_topk, scored, topk)
    return SearchResult(evaluated, pool_topk)
