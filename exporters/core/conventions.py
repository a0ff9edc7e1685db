"""Neuron conventions of a NIR graph as one frozen value (REFERENCE.md §6): ``dt``, threshold comparison,
reset mode and initial membrane, with per-node overrides.

NIR 1.0.8 fixes none of these, and frameworks differ; nasflow records them in ``graph.metadata``
(``"dt"`` in seconds and ``"conventions"``). Without them a graph means NIR's own reading: fire on
``v > θ``, reset to ``v_reset``, state starting at 0. Every reader (torch reference, Lava, netx) parses the
metadata here, and every writer produces it here, so the two can never drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from exporters.core.errors import NIRFormatError

__all__ = ["COMPARISONS", "RESETS", "RESET_TIMINGS", "Conventions", "NodeConventions"]

COMPARISONS = (">", ">=")
RESETS = ("to_v_reset", "subtract")
#: "same_step": a neuron resets in the step it fires (NIR, Lava, Norse); "next_step": the spike of step t-1
#: resets the membrane during step t's update and the stored membrane is never reset in-step (snnTorch's
#: default ``reset_delay=True``: ``v[t] = β v[t-1] + I[t] − θ s[t-1]`` with reset by subtraction).
RESET_TIMINGS = ("same_step", "next_step")
_V_INITS = ("zero", "v_reset")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _mapping(v: Any) -> dict[str, Any]:
    return {str(k): x for k, x in dict(v or {}).items()}


@dataclass(frozen=True)
class NodeConventions:
    """The conventions one neuron node runs under."""

    threshold: str  # ">" or ">="
    reset: str  # "to_v_reset" or "subtract"
    v0: float  # initial membrane
    reset_timing: str = "same_step"  # or "next_step" (RESET_TIMINGS)


@dataclass(frozen=True)
class Conventions:
    """``dt`` and neuron conventions of a graph; ``for_node`` resolves the overrides of one node."""

    dt: float | None = None
    threshold: str = ">"
    reset: str = "to_v_reset"
    v_init: str = "zero"  # "zero", or "v_reset": neurons listed in v_init_nodes start there
    threshold_overrides: Mapping[str, str] = field(default_factory=dict)
    reset_overrides: Mapping[str, str] = field(default_factory=dict)
    v_init_nodes: Mapping[str, float] = field(default_factory=dict)
    reset_timing: str = "same_step"

    def __post_init__(self) -> None:
        for name in ("threshold_overrides", "reset_overrides", "v_init_nodes"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        if self.dt is not None and not (float(self.dt) > 0 and np.isfinite(float(self.dt))):
            raise NIRFormatError(f"metadata 'dt' must be a positive number of seconds, got {self.dt!r}")
        if self.v_init not in _V_INITS:
            raise NIRFormatError(f"conventions 'v_init' must be one of {_V_INITS}, got {self.v_init!r}")
        if self.reset_timing not in RESET_TIMINGS:
            raise NIRFormatError(
                f"conventions 'reset_timing' must be one of {RESET_TIMINGS}, got {self.reset_timing!r}")

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> Conventions:
        """Parse ``graph.metadata`` (values may be bytes, as HDF5 returns them); missing keys mean NIR's defaults."""
        meta = metadata if isinstance(metadata, Mapping) else {}
        conv = meta.get("conventions") or {}
        dt = meta.get("dt")
        try:
            return cls._parse(conv, dt)
        except NIRFormatError:
            raise
        except (ValueError, TypeError, AttributeError) as err:
            raise NIRFormatError(f"metadata 'dt'/'conventions' cannot be read ({type(err).__name__}: {err}); "
                                 "fix or re-export the graph") from None

    @classmethod
    def _parse(cls, conv: Any, dt: Any) -> Conventions:
        if not isinstance(conv, Mapping):
            raise NIRFormatError(f"metadata 'conventions' must be a mapping, got {type(conv).__name__}")
        return cls(
            dt=None if dt is None else float(np.asarray(dt)),
            threshold=_text(conv.get("threshold", ">")),
            reset=_text(conv.get("reset", "to_v_reset")),
            v_init=_text(conv.get("v_init", "zero")),
            threshold_overrides={k: _text(v) for k, v in _mapping(conv.get("threshold_overrides")).items()},
            reset_overrides={k: _text(v) for k, v in _mapping(conv.get("reset_overrides")).items()},
            v_init_nodes={k: float(np.asarray(v)) for k, v in _mapping(conv.get("v_init_nodes")).items()},
            reset_timing=_text(conv.get("reset_timing", "same_step")),
        )

    def to_metadata(self) -> dict[str, Any]:
        """``{"dt": ..., "conventions": {...}}`` to merge into ``graph.metadata`` (empty overrides omitted)."""
        conv: dict[str, Any] = {"reset": self.reset, "threshold": self.threshold, "v_init": self.v_init}
        if self.threshold_overrides:
            conv["threshold_overrides"] = dict(self.threshold_overrides)
        if self.reset_overrides:
            conv["reset_overrides"] = dict(self.reset_overrides)
        if self.v_init_nodes:
            conv["v_init_nodes"] = {k: float(v) for k, v in self.v_init_nodes.items()}
        if self.reset_timing != "same_step":
            conv["reset_timing"] = self.reset_timing
        out: dict[str, Any] = {} if self.dt is None else {"dt": float(self.dt)}
        out["conventions"] = conv
        return out

    def for_node(self, node_id: str) -> NodeConventions:
        """The comparison, reset mode and initial membrane of neuron ``node_id`` (``NIRFormatError`` if unknown)."""
        cmp = self.threshold_overrides.get(node_id, self.threshold)
        reset = self.reset_overrides.get(node_id, self.reset)
        if cmp not in COMPARISONS or reset not in RESETS:
            raise NIRFormatError(f"node {node_id!r}: unknown conventions threshold={cmp!r} reset={reset!r}")
        v0 = float(self.v_init_nodes.get(node_id, 0.0)) if self.v_init == "v_reset" else 0.0
        return NodeConventions(cmp, reset, v0, self.reset_timing)
