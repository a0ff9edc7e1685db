"""Typed results of the main job's steps (``nasflow run``).

Each step of :mod:`nasflow.pipeline` returns one of these and writes ``{"seconds": s, "result": to_dict()}`` to
``DIR/steps/<step>.json``; a resumed run reads finished steps back with ``from_dict``, so the later steps see
the same types whether a step ran now or earlier. ``to_dict`` gives the step file's content, key order
included. Rows the job only passes on (journal rows of candidates, spike comparisons) stay dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["BackendRun", "ByRole", "ExportedModel", "NetxRun", "SearchStep", "SimulatedModel", "TrainedModel"]

T = TypeVar("T")


@dataclass(frozen=True)
class ByRole(Generic[T]):
    """One result per model of the job: the searched winner and the hand-picked baseline (in that order, the
    order of the step files)."""

    winner: T
    baseline: T

    def items(self) -> list[tuple[str, T]]:
        return [("winner", self.winner), ("baseline", self.baseline)]

    def to_dict(self) -> dict[str, Any]:
        return {role: value.to_dict() for role, value in self.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], parse: Callable[[dict[str, Any]], T]) -> ByRole[T]:
        return cls(parse(data["winner"]), parse(data["baseline"]))


@dataclass(frozen=True)
class SearchStep:
    """The search: its winner, every evaluated candidate, and the settings the report quotes.

    ``best`` and ``evaluated`` are the search's candidate rows (``arch``, ``accuracy``, ``fitness``,
    ``costs``). AutoSNN records its evolution's settings (``cost_avg``, ``budgets``, ``supernet_seconds``);
    SNASNet ranks by a training-free score instead of accuracy and names it in ``value_label`` — a
    ``value_label`` is what tells the two records apart.
    """

    best: dict[str, Any]
    cost: str | None
    lam: float | None
    search_seconds: float | None
    dir: str
    evaluated: list[dict[str, Any]]
    cost_avg: Any = None
    budgets: dict[str, float] | None = None
    supernet_seconds: float | None = None
    value_label: str | None = None
    objectives: list[str] | None = None  # a multi-objective search: what its front trades off
    pick: str | None = None  # and the rule that chose ``best`` from it

    @property
    def arch(self) -> str:
        """The winner's architecture (an AutoSNN arch string or a SNASNet cell)."""
        return self.best["arch"]

    def to_dict(self) -> dict[str, Any]:
        if self.value_label is None:
            head = {"best": self.best, "cost": self.cost, "cost_avg": self.cost_avg, "lambda": self.lam,
                    "budgets": self.budgets, "supernet_seconds": self.supernet_seconds,
                    "search_seconds": self.search_seconds}
            if self.objectives:
                head |= {"objectives": self.objectives, "pick": self.pick}
        else:
            head = {"best": self.best, "cost": self.cost, "lambda": self.lam, "value_label": self.value_label,
                    "search_seconds": self.search_seconds}
        return head | {"dir": self.dir, "evaluated": self.evaluated}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchStep:
        return cls(best=data["best"], cost=data.get("cost"), lam=data.get("lambda"),
                   search_seconds=data.get("search_seconds"), dir=data["dir"], evaluated=data["evaluated"],
                   cost_avg=data.get("cost_avg"), budgets=data.get("budgets"),
                   supernet_seconds=data.get("supernet_seconds"), value_label=data.get("value_label"),
                   objectives=data.get("objectives"), pick=data.get("pick"))


@dataclass(frozen=True)
class TrainedModel:
    """A retrained model (winner or baseline): test-set accuracy and activity, and where its run lives."""

    arch: str
    test_accuracy: float
    test_samples: int | None
    spikes_per_sample: float
    synops_per_sample: float
    macs_per_sample: float
    neuron_updates_per_sample: float
    firing_rates: dict[str, float]
    parameters: int
    dir: str  # the training run directory (model.pt, result.json or retrain/)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "test_accuracy": self.test_accuracy, "test_samples": self.test_samples,
                "spikes_per_sample": self.spikes_per_sample, "synops_per_sample": self.synops_per_sample,
                "macs_per_sample": self.macs_per_sample, "neuron_updates_per_sample": self.neuron_updates_per_sample,
                "firing_rates": self.firing_rates, "parameters": self.parameters, "dir": self.dir}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainedModel:
        return cls(**data)


@dataclass(frozen=True)
class ExportedModel:
    """A model's NIR file and, where netx can hold the network, its netx file (else why not)."""

    nir: str
    nodes: int
    edges: int
    netx: str | None
    netx_skipped: str | None = None  # netx's refusal (first line), when ``netx`` is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nir": self.nir, "nodes": self.nodes, "edges": self.edges, "netx": self.netx}
        return out if self.netx_skipped is None else out | {"netx_skipped": self.netx_skipped}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportedModel:
        return cls(**data)


@dataclass(frozen=True)
class BackendRun:
    """One Lava backend on the test samples: wall time, accuracy, per-node spike comparison with torch; or, when
    the backend refused the graph before running it (a hybrid's analog layers), its reason (``refused``)."""

    seconds: float
    accuracy: float | None
    compare: dict[str, Any]
    refused: str | None = None

    def to_keys(self, name: str) -> dict[str, Any]:
        """The simulate step's keys for backend ``name``: ``<name>_seconds``, ``<name>_accuracy``,
        ``<name>_compare`` and, if it refused, ``<name>_refused`` (the backends share one flat row per model)."""
        out = {f"{name}_seconds": self.seconds, f"{name}_accuracy": self.accuracy, f"{name}_compare": self.compare}
        return out if self.refused is None else out | {f"{name}_refused": self.refused}

    @classmethod
    def from_keys(cls, data: dict[str, Any], name: str) -> BackendRun | None:
        """Backend ``name``'s run from a simulate row; None when the row has none."""
        if f"{name}_seconds" not in data:
            return None
        return cls(data[f"{name}_seconds"], data[f"{name}_accuracy"], data[f"{name}_compare"],
                   data.get(f"{name}_refused"))


@dataclass(frozen=True)
class NetxRun:
    """netx on the test samples: accuracy and spike comparison, or the error it failed with (then accuracy and
    comparison are None: netx is an extra deployment check, its failure is reported, not fatal)."""

    accuracy: float | None
    compare: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"netx_accuracy": self.accuracy, "netx_error": self.error}
        return {"netx_accuracy": self.accuracy, "netx_compare": self.compare}


@dataclass(frozen=True)
class SimulatedModel:
    """A model's NIR file run on the first test samples: torch reference, Lava floating point, Lava fixed point
    (when configured) and netx (when exported); and fixed point by ``lava-emu`` on every test sample."""

    samples: int
    output_node: str
    torch_accuracy: float | None
    lava: BackendRun
    lava_fixed: BackendRun | None = None
    netx: NetxRun | None = None
    lava_emu: BackendRun | None = None  # fixed point by lava-emu on ``emu_samples`` (all test samples)
    emu_samples: int | None = None
    emu_equals_lava_fixed: bool | None = None  # its spikes equal Lava fixed point's on the first ``samples``
    qat: dict[str, Any] | None = None  # quantisation-aware fine-tuning before the fixed-point runs (nasflow.emulated)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": self.samples, "output_node": self.output_node,
                               "torch_accuracy": self.torch_accuracy, **self.lava.to_keys("lava")}
        if self.lava_fixed is not None:
            out |= self.lava_fixed.to_keys("lava_fixed")
        if self.lava_emu is not None:
            out |= self.lava_emu.to_keys("lava_emu") | {"lava_emu_samples": self.emu_samples,
                                                          "lava_emu_equals_lava_fixed": self.emu_equals_lava_fixed}
        if self.qat is not None:
            out["qat"] = self.qat
        return out if self.netx is None else out | self.netx.to_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulatedModel:
        netx = None
        if "netx_accuracy" in data:
            netx = NetxRun(data["netx_accuracy"], data.get("netx_compare"), data.get("netx_error"))
        lava = BackendRun.from_keys(data, "lava")
        if lava is None:
            raise ValueError("simulate step result without a Lava run ('lava_seconds')")
        return cls(data["samples"], data["output_node"], data["torch_accuracy"], lava,
                   BackendRun.from_keys(data, "lava_fixed"), netx, BackendRun.from_keys(data, "lava_emu"),
                   data.get("lava_emu_samples"), data.get("lava_emu_equals_lava_fixed"), data.get("qat"))
