"""Spike-aware (and hardware-aware) fitness and hard budgets (REFERENCE.md §2).

``F(A) = acc(A) · (cost(A) / cost_avg)^λ`` with λ ≤ 0 (exponential discounting, the paper's
default), or ``acc(A) · (1 + λ (cost(A)/cost_avg - 1))`` (linear discounting: the first-order
expansion of the exponential form around ``cost = cost_avg``; the paper's own linear formula was
lost from its text, and it reports both give similar results). ``cost`` names any recorded cost
(``spikes`` by default; hardware costs such as ``energy:loihi`` from ``hwmodels``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Fitness", "parse_budgets"]

REJECTED = -math.inf
ZERO_BUDGETS = ("fixed_acc_drop",)  # limits that may be 0: no accuracy lost at all


@dataclass(frozen=True)
class Fitness:
    """Callable ``fitness(accuracy, costs)``; candidates over a hard budget get ``-inf``."""

    lam: float = -0.08
    cost: str = "spikes"
    cost_avg: float = 1.0
    mode: str = "exponential"  # exponential | linear
    budgets: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("exponential", "linear"):
            raise ValueError(f"fitness mode must be 'exponential' or 'linear', got {self.mode!r}")
        if self.lam > 0:
            raise ValueError(f"fitness λ must be <= 0 (it discounts cost), got {self.lam}")
        if not self.cost_avg > 0:
            raise ValueError(f"fitness cost_avg for {self.cost!r} must be > 0, got {self.cost_avg}")

    def within_budget(self, costs: dict[str, float]) -> bool:
        for name, limit in self.budgets.items():
            if name not in costs:
                raise KeyError(f"budget on {name!r} but the evaluator recorded only {sorted(costs)}")
            if costs[name] > limit:
                return False
        return True

    def __call__(self, accuracy: float, costs: dict[str, float]) -> float:
        if not self.within_budget(costs):
            return REJECTED
        if self.cost not in costs:
            raise KeyError(f"fitness cost {self.cost!r} was not recorded; recorded costs: {sorted(costs)}")
        ratio = costs[self.cost] / self.cost_avg
        if self.mode == "linear":
            return accuracy * (1.0 + self.lam * (ratio - 1.0))
        if ratio <= 0:
            return accuracy if self.lam == 0 else math.inf  # no cost at all: nothing to discount
        return accuracy * ratio**self.lam


def parse_budgets(items: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``["spikes=50000", "energy=1e-6", "cores=128"]`` → ``{"spikes": 5e4, "energy": 1e-6, "cores": 128}``.

    Hardware budgets (``energy`` in joules per sample, ``cores``, ``traffic``, ``latency``) may name their
    chip (``cores:speck=9``); without one the search measures them on its cost's chip. ``<=`` reads as ``=``
    (every budget is an upper limit); an accuracy drop may be limited to 0.
    """
    aliases = {"energy_j": "energy"}
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.removesuffix("<").strip()
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not name or math.isnan(number):
            raise ValueError(f"--budget expects NAME=NUMBER or NAME<=NUMBER (e.g. spikes=50000, energy=1e-6, "
                             f"cores=128, fixed_acc_drop<=0.01), got {item!r}")
        if number < 0 or (number == 0 and name not in ZERO_BUDGETS):
            raise ValueError(f"budget {name}={value} is impossible: it must be > 0"
                             + (" (or 0: no loss at all)" if name in ZERO_BUDGETS else ""))
        out[aliases.get(name, name)] = number
    return out
