"""Evaluate candidate architectures with inherited supernet weights on D_val (eval mode).

``SupernetEvaluator`` is a search-runner evaluator (``nasflow.strategies.runner.Evaluator``):
``evaluate(arch, index)`` returns ``(accuracy, costs)``; calling it with a list of architectures
evaluates them in order. Costs come from the shared activity accounting; extra cost functions
(hardware models, fixed-point accuracy) can be added through ``cost_fns``: each gets the supernet with the
candidate's path active and the ``ActivityMonitor`` summary plus the candidate's float ``accuracy``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from nasflow.snn.activity import ActivityMonitor
from nasflow.snn.neurons import reset_states
from nasflow.train.supernet import AutoSNNSupernet, path_costs

__all__ = ["SupernetEvaluator"]

CostFn = Callable[[torch.nn.Module, dict[str, Any]], dict[str, float]]


class SupernetEvaluator:
    """Accuracy and costs of each architecture on D_val, computed with the supernet's weights.

    The validation batches are moved to the device once and reused for every candidate.
    """

    value_name = "accuracy"

    def __init__(
        self,
        supernet: AutoSNNSupernet,
        val_loader,
        device: torch.device | str = "cpu",
        cost_fns: Sequence[CostFn] = (),
    ) -> None:
        self.supernet = supernet.to(device)
        self.device = torch.device(device)
        self.batches = [(x.to(self.device), y.to(self.device)) for x, y in val_loader]
        if not self.batches:
            raise ValueError("the validation set D_val is empty: nothing to evaluate candidates on")
        self.cost_fns = list(cost_fns)

    @torch.no_grad()
    def evaluate_one(self, arch: tuple[str, ...]) -> tuple[float, dict[str, float]]:
        net = self.supernet
        net.set_path(arch)
        net.eval()
        correct = total = 0
        with ActivityMonitor(net) as mon:
            for x, y in self.batches:
                reset_states(net)
                correct += int((net(x).argmax(1) == y).sum())
                total += len(y)
        accuracy = correct / total
        summary = {**mon.summary(), "accuracy": accuracy}  # cost functions may compare against it
        costs = path_costs(summary)
        for fn in self.cost_fns:
            costs.update(fn(net, summary))
        return accuracy, costs

    def evaluate(self, arch: tuple[str, ...], index: int = 0) -> tuple[float, dict[str, float]]:
        """One candidate (``index`` is unused: inherited weights need no per-candidate seed)."""
        return self.evaluate_one(tuple(arch))

    def __call__(self, archs: Sequence[tuple[str, ...]]) -> list[tuple[float, dict[str, float]]]:
        return [self.evaluate_one(tuple(a)) for a in archs]
