"""Fixed-point costs inside a search: a candidate's accuracy and spikes on Lava's fixed point, from ``lava-emu``.

``FixedPointSearchCost`` is a ``cost_fn`` for ``SupernetEvaluator``: it exports the active path to NIR
(``exporters.nir_export.to_nir``), compiles and quantises it exactly as ``lava-fixed`` would run it
(``exporters.lava.build_plan`` + ``quantize_plan``, one quantiser for every executor) and runs the integers on the
evaluator's D_val batches with the bit-exact emulator (``exporters.lava.emulate.FixedPointNetwork``). Its costs:

- ``fixed_accuracy``: D_val accuracy of the deployed integers (read at the graph's output as the main job reads it);
- ``fixed_acc_drop``: float D_val accuracy minus ``fixed_accuracy`` (a budget such as ``fixed_acc_drop=0.01``
  keeps only candidates that lose at most one point on Lava's fixed point);
- ``fixed_spikes``: spikes per sample of the fixed-point run over the graph's firing neurons, the exact traffic
  Lava would send (the float ``spikes`` cost counts the torch model's).

A candidate the fixed-point path refuses (e.g. a weight/threshold ratio that overflows 8-bit weights) cannot be
deployed: it gets ``fixed_accuracy`` 0 and ``fixed_refused`` 1 (else 0), so any drop budget rejects it, and the
quantiser's reason is kept in ``refusals``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["FIXED_POINT_COSTS", "FixedPointSearchCost", "is_fixed_point_cost"]

FIXED_POINT_COSTS = ("fixed_accuracy", "fixed_acc_drop", "fixed_spikes")


def is_fixed_point_cost(name: str) -> bool:
    """Whether a cost name needs the fixed-point emulator (``fixed_acc_drop`` yes, ``spikes`` no)."""
    return name in FIXED_POINT_COSTS


class FixedPointSearchCost:
    """Cost function ``(net, summary) -> {"fixed_accuracy", "fixed_acc_drop", "fixed_spikes"}`` on D_val.

    ``batches`` are the evaluator's ``(images [B, *shape], labels)`` pairs; static images are repeated over the
    network's ``steps`` (direct coding, as the supernet sees them). One input scale, taken from all batches, serves
    every candidate, so candidates are compared on the same integer input.
    """

    def __init__(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], steps: int, dt: float = 1e-3) -> None:
        from exporters.lava.quantize import input_scale_of

        self.dt = dt
        self.inputs: list[tuple[np.ndarray, np.ndarray]] = []
        for x, y in batches:
            x = x.detach().cpu().float()
            seq = x.unsqueeze(0).expand(steps, *x.shape)
            self.inputs.append((seq.contiguous().numpy(), y.detach().cpu().numpy()))
        if not self.inputs:
            raise ValueError("fixed-point costs need validation batches; D_val is empty")
        self.input_scale = input_scale_of(np.concatenate([x[0] for x, _ in self.inputs]))
        self.refusals: dict[str, str] = {}

    def __call__(self, net: torch.nn.Module, summary: dict[str, Any]) -> dict[str, float]:
        from exporters import lava
        from exporters.equivalence import accuracy_from_output, is_membrane_readout, neuron_nodes, readout_node
        from exporters.lava.emulate import FixedPointNetwork
        from exporters.nir_export import to_nir

        if "accuracy" not in summary:
            raise KeyError("fixed-point costs need the float accuracy in the evaluator's summary ('accuracy')")
        graph = to_nir(net, dt=self.dt, validate=False)
        head = readout_node(graph)
        last = is_membrane_readout(graph, head)
        firing = neuron_nodes(graph)
        try:
            plan = lava.build_plan(graph, self.dt)
            emu = FixedPointNetwork(plan, lava.quantize_plan(plan, input_scale=self.input_scale))
        except lava.LavaBackendError as err:
            self.refusals[",".join(getattr(net, "arch", ()) or ("?",))] = str(err)
            return {"fixed_accuracy": 0.0, "fixed_acc_drop": float(summary["accuracy"]), "fixed_spikes": 0.0,
                    "fixed_refused": 1.0}
        correct = spikes = 0.0
        total = 0
        for x, y in self.inputs:
            act = emu.activity(x, nodes=[head])
            correct += accuracy_from_output(act, y, head, last) * len(y)
            spikes += sum(float(act[k].sum()) for k in firing)
            total += len(y)
        fixed = correct / total
        return {"fixed_accuracy": fixed, "fixed_acc_drop": float(summary["accuracy"]) - fixed,
                "fixed_spikes": spikes / total, "fixed_refused": 0.0}
