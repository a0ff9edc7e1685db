"""NSGA-II over a search space: hand-worked fronts, picks and hypervolume; determinism for a seed; budgets as
constraints; config errors named."""

from __future__ import annotations

import random

import numpy as np
import pytest

from nasflow.config import ConfigError
from nasflow.search import AutoSNNSearchConfig
from nasflow.spaces.autosnn_space import AutoSNNSpace
from nasflow.strategies.evolution import Candidate, random_search
from nasflow.strategies.nsga2 import NSGA2Config, front, hypervolume, nsga2_search, pick

OBJ = ("accuracy", "energy:loihi")


def _c(name: str, acc: float, energy: float, cores: float = 1.0) -> Candidate:
    return Candidate(name, acc, {"energy:loihi": energy, "cores:loihi": cores}, acc)


CANDS = [_c("a", 0.80, 5.0), _c("b", 0.85, 4.0), _c("c", 0.70, 1.0), _c("d", 0.90, 9.0, cores=30),
         _c("e", 0.60, 3.0)]


def test_front_and_picks_by_hand():
    # b dominates a, c dominates e (more accurate and cheaper): the front is b, c, d
    assert [c.arch for c in front(CANDS, OBJ)] == ["b", "c", "d"]
    budget = (("cores:loihi", 24.0),)
    assert [c.arch for c in front(CANDS, OBJ, budget)] == ["b", "c"]  # d is over the cores budget
    assert pick(CANDS, OBJ, "max-accuracy").arch == "d"
    assert pick(CANDS, OBJ, "max-accuracy", budget).arch == "b"
    assert pick(CANDS, OBJ, "min-energy:loihi").arch == "c" == pick(CANDS, OBJ, "min-energy").arch
    assert pick(CANDS, OBJ, "accuracy>=0.8").arch == "b"
    # knee: scaled over the front (acc 0.70..0.90, energy 1..9), distances to the ideal (0.90, 1):
    # b (0.25, 0.375) → 0.451; c (1, 0) → 1; d (0, 1) → 1
    assert pick(CANDS, OBJ, "knee").arch == "b"
    with pytest.raises(ValueError, match="no point of the front reaches accuracy 0.95"):
        pick(CANDS, OBJ, "accuracy>=0.95")
    with pytest.raises(ValueError, match="the front is empty; relax a budget"):
        pick(CANDS, OBJ, "knee", (("cores:loihi", 0.5),))


def test_hypervolume_by_hand():
    # two points (0, 0.5) and (0.5, 0) against the reference (1.1, 1.1): 0.66 + 0.66 − 0.36 = 0.96
    hv = hypervolume(np.array([[0.0, 0.5], [0.5, 0.0]]), ideal=np.zeros(2), nadir=np.ones(2))
    assert hv == pytest.approx(0.96)
    # the same after the scaling: ideal (−1, 0) and nadir (0, 10) map (−1, 5) and (−0.5, 0) to the points above
    assert hypervolume(np.array([[-1.0, 5.0], [-0.5, 0.0]]), np.array([-1.0, 0.0]), np.array([0.0, 10.0])) == \
        pytest.approx(0.96)


def _synthetic(archs):
    """A deterministic two-objective landscape over AutoSNN's blocks: bigger kernels are more accurate and cost
    more; 'skip' is cheap and weak."""
    out = []
    for a in archs:
        gain = sum({"skip": 0.0, "SCB_k3": 0.6, "SCB_k5": 0.8, "SRB_k3": 0.7, "SRB_k5": 0.9}.get(b, 0.5) for b in a)
        noise = random.Random(",".join(a)).random()
        out.append((gain / 5 + 0.05 * noise, {"energy:loihi": gain ** 2 + noise, "cores:loihi": 5 + 3 * gain}))
    return out


def test_nsga2_is_deterministic_distinct_and_feasible_first():
    space = AutoSNNSpace("snn1")
    cfg = NSGA2Config(objectives=OBJ, budgets=(("cores:loihi", 14.0),), population=10)
    a = nsga2_search(space, _synthetic, lambda v, c: v, budget=60, seed=3, config=cfg)
    b = nsga2_search(space, _synthetic, lambda v, c: v, budget=60, seed=3, config=cfg)
    assert [c.arch for c in a.evaluated] == [c.arch for c in b.evaluated]
    assert len({c.arch for c in a.evaluated}) == 60  # every evaluation a new architecture
    assert a.topk and all(c.costs["cores:loihi"] <= 14.0 for c in a.topk)
    assert sorted(c.round for c in a.evaluated)[-1] == 5  # six generations of ten
    rnd = random_search(space, _synthetic, lambda v, c: v, budget=60, seed=3)
    ideal, nadir = np.array([-1.0, 0.0]), np.array([0.0, 25.0])

    def hv(cands):
        pts = front(cands, OBJ, cfg.budgets)
        return hypervolume(np.array([[-c.value, c.costs["energy:loihi"]] for c in pts]), ideal, nadir)

    assert hv(a.evaluated) >= hv(rnd.evaluated)  # on this smooth landscape selection beats blind sampling


def test_nsga2_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="objectives/population: NSGA-II needs two or more distinct objectives"):
        AutoSNNSearchConfig(strategy="nsga2", objectives="accuracy")
    with pytest.raises(ConfigError, match="include accuracy"):
        AutoSNNSearchConfig(strategy="nsga2", objectives="spikes,energy:loihi")
    with pytest.raises(ConfigError, match="pick 'fastest'"):
        AutoSNNSearchConfig(strategy="nsga2", cost="energy:loihi", pick="fastest")
    with pytest.raises(ConfigError, match="unknown cost 'power:loihi'"):
        AutoSNNSearchConfig(strategy="nsga2", objectives="accuracy,power:loihi")
    with pytest.raises(ConfigError, match="pick 'accuracy>=high'"):
        AutoSNNSearchConfig(strategy="nsga2", cost="energy:loihi", pick="accuracy>=high")
    cfg = AutoSNNSearchConfig(strategy="nsga2", cost="energy:loihi", objectives="accuracy, latency:loihi",
                              pick="min-latency")
    assert cfg.objective_list() == ("accuracy", "latency:loihi") and cfg.hardware_chips() == ["loihi"]
