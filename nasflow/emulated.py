"""The main job's fixed-point accuracy on every test sample: the exported graph run by ``lava-emu``
(``exporters.lava.emulate``: Lava's fixed-point models bit for bit, batched), with the quantisation of the Lava
fixed-point run, and checked spike for spike against that run on the samples Lava simulated.

Lava's runtime simulates a digits model at tens of steps per second, so ``lava-fixed`` sees a subset of the test
set; the emulator runs the same integers on all of it in about a second, so the accuracy a chip would reach is
measured on the whole test set, and the subset run proves that the emulated integers are Lava's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np

from nasflow.data.batches import split_batches
from nasflow.steps import BackendRun

__all__ = ["EmulatedRun", "emulate_test_set", "main_job_qat"]


@dataclass(frozen=True)
class EmulatedRun:
    """``lava-emu`` over the test set: a :class:`~nasflow.steps.BackendRun` (accuracy over ``samples``, per-node
    agreement with the torch reference on the Lava samples) and whether its spikes equal Lava's fixed point there."""

    run: BackendRun
    samples: int
    equals_lava_fixed: bool | None


def emulate_test_set(graph: nir.NIRGraph, dt: float, x_lava: np.ndarray, lava_fixed: dict[str, np.ndarray] | None,
                     reference: dict[str, np.ndarray], head: str, last_step: bool,
                     batches: Iterator[tuple[np.ndarray, np.ndarray]], quant: Any = None) -> EmulatedRun:
    """Run ``graph`` by ``lava-emu`` on every batch, quantised as Lava's fixed-point run on ``x_lava`` was.

    ``lava_fixed`` (that run's activity, or None when it did not run) and ``reference`` (torch's) cover the first
    ``x_lava.shape[1]`` samples, which the batches must start with; accuracy is read at ``head`` as the main job
    reads it (``last_step`` for membrane read-outs). ``quant`` (a ``QuantPlan``, e.g. from QAT) replaces the
    quantisation of ``x_lava``.
    """
    from exporters import lava
    from exporters.equivalence import accuracy_from_output, compare_activity
    from exporters.lava.emulate import FixedPointNetwork

    t0 = time.perf_counter()
    plan = lava.build_plan(graph, dt)
    if quant is None:
        quant = lava.quantize_plan(plan, x_lava, input_scale=lava.input_scale_of(x_lava))
    net = FixedPointNetwork(plan, quant)
    n_lava = int(x_lava.shape[1])
    correct, total, kept = 0.0, 0, []
    for x, y in batches:
        act = net.activity(x, nodes=[head])  # neurons + read-out: the linear nodes are their float images
        correct += accuracy_from_output(act, y, head, last_step) * len(y)
        if total < n_lava:  # the samples Lava ran, for the comparisons below
            kept.append({k: v[:, :n_lava - total] for k, v in act.items()})
        total += len(y)
    first = {k: np.concatenate([a[k] for a in kept], axis=1) for k in kept[0]}
    values = [head] if last_step else []
    compare = compare_activity(reference, first, nodes=graph, values=values)
    equal = None
    if lava_fixed is not None:
        equal = all(np.array_equal(first[k], lava_fixed[k]) for k in lava_fixed if k in first)
    run = BackendRun(time.perf_counter() - t0, correct / total if total else None, compare)
    return EmulatedRun(run, total, equal)


def main_job_qat(graph: nir.NIRGraph, dt: float, dataset: str, data_dir: str | None, seed: int, steps: int,
                 epochs: int, out_path: Path, log: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The main job's quantisation-aware fine-tuning of one exported model (``nasflow.train.qat``) on D_train, the
    epoch kept (0: the plain quantisation) chosen by fixed-point accuracy on D_val (then loss), accuracy on the test
    split before and after; the integers go to ``out_path`` (an ``.npz`` that ``nasflow simulate --fixed-point``
    reads).
    Returns the ``QuantPlan`` and a summary for the report."""
    from exporters.lava.quantize import save_quant_plan
    from nasflow.data import get_dataset
    from nasflow.train.qat import QATConfig, qat_lava

    classes = get_dataset(dataset, data_dir, "test")[1].num_classes

    def batches(split: str, size: int) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
        return lambda: split_batches(dataset, data_dir, seed, steps, size, split=split)

    train = batches("dtrain", 32)
    result = qat_lava(graph, train, batches("test", 256), classes, next(iter(train()))[0], QATConfig(epochs=epochs),
                      dt, log, validate=batches("dval", 256))
    save_quant_plan(out_path, result.quant)
    summary = {"fixed_accuracy_before": result.fixed_accuracy_before,
               "fixed_accuracy_after": result.fixed_accuracy_after, "epochs": epochs, "kept_epoch": result.kept_epoch,
               "seconds": result.seconds, "file": str(out_path)}
    return result.quant, summary

