"""Spike-level agreement between two simulations of one graph, and accuracy from an output node.

A spike of the candidate *matches* a reference spike at the same ``(t, b, neuron)``. Per node:
``precision = matched / produced`` (candidate spikes) and ``recall = matched / reference``; a node that
produces no spike has precision 1 (nothing wrong was emitted) and one whose reference has none has
recall 1. Arrays are activity arrays ``[T, B, *shape]`` (REFERENCE.md §8) on the same time axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import nir
import numpy as np

from exporters.core.kinds import FIRING_TYPES, kind_of, node_type

__all__ = ["accuracy_from_output", "compare_activity", "is_membrane_readout", "neuron_nodes", "readout_node"]


def neuron_nodes(graph: nir.NIRGraph) -> list[str]:
    """Ids of the graph's spiking neuron nodes (IF, LIF, CubaLIF), in ``graph.nodes`` order."""
    return [k for k, n in graph.nodes.items() if node_type(n) in FIRING_TYPES]


def readout_node(graph: nir.NIRGraph) -> str:
    """The node feeding the graph's (first) Output: where class scores are read (``accuracy_from_output``)."""
    from exporters.core.traversal import output_ids, predecessors

    return predecessors(graph, output_ids(graph)[0])[0]


def is_membrane_readout(graph: nir.NIRGraph, node: str) -> bool:
    """Whether ``node`` is a non-firing neuron (``I``, ``LI``, ``CubaLI``): a membrane read-out whose value at the
    last step is the class score (SpikeDHS), rather than an output whose sum over T is."""
    kind = kind_of(graph.nodes[node], node)
    return kind.category == "neuron" and not kind.spiking and kind.name != "ReLU"


def _is_binary(a: np.ndarray) -> bool:
    return bool(np.isin(a, (0, 1)).all())


def _ratio(num: int, den: int) -> float:
    return 1.0 if den == 0 else num / den


def compare_activity(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    nodes: Iterable[str] | nir.NIRGraph | None = None,
    values: Iterable[str] = (),
) -> dict[str, Any]:
    """Per-node event-level precision and recall of ``candidate`` against ``reference``, plus totals.

    ``nodes``: node ids, or a graph (its neuron nodes), or ``None`` (every node present in both whose
    reference is binary). Returns ``{"nodes": {id: {reference_spikes, candidate_spikes, matched, precision,
    recall}}, "total": {...}, "min_precision": float, "min_recall": float}``, plus for each node of ``values``
    (analog outputs such as a membrane read-out) ``"values": {id: {max_abs_error, max_abs_reference}}``.
    """
    if isinstance(nodes, nir.NIRGraph):
        ids = neuron_nodes(nodes)
    elif nodes is None:
        ids = [k for k in reference if k in candidate and _is_binary(np.asarray(reference[k]))]
    else:
        ids = list(nodes)
    per: dict[str, dict[str, Any]] = {}
    tot = {"reference_spikes": 0, "candidate_spikes": 0, "matched": 0}
    for k in ids:
        for name, side in (("reference", reference), ("candidate", candidate)):
            if k not in side:
                raise ValueError(f"node {k!r} is missing from the {name} activity")
        ref, cand = np.asarray(reference[k]), np.asarray(candidate[k])
        if ref.shape != cand.shape:
            raise ValueError(f"node {k!r}: reference activity {ref.shape} and candidate {cand.shape} differ in shape")
        for name, a in (("reference", ref), ("candidate", cand)):
            if not _is_binary(a):
                raise ValueError(f"node {k!r}: the {name} activity is not binary spikes (0/1)")
        r, c = ref.astype(bool), cand.astype(bool)
        entry = {"reference_spikes": int(r.sum()), "candidate_spikes": int(c.sum()), "matched": int((r & c).sum())}
        entry["precision"] = _ratio(entry["matched"], entry["candidate_spikes"])
        entry["recall"] = _ratio(entry["matched"], entry["reference_spikes"])
        per[k] = entry
        for key in tot:
            tot[key] += entry[key]
    total: dict[str, Any] = dict(tot)
    total["precision"] = _ratio(tot["matched"], tot["candidate_spikes"])
    total["recall"] = _ratio(tot["matched"], tot["reference_spikes"])
    out = {
        "nodes": per,
        "total": total,
        "min_precision": min((e["precision"] for e in per.values()), default=1.0),
        "min_recall": min((e["recall"] for e in per.values()), default=1.0),
    }
    analog = {}
    for k in values:
        ref, cand = np.asarray(reference[k], np.float64), np.asarray(candidate[k], np.float64)
        if ref.shape != cand.shape:
            raise ValueError(f"node {k!r}: reference values {ref.shape} and candidate {cand.shape} differ in shape")
        analog[k] = {"max_abs_error": float(np.abs(ref - cand).max(initial=0.0)),
                     "max_abs_reference": float(np.abs(ref).max(initial=0.0))}
    if analog:
        out["values"] = analog
    return out


def accuracy_from_output(activity: Mapping[str, np.ndarray], labels: np.ndarray | Iterable[int], node: str,
                         last_step: bool = False) -> float:
    """Accuracy of ``argmax`` over classes of ``activity[node]`` (``[T, B, classes]``) summed over T, or at the last
    step with ``last_step`` (a membrane read-out, ``is_membrane_readout``)."""
    if node not in activity:
        raise ValueError(f"output node {node!r} is not in the activity (nodes: {', '.join(sorted(activity))})")
    out = np.asarray(activity[node])
    labels = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels).reshape(-1)
    if out.ndim != 3 or out.shape[1] != labels.shape[0]:
        raise ValueError(f"node {node!r}: expected [T, B, classes] with B = {labels.shape[0]} labels, got {out.shape}")
    pred = (out[-1] if last_step else out.sum(0)).argmax(-1)
    return float((pred == labels).mean()) if labels.size else float("nan")
