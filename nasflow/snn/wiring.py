"""Declarative wiring: a composite module states its data flow once; ``forward`` and the NIR exporter read it.

A composite module (block, stem stage, cell, network) subclasses ``Wired`` and returns its children's data
flow from ``wiring()`` as ordered steps. ``Step(out, child, inputs)`` names the value ``child(Σ inputs)``:
``child`` is the child's attribute path (``"conv1"``, ``"choices.SRB_k3"``) and ``inputs`` name the module
input ``IN`` or values of earlier steps. Several inputs are summed (fan-in: the SRB shortcut meets the
second neuron's input current). A step without a child is a *junction*, the sum itself. ``back`` (junctions
only) names values of the previous time step added to the sum (a backward edge; nothing at the first step):
a wiring with backward edges runs one time step at a time, its children carrying their state between steps.
``Wiring.output`` names the result (default: the last step's value; with no steps the module is the identity).

``run_wiring`` computes each value once, steps in order, except that

* a synaptic wrapper (``TimeDistributed`` / ``DirectEncoder``) whose one consumer is a neuron taking it as
  first input runs with that neuron through ``nasflow.snn.fused.conv_bn_neuron`` (the fused training path);
  the neuron's other inputs become its ``addend``, and a step feeding only that addend runs inside it, after
  the wrapper, as ``neuron(wrapper(x) + z)`` computes them;
* a step feeding only junctions runs when the first of them sums it, and a step read only at the next time
  step runs after all others (a cell's ops into node ``j`` run when node ``j`` is summed, its backward ops
  at the end of the step).

A junction's sum adds the backward values first, then the inputs in order; a junction with no term yet
(fed by backward edges only, at the first step) is zero, shaped like the module input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import NamedTuple

import torch
from torch import nn

from nasflow.snn.fused import conv_bn_neuron
from nasflow.snn.layers import DirectEncoder, TimeDistributed
from nasflow.snn.neurons import Neuron, reset_states

__all__ = ["IN", "Step", "Wired", "Wiring", "junction", "run_wiring", "step"]

IN = "in"


class Step(NamedTuple):
    """``out = child(Σ inputs)``, or for a junction (``child=None``) ``Σ back[t-1] + Σ inputs``."""

    out: str
    child: str | None
    inputs: tuple[str, ...]
    back: tuple[str, ...] = ()


def step(child: str, *inputs: str) -> Step:
    """The step applying ``child`` to the sum of ``inputs``; its value is named after the child."""
    return Step(child, child, tuple(inputs))


def junction(out: str, *inputs: str, back: tuple[str, ...] = ()) -> Step:
    """A named sum of ``inputs`` plus the previous step's ``back`` values."""
    return Step(out, None, tuple(inputs), tuple(back))


@dataclass(frozen=True)
class Wiring:
    """A module's data flow: ``steps`` in evaluation order and the value it returns.

    ``title`` and ``labels`` (value name → words) only name the structure in error messages.
    """

    steps: tuple[Step, ...]
    output: str = ""
    title: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        known = {IN}
        for s in self.steps:
            missing = [n for n in s.inputs if n not in known]
            if missing:
                raise ValueError(f"wiring step {s.out!r} reads {missing} before they are computed")
            if s.back and s.child is not None:
                raise ValueError(f"wiring step {s.out!r}: only a junction (child=None) takes backward inputs")
            if s.out in known:
                raise ValueError(f"wiring value {s.out!r} is defined twice")
            known.add(s.out)
        unknown = [n for s in self.steps for n in s.back if n not in known]
        if unknown or self.result not in known:
            raise ValueError(f"wiring names values it never computes: {unknown or [self.result]}")

    @staticmethod
    def chain(*children: str) -> Wiring:
        """Each child feeds the next; the first takes the module input."""
        return _chain(children)

    @cached_property
    def result(self) -> str:
        """The name of the module's output value."""
        return self.output or (self.steps[-1].out if self.steps else IN)

    @cached_property
    def recurrent(self) -> bool:
        return any(s.back for s in self.steps)

    def label(self, value: str) -> str:
        return self.labels.get(value, repr(value))


@lru_cache(maxsize=256)
def _chain(children: tuple[str, ...]) -> Wiring:
    return Wiring(tuple(step(c, prev) for prev, c in zip((IN, *children), children)))


class Wired(nn.Module):
    """A module whose structure is its ``wiring()``; ``forward`` runs it, exporters convert it."""

    def wiring(self) -> Wiring:
        raise NotImplementedError(f"{type(self).__name__} must define wiring()")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_wiring(self, self.wiring(), x)


def child_module(module: nn.Module, path: str) -> nn.Module:
    """The child at attribute path ``path`` (dots descend)."""
    return module.get_submodule(path) if "." in path else getattr(module, path)


@lru_cache(maxsize=1024)
def _plan(wiring: Wiring, kinds: tuple[type | None, ...]) -> tuple[dict[int, int], frozenset[int], tuple[int, ...]]:
    """(neuron step → its fused wrapper step, steps computed on demand by their consumer, steps computed
    after all others because only the next time step reads them), from the children's classes ``kinds``."""
    steps = wiring.steps
    producer = {s.out: i for i, s in enumerate(steps)}
    uses: dict[str, list[tuple[int, int]]] = {wiring.result: [(-1, -1)]}
    for i, s in enumerate(steps):
        for pos, n in enumerate(s.inputs):
            uses.setdefault(n, []).append((i, pos))
    read_late = {n for s in steps for n in s.back}
    fused: dict[int, int] = {}
    lazy: set[int] = set()
    for i, s in enumerate(steps):
        j = producer.get(s.inputs[0]) if s.inputs else None
        if (j is not None and _is(kinds[i], Neuron) and uses[s.inputs[0]] == [(i, 0)]
                and s.inputs[0] not in read_late and _is(kinds[j], (TimeDistributed, DirectEncoder))):
            fused[i] = j
            lazy.add(j)
            lazy.update(producer[n] for pos, n in enumerate(s.inputs[1:], 1)
                        if n in producer and uses[n] == [(i, pos)])
    last = []
    for i, s in enumerate(steps):
        used = uses.get(s.out, [])
        if used and all(c >= 0 and steps[c].child is None for c, _ in used):
            lazy.add(i)  # summed by its junction(s), in their input order
        elif not used and s.out in read_late:
            last.append(i)
    return fused, frozenset(lazy), tuple(last)


def _is(kind: type | None, classes: type | tuple[type, ...]) -> bool:
    return kind is not None and issubclass(kind, classes)


def _sum(terms: list[torch.Tensor]) -> torch.Tensor:
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _evaluate(module: nn.Module, wiring: Wiring, x: torch.Tensor,
              late: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    steps = wiring.steps
    children = [None if s.child is None else child_module(module, s.child) for s in steps]
    fused, lazy, last = _plan(wiring, tuple(None if c is None else type(c) for c in children))
    producer = {s.out: i for i, s in enumerate(steps)}
    vals: dict[str, torch.Tensor] = {IN: x}

    def get(name: str) -> torch.Tensor:
        if name not in vals:
            compute(producer[name])
        return vals[name]

    def compute(i: int) -> None:
        s, child = steps[i], children[i]
        if i in fused:
            w = fused[i]
            rest = s.inputs[1:]
            addend: Callable[[], torch.Tensor] | None = (lambda: _sum([get(n) for n in rest])) if rest else None
            vals[s.out] = conv_bn_neuron(children[w], child, _sum([get(n) for n in steps[w].inputs]), addend=addend)
        elif child is None:
            terms = [late[n] for n in s.back] if late is not None else []
            terms += [get(n) for n in s.inputs]
            vals[s.out] = _sum(terms) if terms else torch.zeros_like(x)
        else:
            vals[s.out] = child(_sum([get(n) for n in s.inputs]))

    for i in range(len(steps)):
        if i not in lazy and i not in last:
            compute(i)
    for i in last:
        compute(i)
    # get and compute reference each other through their closure cells: clearing the cells breaks that cycle, so
    # the intermediate values (every activation of the block) are freed as soon as the caller drops them instead
    # of waiting for Python's cyclic collector (which left ~100 MB per training step alive in the benchmark)
    get = compute = None  # type: ignore[assignment]  # noqa: F811, F841
    return vals


def run_wiring(module: nn.Module, wiring: Wiring, x: torch.Tensor) -> torch.Tensor:
    """``module``'s output for input ``x`` (``[T, B, ...]``, or ``[B, ...]`` into a direct-coding stem)."""
    if not wiring.recurrent:
        return _evaluate(module, wiring, x, None)[wiring.result]
    # One time step at a time: backward values of step t join their junctions at t + 1.
    kept = {n for s in wiring.steps for n in s.back}
    reset_states(module)
    late: dict[str, torch.Tensor] | None = None
    outs = []
    for t in range(x.shape[0]):
        vals = _evaluate(module, wiring, x[t : t + 1], late)
        outs.append(vals[wiring.result])
        late = {n: vals[n] for n in kept}
    reset_states(module)  # do not keep the last batch's state (or its graph) alive
    return torch.cat(outs)
