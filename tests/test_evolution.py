"""AutoSNN evolutionary search pieces against hand-worked examples (REFERENCE.md §2)."""

from __future__ import annotations

import math
import random

import pytest

from nasflow.evaluators.fitness import Fitness, parse_budgets
from nasflow.spaces.autosnn import BLOCK_CHOICES, crossover, mutate, parse_arch
from nasflow.spaces.autosnn_space import AutoSNNSpace
from nasflow.strategies import (
    Candidate,
    EvolutionConfig,
    evolutionary_search,
    random_search,
    update_topk,
)


def test_fitness_formula_by_hand() -> None:
    f = Fitness(lam=-0.08, cost="spikes", cost_avg=100_000)
    # 0.9 · (50,000 / 100,000)^-0.08 = 0.9 · 2^0.08 = 0.9 · 1.057018...
    assert f(0.9, {"spikes": 50_000}) == pytest.approx(0.9 * 2**0.08)
    assert f(0.9, {"spikes": 200_000}) == pytest.approx(0.9 * 2**-0.08)
    assert Fitness(lam=0.0, cost_avg=5.0)(0.7, {"spikes": 123.0}) == 0.7
    lin = Fitness(lam=-0.24, cost_avg=100.0, mode="linear")
    assert lin(0.8, {"spikes": 150.0}) == pytest.approx(0.8 * (1 - 0.24 * 0.5))
    # Any recorded cost can drive the fitness, not only spikes.
    assert Fitness(lam=-0.5, cost="energy_j", cost_avg=4e-9)(1.0, {"energy_j": 1e-9, "spikes": 1}) == pytest.approx(2.0)


def test_budgets_reject_candidates_and_parse() -> None:
    f = Fitness(lam=-0.08, cost_avg=100.0, budgets={"spikes": 150.0})
    assert f(0.99, {"spikes": 151.0}) == -math.inf
    assert f(0.5, {"spikes": 150.0}) > 0
    assert parse_budgets(["spikes=5e4", "energy=1e-6", "cores=128"]) == {"spikes": 5e4, "energy": 1e-6, "cores": 128}
    for bad in ("spikes", "spikes=lots", "=3", "cores=0", "energy=-1"):
        with pytest.raises(ValueError, match="budget"):
            parse_budgets([bad])
    with pytest.raises(KeyError, match="cores"):
        Fitness(budgets={"cores": 2})(0.5, {"spikes": 1.0})
    with pytest.raises(ValueError, match="λ"):
        Fitness(lam=0.1)


class _ScriptedRandom(random.Random):
    """random.Random whose random() replays a script (to hand-work mutation)."""

    def __init__(self, draws: tuple[float, ...]) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)

    def getrandbits(self, k: int) -> int:  # keeps choice() on getrandbits, not on the scripted random()
        return super().getrandbits(k)


def test_mutation_replaces_each_block_with_prob_by_a_different_block() -> None:
    arch = ("skip", "SCB_k3", "SCB_k5", "SRB_k3", "SRB_k5")
    rng = _ScriptedRandom((0.5, 0.1, 0.9, 0.19, 0.2))  # blocks 2 and 4 fall under p = 0.2
    child = mutate(arch, BLOCK_CHOICES, 0.2, rng)
    assert [c == a for c, a in zip(child, arch)] == [True, False, True, False, True]
    # Over many draws a mutated block is never replaced by itself.
    rng = random.Random(1)
    for _ in range(500):
        child = mutate(arch, BLOCK_CHOICES, 1.0, rng)
        assert all(c != a for c, a in zip(child, arch))
    assert mutate(arch, BLOCK_CHOICES, 0.0, rng) == arch


def test_crossover_is_single_point_with_both_parents_present() -> None:
    a = ("skip",) * 5
    b = ("SRB_k5",) * 5
    points = set()
    rng = random.Random(0)
    for _ in range(300):
        child = crossover(a, b, rng)
        i = child.index("SRB_k5")
        assert child == a[:i] + b[i:]
        points.add(i)
    assert points == {1, 2, 3, 4}  # never a copy of one parent


def _cand(name: str, fit: float) -> Candidate:
    return Candidate((name,), fit, {"spikes": 1.0}, fit)


def test_topk_pool_update_by_hand() -> None:
    pool = [_cand("a", 0.9), _cand("b", 0.5)]
    new = [_cand("c", 0.7), _cand("d", 0.95), _cand("e", 0.5)]
    merged = update_topk(pool, new, k=3)
    assert [c.arch[0] for c in merged] == ["d", "a", "c"]
    # Ties keep arrival order: b (already in the pool) before e.
    assert [c.arch[0] for c in update_topk(pool, new, k=5)] == ["d", "a", "c", "b", "e"]


class _CountingEvaluator:
    """A deterministic stand-in *objective* (the strategy is what is under test): accuracy rises with
    the number of SRB blocks, spikes with the number of non-skip blocks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, archs):
        out = []
        for a in archs:
            self.calls.append(a)
            acc = 0.5 + 0.1 * sum(b.startswith("SRB") for b in a)
            spikes = 1000.0 * (1 + sum(b != "skip" for b in a))
            out.append((acc, {"spikes": spikes}))
        return out


def test_search_space_sizes() -> None:
    assert len(BLOCK_CHOICES) ** 5 == 3125
    assert len(BLOCK_CHOICES) ** 8 == 390_625
    assert parse_arch("all-SRB_k3") == ("SRB_k3",) * 5


def test_evolution_dedups_respects_budget_and_beats_random() -> None:
    ev = _CountingEvaluator()
    fit = Fitness(lam=0.0, cost_avg=1.0)
    cfg = EvolutionConfig(rounds=20, budget=120)
    space = AutoSNNSpace("snn1")
    res = evolutionary_search(space, ev, fit, cfg, seed=0)
    assert len(ev.calls) == len(set(ev.calls)) == len(res.evaluated) <= 120
    assert len(res.topk) == 10 and res.best.fitness == max(c.fitness for c in res.evaluated)
    rnd = random_search(space, _CountingEvaluator(), fit, budget=120, seed=0)
    assert len(rnd.evaluated) == 120 == len({c.arch for c in rnd.evaluated})
    assert res.best.fitness >= rnd.best.fitness
    # Same seed, same results: the property resume relies on.
    again = evolutionary_search(space, _CountingEvaluator(), fit, cfg, seed=0)
    assert [c.arch for c in again.evaluated] == [c.arch for c in res.evaluated]


class _TinySpace(AutoSNNSpace):
    """AutoSNN's operators on a space too small for a macro: ``n`` slots of ``choices``."""

    def __init__(self, n: int, choices: tuple[str, ...]) -> None:
        super().__init__("snn1", choices)
        self.num_blocks = n


def test_evolution_stops_when_space_is_exhausted() -> None:
    ev = _CountingEvaluator()
    tiny = _TinySpace(2, ("skip", "SCB_k3"))
    res = evolutionary_search(tiny, ev, Fitness(lam=0.0), EvolutionConfig(budget=100), seed=3)
    assert sorted(c.arch for c in res.evaluated) == sorted(
        [("skip", "skip"), ("skip", "SCB_k3"), ("SCB_k3", "skip"), ("SCB_k3", "SCB_k3")]
    )


# Golden sequences: produced by running the pre-space API on this objective and these settings,
# ``evolutionary_search(5, BLOCK_CHOICES, ...)`` and ``random_search(5, BLOCK_CHOICES, ...)`` (before the
# strategies took a SearchSpace), and printing ``[",".join(c.arch) for c in result.evaluated]``.
GOLDEN_EVOLUTION = [
    "SRB_k3,SRB_k5,SRB_k3,SRB_k3,SRB_k5", "SRB_k5,SCB_k3,SCB_k3,SRB_k5,SRB_k3", "SRB_k5,SCB_k3,skip,SRB_k3,SCB_k5",
    "SCB_k3,skip,SRB_k5,skip,SRB_k5", "SRB_k3,SRB_k3,SRB_k5,SCB_k3,SRB_k5", "skip,SRB_k5,skip,skip,skip",
    "SRB_k5,SCB_k3,SCB_k3,SCB_k5,SRB_k3", "SRB_k3,skip,SRB_k5,SCB_k3,SRB_k5", "SRB_k3,SCB_k3,SRB_k3,SRB_k5,SRB_k5",
    "SCB_k3,SRB_k3,SRB_k5,SCB_k3,SRB_k5", "SRB_k3,SRB_k3,SRB_k5,SRB_k5,SRB_k3", "SCB_k5,skip,SCB_k5,SCB_k5,skip",
    "SRB_k3,SCB_k5,SRB_k3,SRB_k3,SRB_k5", "SRB_k3,SCB_k3,SRB_k5,SRB_k5,SRB_k3", "SRB_k5,SCB_k3,SCB_k5,SRB_k5,SCB_k3",
    "SRB_k3,SRB_k5,SRB_k3,SRB_k5,SRB_k5", "SRB_k3,SRB_k3,SRB_k5,SCB_k3,SRB_k3", "skip,skip,skip,SCB_k3,SRB_k5",
    "SCB_k5,SRB_k3,SRB_k5,SRB_k5,SRB_k3", "SCB_k3,SRB_k3,SRB_k5,SRB_k5,skip",
]
GOLDEN_RANDOM = [
    "SRB_k5,SCB_k5,SCB_k5,SRB_k5,skip", "SRB_k3,SCB_k3,skip,SCB_k3,skip", "SCB_k5,SRB_k3,SCB_k3,SRB_k3,SRB_k5",
    "skip,SRB_k5,SCB_k3,skip,SCB_k3", "SRB_k3,SCB_k5,SCB_k3,SRB_k3,SCB_k3", "skip,SCB_k3,SRB_k5,SRB_k5,SRB_k3",
    "SCB_k3,SCB_k3,skip,skip,SCB_k3", "SCB_k3,SCB_k3,SCB_k3,SCB_k5,SCB_k5", "SCB_k3,SRB_k5,SCB_k3,SCB_k3,SCB_k3",
    "SRB_k3,SCB_k5,skip,SCB_k5,SRB_k3", "SCB_k3,SCB_k3,SCB_k5,skip,SCB_k5", "SCB_k5,SRB_k5,SRB_k5,skip,SRB_k5",
]


def test_strategies_on_a_space_propose_what_they_proposed_before() -> None:
    space = AutoSNNSpace("snn1")
    fit = Fitness(lam=-0.08, cost_avg=3000.0)
    cfg = EvolutionConfig(rounds=4, pool_size=6, topk=4, num_mutations=3, num_crossovers=2, budget=20)
    evo = evolutionary_search(space, _CountingEvaluator(), fit, cfg, seed=11)
    assert [space.format(c.arch) for c in evo.evaluated] == GOLDEN_EVOLUTION
    rnd = random_search(space, _CountingEvaluator(), fit, budget=12, seed=5, batch=5)
    assert [space.format(c.arch) for c in rnd.evaluated] == GOLDEN_RANDOM
