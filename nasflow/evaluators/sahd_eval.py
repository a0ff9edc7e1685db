"""SAHD (or Hamming-kernel) scoring of candidate networks as a search-runner evaluator.

Candidate ``i`` (its proposal index) is initialised with torch seed ``seed·1,000,003 + i`` before
it is built and scored, so every score is reproducible and independent of resume, order of
evaluation or executor. The evaluation value is the score (``value_name`` is the kernel's name,
e.g. ``sahd-paper-sum``); costs are spikes per sample and, with a cost function, ``cost``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nasflow.evaluators.sahd import SAHDConfig, SAHDScorer

__all__ = ["SAHDEvaluator", "candidate_seed"]

CostFn = Callable[[nn.Module, dict[str, Any]], float]


def candidate_seed(seed: int, index: int) -> int:
    """The torch seed of candidate ``index`` in a search seeded with ``seed``."""
    return seed * 1_000_003 + index


class SAHDEvaluator:
    """Scores architectures without training: random init, train mode, the fixed ``batches``.

    ``build(arch)`` returns the candidate's network (e.g. ``space.build`` with fixed sizes).
    """

    def __init__(
        self,
        build: Callable[[Any], nn.Module],
        batches: Sequence[torch.Tensor],
        config: SAHDConfig,
        seed: int,
        device: torch.device | str = "cpu",
        cost_fn: CostFn | None = None,
    ) -> None:
        self.build, self.config, self.seed, self.cost_fn = build, config, seed, cost_fn
        self.device = torch.device(device)
        self.batches = [b.to(self.device) for b in batches]
        self.scorer = SAHDScorer(config)
        self.value_name = config.name

    def evaluate(self, arch: Any, index: int) -> tuple[float, dict[str, float]]:
        torch.manual_seed(candidate_seed(self.seed, index))
        model = self.build(arch).to(self.device)
        result = self.scorer.score(model, self.batches, cost_fn=self.cost_fn)
        costs = {"spikes_per_sample": result.spikes_per_sample}
        if result.cost is not None:
            costs["cost"] = result.cost
        return result.scores[self.config.name], costs
