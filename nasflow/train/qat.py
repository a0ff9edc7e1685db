"""Quantisation-aware fine-tuning for Lava's fixed point (``nasflow train --qat lava``).

The trained float network is exported to NIR and compiled and quantised exactly as ``lava-fixed`` would run it
(``exporters.lava``); :class:`~exporters.lava.twin.FixedPointTwin` then runs those integers in its forward pass
(spike for spike ``lava-emu``, hence Lava's fixed point) and lets a few epochs of Adam move the float weights and
biases behind them, with straight-through rounding and a surrogate threshold gradient. What comes out is a
:class:`~exporters.lava.quantize.QuantPlan` (``fixed_point.npz``): the integers Lava runs with
``quant=``/``--fixed-point``, so the network that was fine-tuned is the network deployed.

Scales and exponents stay as the quantiser chose them (one ``vth``, ``du``, ``dv`` per Lava process, one
``weight_exp`` per connection); what QAT changes is which integers the weights and biases round to, so that a
layer whose BatchNorm-folded channels need different scales learns weights that work on the one grid it has.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from exporters.lava.quantize import QuantPlan

__all__ = ["QATConfig", "QATResult", "qat_lava", "write_qat"]

Batches = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


@dataclass
class QATConfig:
    """Fine-tuning settings: epochs, Adam's step as a fraction of each tensor's largest magnitude, the loss on the
    output layer (``mse`` on rates against one-hot targets like AutoSNN's training, or ``ce``), the surrogate's
    slope and the weight of distillation from the float network."""

    epochs: int = 3
    lr: float = 1e-3
    loss: str = "mse"
    surrogate: float = 2.0
    # weight of matching the float network's class scores (mean squared error) against the label loss: the deployed
    # integers should do what the float network does, which its outputs pin down better than a small set's labels
    # (README "Main job": labels alone missed the 1-point goal on 1 of 3 seeds, 0.5 on none)
    distill: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"qat distill must be in [0, 1], got {self.distill}")
        if self.epochs < 0:
            raise ValueError(f"qat epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"qat lr must be > 0, got {self.lr}")


@dataclass
class QATResult:
    """The fine-tuned integers and what they gained: fixed-point accuracy on the evaluation batches before and
    after, per-epoch training loss and accuracy, wall time."""

    quant: QuantPlan
    fixed_accuracy_before: float
    fixed_accuracy_after: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    kept_epoch: int = 0  # the epoch whose integers ``quant`` holds (0: the plain quantisation)

    def to_dict(self) -> dict[str, Any]:
        return {"fixed_accuracy_before": self.fixed_accuracy_before,
                "fixed_accuracy_after": self.fixed_accuracy_after, "kept_epoch": self.kept_epoch,
                "history": self.history, "seconds": self.seconds, "quantisation": self.quant.to_dict()}


def _readout(plan, graph: nir.NIRGraph) -> tuple[str, torch.Tensor, torch.Tensor]:
    """The neuron layer behind the graph's output and the fixed linear map (e.g. a voting layer) from its
    activity to the output: ``(layer, matrix [n_out, n_layer], bias [n_out])``."""
    from exporters.core.traversal import output_ids
    from exporters.lava.linalg import dense_matrix, eval_into

    out_id = output_ids(graph)[0]
    preds = {k: [s for s, _ in plan.compiled.topology.sources[k]] for k in graph.nodes}
    found, stack, seen = set(), list(preds[out_id]), set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in plan.neurons:
            found.add(node)
        elif node in preds:
            stack.extend(preds[node])
    if len(found) != 1:
        raise ValueError(f"QAT reads the class scores from one neuron layer; the output {out_id!r} is fed by "
                         f"{sorted(found) or 'none'}")
    head = found.pop()
    shapes = plan.shapes
    matrix = dense_matrix(graph, preds, shapes, head, out_id)
    bias = eval_into(graph, preds, shapes, out_id, {}, 1, bias=True).ravel()
    return head, torch.as_tensor(matrix, dtype=torch.float64), torch.as_tensor(bias, dtype=torch.float64)


def qat_lava(graph: nir.NIRGraph, train: Batches, evaluate: Batches, num_classes: int, calibration: np.ndarray,
             cfg: QATConfig | None = None, dt: float | None = None, log: Callable[[str], None] = print,
             validate: Batches | None = None) -> QATResult:
    """Fine-tune the fixed-point network of ``graph`` on ``train()`` batches (``[T, B, ...]`` inputs, labels).

    ``calibration`` (inputs) fixes the input scale as ``lava-fixed`` would on it; ``evaluate()`` batches measure
    the fixed-point accuracy before and after (and after each epoch). With ``validate()`` batches (held out from
    training) the integers kept are those of the epoch, the plain quantisation included, with the best fixed-point
    accuracy there (at equal accuracy the lowest label loss there), so fine-tuning never hands back a network that
    validates worse;
    without, the last epoch's. Class scores: the output layer's firing rate through the fixed linear nodes behind
    it (its voltage at the last step for a non-spiking read-out).
    """
    from exporters import lava
    from exporters.lava.twin import FixedPointTwin
    from nasflow.train.tasks import ClassificationTask

    cfg = cfg or QATConfig()
    t0 = time.perf_counter()
    plan = lava.build_plan(graph, dt)
    quant = lava.quantize_plan(plan, calibration, input_scale=lava.input_scale_of(calibration))
    twin = FixedPointTwin(plan, quant, cfg.surrogate)
    head, matrix, bias = _readout(plan, plan.compiled.graph)
    readout = plan.neurons[head].record == "v"
    task = ClassificationTask(cfg.loss, num_classes)

    def scores(x: np.ndarray) -> torch.Tensor:
        out = twin(x)[head]
        out = out.reshape(out.shape[0], out.shape[1], -1)
        return (out[-1] if readout else out.mean(0)) @ matrix.T + bias

    def measure(batches: Batches) -> tuple[float, float]:
        """Fixed-point accuracy and mean label loss on ``batches``."""
        sums: dict[str, float] = {}
        loss_sum = 0.0
        with torch.no_grad():
            for x, y in batches():
                out, target = scores(x), torch.as_tensor(y)
                loss_sum += float(task.loss(out, target)) * len(y)
                for k, v in task.tally(out, target).items():
                    sums[k] = sums.get(k, 0.0) + v
        return task.metrics(sums)["accuracy"], loss_sum / max(sums.get("count", 0.0), 1.0)

    def accuracy(batches: Batches = evaluate) -> float:
        return measure(batches)[0]

    def rank(batches: Batches) -> tuple[float, float]:
        # Higher accuracy first; at equal accuracy (a D_val the float network fits, often at 100%) the lower loss.
        acc, loss = measure(batches)
        return acc, -loss

    teacher = None
    if cfg.distill > 0:
        from exporters.nir_torch import GraphModule

        reference = GraphModule(graph, dt=dt, dtype=torch.float64)

        def teacher(x: np.ndarray) -> torch.Tensor:
            with torch.no_grad():
                out = reference(torch.as_tensor(x, dtype=torch.float64))[head]
            out = out.reshape(out.shape[0], out.shape[1], -1)
            return (out[-1] if readout else out.mean(0)) @ matrix.T + bias

    groups = [{"params": [p], "lr": cfg.lr * max(float(p.detach().abs().max()), 1e-6)} for p in twin.parameters()
              if p.numel()]
    opt = torch.optim.Adam(groups)
    before = accuracy()
    best = (rank(validate), 0, twin.quant_plan(), before) if validate is not None else None
    log(f"qat: fixed-point accuracy before {before:.4f}" + (f" (validation {best[0][0]:.4f})" if best else ""))
    history = []
    for epoch in range(cfg.epochs):
        total = seen = hits = 0.0
        for x, y in train():
            target = torch.as_tensor(y)
            out = scores(x)
            loss = task.loss(out, target)
            if teacher is not None:
                loss = (1 - cfg.distill) * loss + cfg.distill * torch.mean((out - teacher(x)) ** 2)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"qat loss became {float(loss)} in epoch {epoch + 1}; lower --set qat.lr")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(y)
            hits += float((out.argmax(1) == target).sum())
            seen += len(y)
        row = {"epoch": epoch + 1, "train_loss": total / max(seen, 1), "train_fixed_accuracy": hits / max(seen, 1),
               "fixed_accuracy": accuracy()}
        if best is not None:
            score = rank(validate)
            row["validation_fixed_accuracy"], row["validation_loss"] = score[0], -score[1]
            if score > best[0]:
                best = (score, epoch + 1, twin.quant_plan(), row["fixed_accuracy"])
        history.append(row)
        log(f"qat: epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.4f} train {row['train_fixed_accuracy']:.4f}"
            + (f" validation {row['validation_fixed_accuracy']:.4f}" if best is not None else "")
            + f" eval {row['fixed_accuracy']:.4f}")
    if best is not None:
        log(f"qat: keeping epoch {best[1]} (best validation accuracy, then lowest validation loss)")
        return QATResult(best[2], before, best[3], history, time.perf_counter() - t0, best[1])
    after = history[-1]["fixed_accuracy"] if history else before
    return QATResult(twin.quant_plan(), before, after, history, time.perf_counter() - t0, len(history))


def write_qat(out_dir: str | Path, result: QATResult, extra: dict[str, Any] | None = None) -> None:
    """``fixed_point.npz`` (the integers, for ``--fixed-point``) and ``qat.json`` in ``out_dir`` (atomic writes)."""
    from exporters.core.jsonio import SCHEMA_VERSION, write_json
    from exporters.lava.quantize import save_quant_plan

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_quant_plan(out_dir / "fixed_point.npz", result.quant)
    write_json(out_dir / "qat.json", {"schema_version": SCHEMA_VERSION, **result.to_dict(), **(extra or {})},
               trailing_newline=True)


def run_qat(out_dir: str | Path, cfg: Any, qat: QATConfig, dt: float = 1e-3,
            log: Callable[[str], None] = print) -> QATResult:
    """QAT of the trained ``out_dir/model.pt`` of a ``nasflow train`` run with config ``cfg`` (a
    ``TrainRunConfig``): fine-tuned on 80% of its training split (not augmented, shuffled by the run's seed) in
    batches of the run's batch size, the epoch kept chosen on the other 20%, fixed-point accuracy on its test
    split; writes ``fixed_point.npz`` and ``qat.json`` there."""
    from exporters.nir_export import to_nir
    from nasflow.data import get_dataset
    from nasflow.data.batches import split_batches
    from nasflow.models import load_model

    out_dir = Path(out_dir)
    model, _ = load_model(out_dir / "model.pt")
    graph = to_nir(model.eval(), dt=dt)
    name, data_dir, seed, steps = cfg.data.name, cfg.data.data_dir, cfg.train.seed, cfg.model.steps
    spec = get_dataset(name, data_dir, "test")[1]

    def train() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        return split_batches(name, data_dir, seed, steps, cfg.train.batch_size, cfg.data.train_samples, "dtrain")

    def validate() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        return split_batches(name, data_dir, seed, steps, 256, None, "dval")

    def evaluate() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        return split_batches(name, data_dir, seed, steps, 256, cfg.data.test_samples)

    calibration = next(iter(train()))[0]
    result = qat_lava(graph, train, evaluate, spec.num_classes, calibration, qat, dt, log, validate)
    write_qat(out_dir, result, {"model": str(out_dir / "model.pt"), "dt": dt,
                                "config": {"epochs": qat.epochs, "lr": qat.lr, "loss": qat.loss, "distill": qat.distill,
                                           "surrogate": qat.surrogate}})
    return result
