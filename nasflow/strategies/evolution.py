"""AutoSNN's evolutionary search (Algorithm 1 and the released code) and the random-search baseline.

The strategy only proposes architectures and keeps pools; evaluation goes through an
``Evaluator`` (any callable taking a list of architectures), and scoring through a fitness
function. A strategy is deterministic for a seed and a given sequence of evaluation results,
so a killed search resumes by replaying it against the journal of finished evaluations
(``nasflow.strategies.journal``): no candidate is evaluated twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Candidate",
    "EvolutionConfig",
    "Evaluator",
    "SearchResult",
    "crossover",
    "evolutionary_search",
    "mutate",
    "random_search",
    "update_topk",
]

Arch = tuple[str, ...]


@dataclass
class Candidate:
    """One evaluated architecture: its metrics (accuracy, costs) and fitness."""

    arch: Arch
    accuracy: float
    costs: dict[str, float]
    fitness: float
    round: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": ",".join(self.arch), "accuracy": self.accuracy, **self.costs, "costs": dict(self.costs),
                "fitness": self.fitness, "round": self.round, **self.extra}


class Evaluator(Protocol):
    """Evaluate architectures: returns ``(accuracy, costs)`` per architecture, in order."""

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


def mutate(arch: Arch, choices: Sequence[str], prob: float, rng: random.Random) -> Arch:
    """Replace each block with probability ``prob`` by a *different* block."""
    out = []
    for block in arch:
        if rng.random() < prob:
            out.append(rng.choice([c for c in choices if c != block]))
        else:
            out.append(block)
    return tuple(out)


def crossover(a: Arch, b: Arch, rng: random.Random) -> Arch:
    """Single-point crossover: the first ``i`` blocks of ``a`` and the rest of ``b``, ``1 <= i < len``."""
    if len(a) != len(b):
        raise ValueError(f"crossover needs parents of equal length, got {len(a)} and {len(b)}")
    i = rng.randint(1, len(a) - 1)
    return a[:i] + b[i:]


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


def _sample(num_blocks: int, choices: Sequence[str], rng: random.Random) -> Arch:
    return tuple(rng.choice(choices) for _ in range(num_blocks))


def _score(
    archs: list[Arch], evaluate: Evaluator, fitness: Callable[[float, dict[str, float]], float], round_: int
) -> list[Candidate]:
    results = evaluate(archs)
    if len(results) != len(archs):
        raise RuntimeError(f"evaluator returned {len(results)} results for {len(archs)} architectures")
    return [Candidate(a, acc, dict(costs), fitness(acc, costs), round_) for a, (acc, costs) in zip(archs, results)]


def evolutionary_search(
    num_blocks: int,
    choices: Sequence[str],
    evaluate: Evaluator,
    fitness: Callable[[float, dict[str, float]], float],
    config: EvolutionConfig | None = None,
    seed: int = 0,
    on_round: Callable[[int, list[Candidate]], None] | None = None,
) -> SearchResult:
    """Algorithm 1: rounds of mutation + crossover from the top-k pool, random fill, dedup, budget."""
    cfg = config or EvolutionConfig()
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
                    if admit(mutate(rng.choice(topk).arch, choices, cfg.mutation_prob, rng)):
                        break
            if len(topk) >= 2:
                for _ in range(cfg.num_crossovers):
                    for _ in range(cfg.max_attempts):
                        a, b = rng.sample(topk, 2)
                        if admit(crossover(a.arch, b.arch, rng)):
                            break
        attempts = 0
        while len(pool) < room and attempts < cfg.max_attempts * room:
            admit(_sample(num_blocks, choices, rng))
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
    num_blocks: int,
    choices: Sequence[str],
    evaluate: Evaluator,
    fitness: Callable[[float, dict[str, float]], float],
    budget: int = 200,
    seed: int = 0,
    batch: int = 20,
    topk: int = 10,
) -> SearchResult:
    """"WS + random search": ``budget`` distinct random architectures scored with the same fitness."""
    rng = random.Random(seed)
    seen: set[Arch] = set()
    evaluated: list[Candidate] = []
    pool_topk: list[Candidate] = []
    total = len(choices) ** num_blocks
    while len(evaluated) < min(budget, total):
        pool: list[Arch] = []
        while len(pool) < min(batch, budget - len(evaluated), total - len(seen)):
            arch = _sample(num_blocks, choices, rng)
            if arch not in seen and arch not in pool:
                pool.append(arch)
        scored = _score(pool, evaluate, fitness, len(evaluated) // batch)
        seen.update(pool)
        evaluated.extend(scored)
        pool_topk = update_topk(pool_topk, scored, topk)
    return SearchResult(evaluated, pool_topk)
