"""Multi-objective search: NSGA-II over any ``SearchSpace``, with pymoo's selection and nasflow's own operators.

The trade-off a deployment engineer asks for (accuracy against energy, latency or cores on a chip, under hard chip
limits) is a Pareto front, not one scalarised winner. ``nsga2_search`` proposes architectures generation by
generation: pymoo's NSGA-II does the selection (non-dominated sorting, crowding distance, binary tournaments, and
constraint domination for budgets: a feasible candidate beats an infeasible one, infeasible ones are ranked by how
far over budget they are). pymoo was chosen over Optuna's NSGA-II sampler because its operators are pluggable:
sampling, mutation and crossover are the space's own (``space.sample``/``mutate``/``crossover``), as in AutoSNN's
evolution, where Optuna would see an architecture as independent categorical parameters. Evaluation goes through
the runner's batch ``evaluate`` (journal, executor), one generation per batch in proposal order, so a seed gives
one search whatever executes it, and a killed search resumes by replay.

Objectives are names of what an evaluation records: ``accuracy`` (the evaluator's value, maximised) or any cost
(``energy:loihi``, ``latency:loihi``, ``cores:loihi``, ``spikes``, ...; minimised). ``front`` and ``pick`` read a
finished search: the non-dominated feasible candidates, and one of them by a rule (``knee``, ``max-accuracy``,
``min-<objective>``, or ``accuracy>=X``: the cheapest in the first other objective above an accuracy floor); an
objective may be named without its chip (``min-energy``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nasflow.spaces.base import SearchSpace
from nasflow.strategies.evolution import Arch, Candidate, Evaluator, FitnessFn, SearchResult

__all__ = ["NSGA2Config", "front", "hypervolume", "non_dominated", "nsga2_search", "objective_matrix",
           "objective_named", "parse_objectives", "parse_pick", "pick"]

VALUE = "accuracy"  # the evaluator's value in objective lists (maximised)


@dataclass(frozen=True)
class NSGA2Config:
    """NSGA-II's settings: objectives (first is usually ``accuracy``), budgets as constraints, population."""

    objectives: tuple[str, ...] = ("accuracy", "energy:loihi")
    budgets: tuple[tuple[str, float], ...] = ()
    population: int = 20
    mutation_prob: float = 0.2
    max_attempts: int = 100

    def __post_init__(self) -> None:
        if len(self.objectives) < 2 or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"NSGA-II needs two or more distinct objectives, got {list(self.objectives)}")
        if self.population < 4:
            raise ValueError(f"population must be at least 4, got {self.population}")


def parse_objectives(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"accuracy,energy:loihi"`` (or a list) → a tuple of objective names."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(s.strip() for s in items if s.strip())


def _value(c: Candidate, name: str) -> float:
    if name == VALUE:
        return c.value
    if name not in c.costs:
        raise KeyError(f"objective {name!r} is not among the recorded costs ({', '.join(sorted(c.costs))})")
    return c.costs[name]


def objective_matrix(cands: Sequence[Candidate], objectives: Sequence[str]) -> np.ndarray:
    """Rows of objectives to minimise (accuracy negated)."""
    return np.array([[-_value(c, o) if o == VALUE else _value(c, o) for o in objectives] for c in cands], float)


def _violation(c: Candidate, budgets: Sequence[tuple[str, float]]) -> np.ndarray:
    return np.array([_value(c, k) - limit for k, limit in budgets], float)


def front(cands: Sequence[Candidate], objectives: Sequence[str],
          budgets: Sequence[tuple[str, float]] = ()) -> list[Candidate]:
    """The non-dominated candidates among those within every budget (proposal order kept)."""
    feasible = [c for c in cands if np.all(_violation(c, budgets) <= 0)]
    return [feasible[i] for i in non_dominated(objective_matrix(feasible, objectives))]


def non_dominated(minimise: np.ndarray) -> list[int]:
    """Row indices (ascending) of the rows no other row dominates, every column minimised; equal rows all stay.
    The one Pareto rule of searches and reports (pymoo's non-dominated sorting)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    if len(minimise) == 0:
        return []
    return sorted(int(i) for i in NonDominatedSorting().do(np.asarray(minimise, float), only_non_dominated_front=True))


def hypervolume(points: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> float:
    """Hypervolume of minimisation ``points`` after mapping ``ideal → 0`` and ``nadir → 1`` per objective,
    against the reference point ``1.1`` (points beyond the nadir count for nothing)."""
    from pymoo.indicators.hv import HV

    if len(points) == 0:
        return 0.0
    scaled = (np.asarray(points, float) - ideal) / (nadir - ideal)
    return float(HV(ref_point=np.full(scaled.shape[1], 1.1))(scaled))


def objective_named(name: str, objectives: Sequence[str]) -> str:
    """``name`` among ``objectives``, also without its chip (``energy`` for ``energy:loihi``) when that is unique."""
    if name in objectives:
        return name
    hits = [o for o in objectives if o.split(":")[0] == name]
    if len(hits) != 1:
        raise ValueError(f"{name!r} names {'no' if not hits else 'more than one'} objective of "
                         f"{', '.join(objectives)}")
    return hits[0]


def parse_pick(rule: str, objectives: Sequence[str]) -> tuple[str, str | float | None]:
    """``rule`` as ``(kind, argument)``: ``("knee", None)``, ``("max-accuracy", None)``, ``("min", objective)`` or
    ``("floor", accuracy)``. Raises ``ValueError`` naming the rule (the one parser for configs and ``pick``)."""
    if rule in ("knee", "max-accuracy"):
        return rule, None
    if rule.startswith("min-"):
        return "min", objective_named(rule[4:], objectives)
    if rule.startswith("accuracy>="):
        try:
            return "floor", float(rule[len("accuracy>="):])
        except ValueError:
            pass
    raise ValueError(f"pick {rule!r}: use knee, max-accuracy, min-OBJECTIVE (one of {', '.join(objectives)}, chip "
                     "optional) or accuracy>=X")


def pick(cands: Sequence[Candidate], objectives: Sequence[str], rule: str,
         budgets: Sequence[tuple[str, float]] = ()) -> Candidate:
    """One point of the front by ``rule`` (``parse_pick``): ``knee`` (closest to the ideal point after scaling each
    objective to [0, 1] over the front), ``max-accuracy``, ``min-<objective>`` or ``accuracy>=X`` (the lowest first
    non-accuracy objective among points at or above accuracy X). Raises ``ValueError`` naming the rule when nothing
    fits."""
    kind, arg = parse_pick(rule, objectives)
    pts = front(cands, objectives, budgets)
    if not pts:
        raise ValueError("no candidate is within every budget, so the front is empty; relax a budget")
    if kind == "knee":
        mat = objective_matrix(pts, objectives)
        span = np.where(np.ptp(mat, axis=0) > 0, np.ptp(mat, axis=0), 1.0)
        return pts[int(np.argmin(np.linalg.norm((mat - mat.min(axis=0)) / span, axis=1)))]
    if kind == "max-accuracy":
        return max(pts, key=lambda c: c.value)
    if kind == "min":
        return min(pts, key=lambda c: _value(c, str(arg)))
    other = next(o for o in objectives if o != VALUE)
    ok = [c for c in pts if c.value >= float(arg)]
    if not ok:
        best = max(c.value for c in pts)
        raise ValueError(f"pick {rule!r}: no point of the front reaches accuracy {float(arg):g} (best {best:.4f})")
    return min(ok, key=lambda c: _value(c, other))


def _column(archs: Sequence[Arch]) -> np.ndarray:
    """Architectures as an ``(n, 1)`` object array (numpy would unpack tuple architectures into columns)."""
    out = np.empty((len(archs), 1), dtype=object)
    for i, a in enumerate(archs):
        out[i, 0] = a
    return out


def _operators(space: SearchSpace, rng: random.Random, cfg: NSGA2Config):
    """pymoo operators that draw, cross and mutate through the space (architectures as object variables)."""
    from pymoo.core.crossover import Crossover
    from pymoo.core.duplicate import ElementwiseDuplicateElimination
    from pymoo.core.mutation import Mutation
    from pymoo.core.sampling import Sampling

    class SpaceSampling(Sampling):
        def _do(self, problem, n_samples, **kwargs):
            return _column([space.sample(rng) for _ in range(n_samples)])

    class SpaceCrossover(Crossover):
        def __init__(self) -> None:
            super().__init__(n_parents=2, n_offsprings=1)

        def _do(self, problem, X, **kwargs):
            out = np.empty((1, X.shape[1], 1), dtype=object)
            for k in range(X.shape[1]):
                out[0, k, 0] = space.crossover(X[0, k, 0], X[1, k, 0], rng)
            return out

    class SpaceMutation(Mutation):
        def _do(self, problem, X, **kwargs):
            for k in range(len(X)):
                X[k, 0] = space.mutate(X[k, 0], rng, cfg.mutation_prob)
            return X

    class SameArch(ElementwiseDuplicateElimination):
        def is_equal(self, a, b) -> bool:
            return space.key(a.X[0]) == space.key(b.X[0])

    return SpaceSampling(), SpaceCrossover(), SpaceMutation(), SameArch()


def nsga2_search(space: SearchSpace, evaluate: Evaluator, fitness: FitnessFn, budget: int = 200, seed: int = 0,
                 config: NSGA2Config | None = None,
                 on_generation: Callable[[int, list[Candidate]], None] | None = None) -> SearchResult:
    """NSGA-II (see the module docstring) until ``budget`` distinct architectures are evaluated.

    Children that repeat an evaluated architecture are mutated again (up to ``max_attempts``, then drawn afresh),
    so every evaluation is a new architecture. ``fitness`` scores candidates for the runner's rows only; the
    selection uses the objectives and budgets. The result's ``topk`` is the final front.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.termination import get_termination

    cfg = config or NSGA2Config()
    rng = random.Random(seed)
    sampling, crossover, mutation, dedup = _operators(space, rng, cfg)
    problem = Problem(n_var=1, n_obj=len(cfg.objectives), n_ieq_constr=len(cfg.budgets), vtype=object)
    algorithm = NSGA2(pop_size=cfg.population, sampling=sampling, crossover=crossover, mutation=mutation,
                      eliminate_duplicates=dedup)
    algorithm.setup(problem, termination=get_termination("n_eval", 10**9), seed=seed)
    seen: set = set()
    evaluated: list[Candidate] = []
    generation = 0
    while len(evaluated) < min(budget, space.size()):
        pop = algorithm.ask()
        room = min(budget, space.size()) - len(evaluated)
        archs = []
        for ind in pop:
            arch = ind.X[0]
            for _ in range(cfg.max_attempts):
                if space.key(arch) not in seen and all(space.key(arch) != space.key(a) for a in archs):
                    break
                arch = space.mutate(arch, rng, cfg.mutation_prob)
            else:
                arch = space.sample(rng)
            archs.append(arch)
        archs = archs[:room]
        pop = pop[: len(archs)]
        pop.set("X", _column(archs))
        results = evaluate(archs)
        scored = [Candidate(a, v, dict(c), fitness(v, c), generation) for a, (v, c) in zip(archs, results)]
        seen.update(space.key(a) for a in archs)
        evaluated.extend(scored)
        pop.set("F", objective_matrix(scored, cfg.objectives))
        if cfg.budgets:
            pop.set("G", np.array([_violation(c, cfg.budgets) for c in scored]))
        algorithm.tell(infills=pop)
        if on_generation:
            on_generation(generation, front(evaluated, cfg.objectives, cfg.budgets))
        generation += 1
    return SearchResult(evaluated, front(evaluated, cfg.objectives, cfg.budgets))
