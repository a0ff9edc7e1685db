"""NIR → Lava (lava-nc 0.10 CPU backend, floating point or Loihi fixed point), on NIR's time axis.

How a NIR graph becomes a Lava network (REFERENCE.md §6-7):

- Every neuron node (IF, LIF, CubaLIF, LI, I, CubaLI, Threshold) becomes one ``lava.proc.lif.process.LIFReset``
  process in Lava's layout (NIR's ``(C, H, W)`` is Lava's ``(W, H, C)``). Euler constants map onto
  ``du``, ``dv`` and ``bias_mant``; per-neuron ``r``, ``w_in``, ``v_leak`` and ``v_threshold`` fold into the
  incoming weights and the bias (scaling a neuron's ``u`` and ``v`` together is exact because Lava resets to
  0). Per-neuron time constants that differ, and non-zero ``v_reset``, are refused by node name.
- The linear nodes between two neuron layers (Affine, Linear, Scale, Conv2d, SumPool2d, AvgPool2d,
  Flatten, fan-in sums) collapse into one connection process per (source, target) pair: a ``Conv`` when
  the path is ``[pool] → conv`` or a lone pool (pooling = conv with fixed weights), else a ``Dense`` whose
  matrix is the path's response to a unit basis (layout transposes included). Fewer processes run faster
  (about 0.1 ms per process per step); the biases of the path go to the target's ``bias_mant``, or for
  current-based neurons (where a constant input is filtered by the synapse) through a ``Dense`` from a
  constant source.
- Timing: Lava's Dense/Conv send last step's accumulation. With ``align=True`` connections on the
  feed-forward part use zero-delay models (``exporters.lava_models``) and connections that contain a NIR
  back edge keep the one-step buffer, which is exactly NIR's back-edge delay; so residual fan-in and
  cycles land on the reference time axis with no delay equalisation. ``align=False`` keeps Lava's raw
  timing everywhere (an N-connection chain lags N steps).
- Samples run back to back in one runtime; neurons reset and buffers clear at every sample start.

The activity of non-neuron nodes (linear nodes, Input, Output) is evaluated from the recorded neuron
spikes with the same linear operators, on the reference time axis.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import torch
import torch.nn.functional as F

from exporters.graph import (
    NIRFormatError,
    back_edges,
    check_finite_parameters,
    infer_shapes,
    input_ids,
    topological_order,
)
from exporters.nir_torch import flatten_graph

__all__ = [
    "LavaBackendError",
    "NeuronSpec",
    "ConnSpec",
    "LavaPlan",
    "build_plan",
    "simulate",
    "run_network",
    "apply_linear",
    "lava_shape",
    "to_lava_layout",
    "from_lava_layout",
]

log = logging.getLogger(__name__)

NEURON_KINDS = ("IF", "LIF", "CubaLIF", "LI", "I", "CubaLI", "Threshold")
SPIKING_KINDS = ("IF", "LIF", "CubaLIF", "Threshold")
LINEAR_KINDS = ("Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten")
CONST = "__const__"
#: Largest dense matrix (entries) a collapsed linear path may become before we refuse it.
MAX_DENSE_ENTRIES = 60_000_000


class LavaBackendError(ValueError):
    """A graph (node) or input that the Lava backend cannot represent; the message names the node."""


# ----------------------------------------------------------------------------------------------- layout


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's layout of a NIR shape: axes reversed (``(C, H, W)`` → ``(W, H, C)``)."""
    return tuple(int(s) for s in shape[::-1])


def to_lava_layout(x: np.ndarray, ndim: int) -> np.ndarray:
    """Reverse the last ``ndim`` axes of ``x`` (NIR layout → Lava layout); leading axes stay."""
    lead = x.ndim - ndim
    return np.transpose(x, list(range(lead)) + list(range(x.ndim - 1, lead - 1, -1)))


def from_lava_layout(x: np.ndarray, ndim: int) -> np.ndarray:
    """Inverse of :func:`to_lava_layout` (reversing axes is its own inverse)."""
    return to_lava_layout(x, ndim)


def _lava_perm(shape: tuple[int, ...]) -> np.ndarray:
    """For each flat index in Lava layout, the flat index of the same element in NIR layout."""
    n = int(np.prod(shape))
    return to_lava_layout(np.arange(n).reshape(shape), len(shape)).ravel()


# ----------------------------------------------------------------------------------------------- linear ops


def _arr(v: object) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def _pair(v: object, n: int = 2) -> tuple[int, ...]:
    a = np.atleast_1d(np.asarray(v)).astype(int).ravel()
    return tuple(int(a[0]) for _ in range(n)) if a.size == 1 else tuple(int(t) for t in a[:n])


def apply_linear(node: nir.NIRNode, node_id: str, x: np.ndarray, bias: bool = True) -> np.ndarray:
    """Output of a linear NIR node for a batch ``x`` of shape ``[N, *input_shape]`` (float64)."""
    kind = type(node).__name__
    if kind in ("Affine", "Linear"):
        y = x.reshape(x.shape[0], -1) @ _arr(node.weight).T
        return y + _arr(node.bias) if (bias and kind == "Affine") else y
    if kind == "Scale":
        return x * _arr(node.scale)
    if kind == "Flatten":
        nd = x.ndim - 1
        start = int(node.start_dim) % nd
        end = int(node.end_dim) % nd
        shp = x.shape[1:]
        new = shp[:start] + (int(np.prod(shp[start:end + 1])),) + shp[end + 1:]
        return x.reshape((x.shape[0],) + tuple(new))
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    if kind in ("Conv1d", "Conv2d"):
        nd = 1 if kind == "Conv1d" else 2
        conv = F.conv1d if nd == 1 else F.conv2d
        pad = node.padding
        if isinstance(pad, str):
            raise LavaBackendError(f"node {node_id!r} ({kind}): string padding {pad!r} is not supported; use numbers")
        b = torch.from_numpy(_arr(node.bias)) if bias and node.bias is not None else None
        y = conv(t, torch.from_numpy(_arr(node.weight)), b, stride=_pair(node.stride, nd), padding=_pair(pad, nd),
                 dilation=_pair(node.dilation, nd), groups=int(node.groups))
        return y.numpy()
    if kind in ("SumPool2d", "AvgPool2d"):
        k = _pair(node.kernel_size)
        y = F.avg_pool2d(t, k, stride=_pair(node.stride), padding=_pair(node.padding), count_include_pad=True)
        return (y * (k[0] * k[1]) if kind == "SumPool2d" else y).numpy()
    raise LavaBackendError(f"node {node_id!r}: {kind} is not a linear node the Lava backend knows")


# ----------------------------------------------------------------------------------------------- plan


@dataclass
class NeuronSpec:
    """One LIFReset process. Arrays are flat in NIR order; ``gain`` multiplies every incoming weight."""

    node_id: str
    kind: str
    shape: tuple[int, ...]
    du: float
    dv: float
    vth: float
    gain: np.ndarray
    bias_v: np.ndarray
    v_scale: np.ndarray  # Lava v = v_scale * NIR v (threshold normalisation), for voltage readouts
    record: str  # "s" (spikes) or "v" (voltage, non-spiking readouts)


@dataclass
class ConnSpec:
    """One connection process from ``src`` (Input, neuron or the constant source) into neuron ``dst``.

    ``dense`` is ``[n_dst, n_src]`` in NIR flat order with the target's gain applied; ``conv`` holds a NIR
    conv (``weight`` ``(Cout, Cin, kh, kw)``, gain applied, ``stride``, ``padding``, ``dilation``, ``groups``).
    """

    src: str
    dst: str
    path: list[str]
    delayed: bool
    dense: np.ndarray | None = None
    conv: dict | None = None

    @property
    def weights(self) -> np.ndarray:
        return self.dense if self.dense is not None else self.conv["weight"]


@dataclass
class LavaPlan:
    """A NIR graph compiled to Lava processes (before quantisation and layout)."""

    input_id: str
    shapes: dict[str, tuple[int, ...]]
    neurons: dict[str, NeuronSpec]
    conns: list[ConnSpec]
    order: list[str]
    back: set[tuple[str, str]]
    threshold_ge: bool
    notes: list[str] = field(default_factory=list)

    @property
    def n_processes(self) -> int:
        """Lava processes of one run: input source, constant source if any, neurons, connections."""
        const = any(c.src == CONST for c in self.conns)
        return 1 + int(const) + len(self.neurons) + len(self.conns)


def _kind(node: nir.NIRNode) -> str:
    return type(node).__name__


def _per_neuron(node: nir.NIRNode, attr: str, n: int, default: float | None = None) -> np.ndarray:
    v = getattr(node, attr, None)
    if v is None:
        if default is None:
            raise LavaBackendError(f"{attr} missing")
        v = default
    a = np.asarray(v, dtype=np.float64).ravel()
    if a.size not in (1, n):
        raise LavaBackendError(f"{attr} has {a.size} values for {n} neurons")
    return np.broadcast_to(a, (n,)).astype(np.float64)


def _uniform(values: np.ndarray, node_id: str, kind: str, what: str) -> float:
    if not np.allclose(values, values.flat[0], rtol=1e-6, atol=0):
        raise LavaBackendError(
            f"node {node_id!r} ({kind}): {what} differs between neurons ({values.min():g}..{values.max():g}); "
            "Lava's LIF has one decay per population: split the layer or use one time constant"
        )
    return float(values.flat[0])


def _conventions(graph: nir.NIRGraph, node_id: str) -> bool:
    """Whether ``node_id`` fires on ``v >= θ``; refuses conventions Lava's LIF cannot run (by node name)."""
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    conv = meta.get("conventions") or {}

    def text(v: object) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    cmp = text(dict(conv.get("threshold_overrides", {}) or {}).get(node_id, conv.get("threshold", ">")))
    reset = text(dict(conv.get("reset_overrides", {}) or {}).get(node_id, conv.get("reset", "to_v_reset")))
    if reset != "to_v_reset":
        raise LavaBackendError(
            f"node {node_id!r}: reset convention {reset!r}, but Lava's LIF resets to 0 only; "
            "train/export with a hard reset to 0"
        )
    v_init = text(conv.get("v_init", "zero"))
    v0 = dict(conv.get("v_init_nodes", {}) or {}).get(node_id, 0.0) if v_init == "v_reset" else 0.0
    if np.any(np.asarray(v0, dtype=float) != 0):
        raise LavaBackendError(f"node {node_id!r}: initial voltage {v0} != 0; Lava's LIF starts and resets at 0")
    if cmp not in (">", ">="):
        raise LavaBackendError(f"node {node_id!r}: unknown threshold convention {cmp!r} (use '>' or '>=')")
    return cmp == ">="


def _neuron_spec(node_id: str, node: nir.NIRNode, shape: tuple[int, ...], dt: float | None,
                 threshold_ge: bool) -> NeuronSpec:
    """Map NIR neuron parameters onto LIF(du, dv, vth, bias) plus a per-neuron input gain."""
    kind = _kind(node)
    n = int(np.prod(shape))

    def p(attr: str, default: float | None = None) -> np.ndarray:
        return _per_neuron(node, attr, n, default)

    def need_dt() -> float:
        if dt is None:
            raise LavaBackendError(
                f"node {node_id!r} ({kind}) needs the time step: pass dt= or set graph.metadata['dt'] (seconds)"
            )
        return dt

    if kind in SPIKING_KINDS and kind != "Threshold":
        if np.any(p("v_reset", 0.0) != 0):
            raise LavaBackendError(
                f"node {node_id!r} ({kind}): v_reset != 0, but Lava's LIF resets to 0 only; "
                "shift v_leak/v_threshold so the reset is 0, or use another backend"
            )
    ones, zeros = np.ones(n), np.zeros(n)
    if kind == "Threshold":
        du, dv, gain, bias, theta = 1.0, 1.0, ones, zeros, p("threshold")
    elif kind in ("IF", "I"):
        r = p("r", 1.0)
        du, dv, gain, bias = 1.0, 0.0, r, zeros
        theta = p("v_threshold") if kind == "IF" else None
    elif kind in ("LIF", "LI"):
        a = need_dt() / p("tau")
        dv = _uniform(a, node_id, kind, "tau")
        du, gain, bias = 1.0, a * p("r", 1.0), a * p("v_leak", 0.0)
        theta = p("v_threshold") if kind == "LIF" else None
    elif kind in ("CubaLIF", "CubaLI"):
        a_syn = need_dt() / p("tau_syn")
        a_mem = need_dt() / p("tau_mem")
        du = _uniform(a_syn, node_id, kind, "tau_syn")
        dv = _uniform(a_mem, node_id, kind, "tau_mem")
        # Lava's u is NIR's i scaled by a_mem·r, so it enters v without a factor.
        gain = a_syn * p("w_in", 1.0) * a_mem * p("r", 1.0)
        bias = a_mem * p("v_leak", 0.0)
        theta = p("v_threshold") if kind == "CubaLIF" else None
    else:
        raise LavaBackendError(f"node {node_id!r}: {kind} is not a neuron the Lava backend knows")
    if theta is None:  # non-spiking readout: never fires, voltage is recorded
        return NeuronSpec(node_id, kind, shape, du, dv, math.inf, gain, bias, ones, "v")
    if np.any(theta <= 0):
        raise LavaBackendError(f"node {node_id!r} ({kind}): threshold must be > 0 for Lava's v > vth")
    if np.allclose(theta, theta[0], rtol=0, atol=0):
        vth, k = float(theta[0]), ones
    else:  # per-neuron thresholds: scale each neuron's v so that every threshold is 1
        vth, k = 1.0, 1.0 / theta
    if threshold_ge:  # v >= θ equals v > (largest float below θ)
        vth = float(np.nextafter(vth, -np.inf))
    return NeuronSpec(node_id, kind, shape, du, dv, vth, gain * k, bias * k, k, "s")


def _paths(graph_preds: dict[str, list[str]], kinds: dict[str, str], target: str,
           back: set[tuple[str, str]]) -> list[tuple[str, list[str], int]]:
    """All paths into ``target`` through linear nodes: (source, linear nodes source→target, back edges)."""
    out: list[tuple[str, list[str], int]] = []

    def walk(node: str, trail: list[str], nback: int, seen: frozenset) -> None:
        for p in graph_preds[node]:
            nb = nback + int((p, node) in back)
            k = kinds[p]
            if k == "Input" or k in NEURON_KINDS:
                out.append((p, trail[::-1], nb))
            elif k in LINEAR_KINDS:
                if p in seen:
                    raise LavaBackendError(f"node {p!r}: a cycle through linear nodes only has no neuron to break it")
                walk(p, trail + [p], nb, seen | {p})
            else:
                raise LavaBackendError(
                    f"node {p!r} ({k}) feeds {node!r}: the Lava backend supports {', '.join(LINEAR_KINDS)} "
                    f"between neurons and {', '.join(NEURON_KINDS)} as neurons"
                )

    walk(target, [], 0, frozenset())
    return out


def _eval_into(graph: nir.NIRGraph, preds: dict[str, list[str]], shapes: dict, target: str,
               feeds: dict[str, np.ndarray], n: int, bias: bool, cut: set | None = None) -> np.ndarray:
    """Sum of ``target``'s inputs when sources are ``feeds`` (others zero), through the linear nodes.

    Edges in ``cut`` (back edges) contribute nothing.
    """
    cut = cut or set()
    memo: dict[str, np.ndarray] = {}
    kinds = {k: _kind(v) for k, v in graph.nodes.items()}

    def out(node: str) -> np.ndarray:
        if node in memo:
            return memo[node]
        if node in feeds:
            return feeds[node]
        if kinds[node] == "Input" or kinds[node] in NEURON_KINDS:
            return np.zeros((n,) + shapes[node])
        memo[node] = apply_linear(graph.nodes[node], node, into(node), bias)
        return memo[node]

    def into(node: str) -> np.ndarray:
        parts = [out(p) for p in preds[node] if (p, node) not in cut]
        return sum(parts) if parts else np.zeros((n,) + shapes[preds[node][0]])

    return into(target)


def _conv_like(graph: nir.NIRGraph, path: list[str], shapes: dict, src: str) -> dict | None:
    """NIR conv equivalent to a path ``[pool] conv`` or ``pool`` (pool with kernel = stride, no padding)."""
    nodes = [graph.nodes[p] for p in path]
    kinds = [_kind(n) for n in nodes]
    if len(shapes[src]) != 3:
        return None
    pool = None
    if kinds and kinds[0] in ("SumPool2d", "AvgPool2d"):
        k, s, pd = _pair(nodes[0].kernel_size), _pair(nodes[0].stride), _pair(nodes[0].padding)
        if k != s or pd != (0, 0):
            return None
        pool = (k, 1.0 if kinds[0] == "SumPool2d" else 1.0 / (k[0] * k[1]))
        kinds, nodes = kinds[1:], nodes[1:]
    if kinds == []:
        if pool is None:
            return None
        c = shapes[src][0]
        w = np.zeros((c, c, 1, 1))
        w[np.arange(c), np.arange(c)] = 1.0
        return _compose_pool(pool, dict(weight=w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1))
    if kinds != ["Conv2d"]:
        return None
    cv = nodes[0]
    conv = dict(weight=_arr(cv.weight), stride=_pair(cv.stride), padding=_pair(cv.padding),
                dilation=_pair(cv.dilation), groups=int(cv.groups))
    if pool is None:
        return conv
    if conv["dilation"] != (1, 1) or conv["groups"] != 1:
        return None
    return _compose_pool(pool, conv)


def _compose_pool(pool: tuple, conv: dict) -> dict:
    """conv ∘ pool(k, stride k) as one conv: kernel k·K, stride k·s, padding k·p."""
    (kh, kw), scale = pool
    w = np.repeat(np.repeat(conv["weight"], kh, axis=2), kw, axis=3) * scale
    s, p = conv["stride"], conv["padding"]
    return dict(weight=w, stride=(kh * s[0], kw * s[1]), padding=(kh * p[0], kw * p[1]), dilation=(1, 1), groups=1)


def _dense_matrix(graph: nir.NIRGraph, preds: dict, shapes: dict, src: str, dst: str) -> np.ndarray:
    n_src, n_dst = int(np.prod(shapes[src])), int(np.prod(shapes[dst]))
    if n_src * n_dst > MAX_DENSE_ENTRIES:
        raise LavaBackendError(
            f"node {dst!r}: the linear path from {src!r} would become a {n_dst}x{n_src} Dense matrix, too large; "
            "only conv, pool→conv and pool paths map onto Lava Conv"
        )
    basis = np.eye(n_src).reshape((n_src,) + shapes[src])
    y = _eval_into(graph, preds, shapes, dst, {src: basis}, n_src, bias=False)
    return y.reshape(n_src, n_dst).T


def _split_matrices(graph: nir.NIRGraph, preds: dict, shapes: dict, src: str, dst: str,
                    back: set[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``[n_dst, n_src]`` matrices of the paths from ``src`` into ``dst`` crossing 0 and 1 back edges."""
    n_src, n_dst = int(np.prod(shapes[src])), int(np.prod(shapes[dst]))
    if 2 * n_src * n_dst > MAX_DENSE_ENTRIES:
        raise LavaBackendError(f"node {dst!r}: the linear paths from {src!r} would become two {n_dst}x{n_src} "
                               "Dense matrices, too large")
    basis = np.eye(n_src).reshape((n_src,) + shapes[src])
    kinds = {k: _kind(v) for k, v in graph.nodes.items()}
    memo: dict[tuple[str, int], np.ndarray] = {}

    def out(node: str, nb: int) -> np.ndarray:
        # The node's output counting only the paths from src that crossed exactly nb back edges.
        if node == src:
            return basis if nb == 0 else np.zeros_like(basis)
        if kinds[node] == "Input" or kinds[node] in NEURON_KINDS:
            return np.zeros((n_src,) + shapes[node])
        if (node, nb) not in memo:
            memo[(node, nb)] = apply_linear(graph.nodes[node], node, into(node, nb), bias=False)
        return memo[(node, nb)]

    def into(node: str, nb: int) -> np.ndarray:
        parts = [out(p, nb - int((p, node) in back)) for p in preds[node] if nb - int((p, node) in back) >= 0]
        return sum(parts) if parts else np.zeros((n_src,) + shapes[preds[node][0]])

    return tuple(into(dst, nb).reshape(n_src, n_dst).T for nb in (0, 1))  # type: ignore[return-value]


def build_plan(graph: nir.NIRGraph, dt: float | None = None) -> LavaPlan:
    """Compile a NIR graph to neuron and connection specs (raises ``LavaBackendError`` naming the node)."""
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if dt is None and meta.get("dt") is not None:
        dt = float(meta["dt"])
    ins = input_ids(graph)
    if len(ins) != 1:
        raise LavaBackendError(f"the Lava backend needs exactly one Input node, the graph has {ins or 'none'}")
    try:
        shapes = infer_shapes(graph)
    except NIRFormatError as err:
        raise LavaBackendError(str(err)) from err
    shapes = {k: tuple(int(s) for s in v) for k, v in shapes.items()}
    back = back_edges(graph)
    order = topological_order(graph)
    kinds = {k: _kind(v) for k, v in graph.nodes.items()}
    for nid, k in kinds.items():
        if k not in NEURON_KINDS + LINEAR_KINDS + ("Input", "Output"):
            raise LavaBackendError(f"node {nid!r}: {k} cannot be represented on Lava by this backend")
    ge = False
    preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for s, d in graph.edges:
        preds[d].append(s)
    plan = LavaPlan(ins[0], shapes, {}, [], order, back, False)
    for nid in order:
        if kinds[nid] in NEURON_KINDS:
            node_ge = _conventions(graph, nid) and kinds[nid] != "Threshold"
            ge = ge or node_ge
            plan.neurons[nid] = _neuron_spec(nid, graph.nodes[nid], shapes[nid], dt, node_ge)
    for spec in plan.neurons.values():
        _plan_inputs(graph, plan, preds, kinds, spec)
    for nid, spec in plan.neurons.items():
        if spec.record == "v" and any(c.src == nid for c in plan.conns):
            raise LavaBackendError(f"node {nid!r} ({spec.kind}) does not spike; Lava can only read it out, not feed "
                                   "it to further layers")
    plan.threshold_ge = ge
    return plan


def _plan_inputs(graph: nir.NIRGraph, plan: LavaPlan, preds: dict, kinds: dict, spec: NeuronSpec) -> None:
    """Connection specs and bias for neuron ``spec`` from the linear paths that feed it."""
    nid, shapes = spec.node_id, plan.shapes
    paths = _paths(preds, kinds, nid, plan.back)
    total = _eval_into(graph, preds, shapes, nid, {}, 1, bias=True).ravel()
    # Biases reached through a back edge start one step late (a back edge carries 0 at t = 0).
    direct = _eval_into(graph, preds, shapes, nid, {}, 1, bias=True, cut=plan.back).ravel()
    late = total - direct
    if np.any(late != 0):
        plan.conns.append(ConnSpec(CONST, nid, [], True, dense=(spec.gain * late)[:, None]))
    if np.any(direct != 0):
        if spec.kind in ("CubaLIF", "CubaLI"):  # a constant current is filtered by the synapse: keep it an input
            plan.conns.append(ConnSpec(CONST, nid, [], False, dense=(spec.gain * direct)[:, None]))
        else:
            spec.bias_v = spec.bias_v + spec.gain * direct
    by_src: dict[str, list[tuple[list[str], int]]] = {}
    for src, path, nb in paths:
        by_src.setdefault(src, []).append((path, nb))
    for src, plist in by_src.items():
        nbs = {nb for _, nb in plist}
        if max(nbs) > 1:
            raise LavaBackendError(
                f"node {nid!r}: paths from {src!r} cross {sorted(nbs)} back edges; Lava can delay a connection by "
                "one step only, so every path from one source must cross 0 or 1 back edges"
            )
        if len(nbs) > 1:  # same-step and one-step-late paths from one source: one connection each
            for nb, m in enumerate(_split_matrices(graph, preds, shapes, src, nid, plan.back)):
                paths_nb = sorted({p for pl, b in plist if b == nb for p in pl})
                plan.conns.append(ConnSpec(src, nid, paths_nb, bool(nb), dense=m * spec.gain[:, None]))
            continue
        delayed = nbs == {1}
        conv = _conv_like(graph, plist[0][0], shapes, src) if len(plist) == 1 else None
        if conv is not None:
            g = spec.gain.reshape(conv["weight"].shape[0], -1)
            if np.allclose(g, g[:, :1]):
                conv["weight"] = conv["weight"] * g[:, 0][:, None, None, None]
                conv["in_shape"] = shapes[src]
                plan.conns.append(ConnSpec(src, nid, plist[0][0], delayed, conv=conv))
                continue
        m = _dense_matrix(graph, preds, shapes, src, nid) * spec.gain[:, None]
        plan.conns.append(ConnSpec(src, nid, sorted({p for pl, _ in plist for p in pl}), delayed, dense=m))


# ----------------------------------------------------------------------------------------------- runtime


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children()}


def _alive(actor: multiprocessing.Process) -> bool:
    try:
        return actor.is_alive()
    except ValueError:  # closed after a clean join
        return False


def _force_stop(runtime: object) -> None:
    """Kill the runtime's actor processes when a normal stop hangs, and free its shared memory."""
    if runtime is None:
        return
    infra = getattr(runtime, "_messaging_infrastructure", None)
    for actor in getattr(infra, "actors", []) or []:
        if _alive(actor):
            actor.kill()
            multiprocessing.Process.join(actor, 2)  # Lava's SystemProcess.join takes no timeout
    try:
        if infra is not None:
            infra.stop()
    except Exception as err:  # noqa: BLE001 - best effort cleanup; the original error is what matters
        log.warning("Lava shared-memory cleanup failed: %s", err)


def _stop(entry: object, grace_s: float = 10.0) -> None:
    """Stop the runtime of ``entry``; if that hangs (a crashed child), kill the actors."""
    runtime = getattr(entry, "runtime", None)
    if runtime is None:
        return
    before = set(getattr(getattr(runtime, "_messaging_infrastructure", None), "actors", []) or [])
    err: list[BaseException] = []

    def stop() -> None:
        try:
            entry.stop()
        except BaseException as e:  # noqa: BLE001 - reported below
            err.append(e)

    th = threading.Thread(target=stop, daemon=True)
    th.start()
    th.join(grace_s)
    if th.is_alive() or err or any(_alive(a) for a in before):
        _force_stop(runtime)


def _new_children(before: set[int]) -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.pid not in before]


def _kill(procs: list[multiprocessing.Process]) -> None:
    for p in procs:
        if _alive(p):
            p.kill()
    for p in procs:
        multiprocessing.Process.join(p, 2)


def run_network(entry: object, num_steps: int, fixed_point: bool, timeout_s: float = 120.0) -> None:
    """Run a connected Lava network for ``num_steps`` with the nasflow models; always stops the runtime.

    The run (compile, start-up and steps) happens in a worker thread so that the caller can enforce
    ``timeout_s`` and react to Ctrl-C even while Lava blocks. Raises ``TimeoutError`` after ``timeout_s``
    seconds and ``RuntimeError`` when a Lava process fails or dies; in every case the runtime is stopped
    and the child processes this run started are ended.
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from exporters.lava_models import model_map

    cfg = Loihi2SimCfg(select_tag="fixed_pt" if fixed_point else "floating_pt",
                       exception_proc_model_map=model_map(fixed_point))
    before = _children()
    outcome: dict[str, BaseException | bool] = {}

    def work() -> None:
        try:
            entry.run(condition=RunSteps(num_steps=int(num_steps), blocking=True), run_cfg=cfg)
            outcome["ok"] = True
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=work, name="nasflow-lava-run", daemon=True)
    t0 = time.monotonic()
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"Lava run of {num_steps} steps did not finish within {timeout_s:g} s")
            dead = [p for p in _new_children(before) if p.exitcode not in (None, 0)]
            if dead and worker.is_alive():
                raise RuntimeError(f"a Lava process died (exit code {dead[0].exitcode}) during the run")
        if "error" in outcome:
            raise RuntimeError(f"Lava run failed: {outcome['error']}") from outcome["error"]
    finally:
        ok = outcome.get("ok", False)
        if ok or not worker.is_alive():
            # After a failure a clean stop may wait on dead children: short grace, then kill.
            _stop(entry, grace_s=10.0 if ok else 2.0)
        else:  # the worker is still blocked inside Lava: do not call into the runtime from here
            _force_stop(getattr(entry, "runtime", None))
        _kill(_new_children(before))


# ----------------------------------------------------------------------------------------------- build & run


def _source(data_lava: np.ndarray, fixed_point: bool) -> object:
    from lava.proc.io.source import RingBuffer

    return RingBuffer(data=data_lava.astype(np.int32) if fixed_point else data_lava.astype(np.float64))


def _graded(x: np.ndarray) -> bool:
    return bool(np.any((x != 0) & (x != 1)))


def ensure_lava_importable() -> None:
    """Let Lava's import-time ``multiprocessing.set_start_method("fork")`` succeed in a process that already
    fixed its start method (any ``get_start_method()`` call does, e.g. from a data loader or a progress bar).

    When that method is ``fork`` too, forgetting it changes nothing; another method cannot host Lava.
    """
    import multiprocessing
    import sys

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    current = multiprocessing.get_start_method(allow_none=True)
    if current is None:
        return
    if current != "fork":
        raise LavaBackendError(f"Lava needs the 'fork' multiprocessing start method, this process uses {current!r}")
    multiprocessing.context._default_context._actual_context = None


def _build(plan: LavaPlan, xs: np.ndarray, period: int, fixed_point: bool, align: bool, rec_dir: Path,
           quant: object | None, want_v: bool) -> tuple[object, dict[str, tuple[Path | None, Path | None]]]:
    """Create the Lava processes of ``plan``; returns an entry process and the recording files."""
    ensure_lava_importable()
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIFReset

    steps = xs.shape[0]
    in_shape = plan.shapes[plan.input_id]
    graded = _graded(xs)
    x_in = xs if quant is None else np.rint(xs * quant.input_scale)
    # RingBuffer data: Lava layout plus time last.
    data = np.moveaxis(to_lava_layout(x_in, len(in_shape)), 0, -1)
    procs: dict[str, object] = {plan.input_id: _source(data, fixed_point)}
    if any(c.src == CONST for c in plan.conns):
        procs[CONST] = _source(np.ones((1, 1)), fixed_point)
    files: dict[str, tuple[Path | None, Path | None]] = {}
    for nid, spec in plan.neurons.items():
        n = int(np.prod(spec.shape))
        paths = []
        for what in ("s", "v"):
            if (what == "s" and spec.record == "s") or (what == "v" and (spec.record == "v" or want_v)):
                path = rec_dir / f"{len(files)}.{what}.f32"
                np.zeros((steps, n), dtype=np.float32).tofile(path)
                paths.append(path)
            else:
                paths.append(None)
        files[nid] = (paths[0], paths[1])
        perm = _lava_perm(spec.shape)
        if quant is None:
            params = dict(du=spec.du, dv=spec.dv, vth=spec.vth if math.isfinite(spec.vth) else 1e300,
                          bias_mant=spec.bias_v[perm].reshape(lava_shape(spec.shape)), bias_exp=0)
        else:
            q = quant.neurons[nid]
            params = dict(du=q.du, dv=q.dv, vth=q.vth, bias_mant=q.bias_mant[perm].reshape(lava_shape(spec.shape)),
                          bias_exp=q.bias_exp)
        lif = LIFReset(shape=lava_shape(spec.shape), reset_interval=max(period, 1), reset_offset=1 % max(period, 1),
                       name=nid, **params)
        lif.proc_params["nasflow_period"] = period
        lif.proc_params["nasflow_record"] = (None if paths[0] is None else str(paths[0]),
                                             None if paths[1] is None else str(paths[1]), steps)
        procs[nid] = lif
    for i, c in enumerate(plan.conns):
        src_shape = (1,) if c.src == CONST else plan.shapes[c.src]
        bits = 24 if (c.src == plan.input_id and graded) else 0
        q = None if quant is None else quant.conns[i]
        if c.dense is not None:
            w = c.dense if q is None else q.weights
            w = w[_lava_perm(plan.shapes[c.dst])][:, _lava_perm(src_shape)]
            kw = {} if q is None else dict(weight_exp=q.weight_exp, num_weight_bits=8)
            name = f"{c.src}->{c.dst}" + (" (late)" if c.delayed else "")
            conn = Dense(weights=w, num_message_bits=bits, name=name, **kw)
            src_port = procs[c.src].s_out
            src_port = src_port.flatten() if len(src_shape) > 1 else src_port
            src_port.connect(conn.s_in)
            out = conn.a_out.reshape(lava_shape(plan.shapes[c.dst])) if len(plan.shapes[c.dst]) > 1 else conn.a_out
        else:
            cv = c.conv
            w = cv["weight"] if q is None else q.weights
            # NIR/torch cross-correlation (Cout, Cin, kh, kw) → Lava's true convolution (Cout, W, H, Cin).
            w_lava = np.ascontiguousarray(np.transpose(w, (0, 3, 2, 1))[:, ::-1, ::-1, :])
            conn = Conv(weight=w_lava, input_shape=lava_shape(src_shape), stride=cv["stride"][::-1],
                        padding=cv["padding"][::-1], dilation=cv["dilation"][::-1], groups=cv["groups"],
                        num_message_bits=bits, weight_exp=0 if q is None else q.weight_exp, name=f"{c.src}->{c.dst}")
            procs[c.src].s_out.connect(conn.s_in)
            out = conn.a_out
        conn.proc_params["nasflow_zero_delay"] = bool(align and not c.delayed)
        conn.proc_params["nasflow_period"] = period
        out.connect(procs[c.dst].a_in)
    return procs[plan.input_id], files


def _node_activity(graph: nir.NIRGraph, plan: LavaPlan, x: np.ndarray, neuron_act: dict[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
    """Every node's output [T, B, *shape]: neurons from Lava, the rest evaluated on the reference axis."""
    t_len, b = x.shape[:2]
    act: dict[str, np.ndarray] = {plan.input_id: x.astype(np.float32)}
    act.update(neuron_act)
    preds: dict[str, list[tuple[str, bool]]] = {k: [] for k in graph.nodes}
    for s, d in graph.edges:
        preds[d].append((s, (s, d) in plan.back))

    def fed(nid: str) -> np.ndarray:
        total: np.ndarray | float = 0.0
        for s, is_back in preds[nid]:
            a = get(s).astype(np.float64)
            if is_back:  # back edge: the source's output one step late
                a = np.concatenate([np.zeros_like(a[:1]), a[:-1]], axis=0)
            total = total + a
        return total

    def get(nid: str) -> np.ndarray:
        # On demand: a back edge may come from a linear node later in the order (e.g. a recurrent
        # cell's feedback op); every cycle holds a neuron, whose activity is known, so this ends.
        if nid in act:
            return act[nid]
        kind = _kind(graph.nodes[nid])
        inp = fed(nid)
        if kind == "Output":
            act[nid] = np.asarray(inp, dtype=np.float32).reshape((t_len, b) + plan.shapes[nid])
            return act[nid]
        flat = np.asarray(inp).reshape((t_len * b,) + inp.shape[2:])
        act[nid] = apply_linear(graph.nodes[nid], nid, flat).reshape((t_len, b) + plan.shapes[nid]).astype(np.float32)
        return act[nid]

    for nid in plan.order:
        get(nid)
    return act


def _read_rec(path: Path, shape: tuple[int, ...], b: int, t_len: int) -> np.ndarray:
    """A recording file [B*T, *lava_shape] → [T, B, *shape] in NIR layout (float32)."""
    rec = np.fromfile(path, dtype=np.float32).reshape(b, t_len, *lava_shape(shape))
    return np.ascontiguousarray(from_lava_layout(rec, len(shape)).swapaxes(0, 1), dtype=np.float32)


def simulate(graph: nir.NIRGraph, x: np.ndarray, dt: float | None = None, fixed_point: bool = False,
             align: bool = True, timeout_s: float = 120.0, *,
             voltages: dict[str, np.ndarray] | None = None, max_weight_exp: int = 7) -> dict[str, np.ndarray]:
    """Run ``graph`` on Lava (CPU) for input ``x`` ``[T, B, *input_shape]``; returns every node's activity.

    ``dt`` comes from ``graph.metadata["dt"]`` when not given (needed by LIF/CubaLIF/LI nodes).
    ``fixed_point`` uses Loihi's bit-accurate models with per-layer scales from ``exporters.quantize``.
    ``align=False`` returns Lava's raw timing (each connection process one step late). Samples run back to
    back in one runtime. Raises ``LavaBackendError`` naming the node Lava cannot represent,
    ``TimeoutError`` after ``timeout_s``; the runtime is always stopped.
    """
    check_finite_parameters(graph)
    graph = flatten_graph(graph)
    plan = build_plan(graph, dt)
    x = np.asarray(x, dtype=np.float32)
    in_shape = plan.shapes[plan.input_id]
    if x.ndim != 2 + len(in_shape) or tuple(x.shape[2:]) != in_shape:
        raise LavaBackendError(
            f"input {plan.input_id!r}: expected an array [T, B, {', '.join(map(str, in_shape))}], got {x.shape}"
        )
    t_len, b = x.shape[:2]
    # Samples one after another: [B*T, *shape].
    xs = np.moveaxis(x, 1, 0).reshape((b * t_len,) + in_shape)
    quant = None
    if fixed_point:
        from exporters.quantize import quantize_plan

        quant = quantize_plan(plan, x, max_weight_exp=max_weight_exp)
        for line in quant.summary():
            log.info("fixed point: %s", line)
    tmp_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="nasflow-lava-", dir=tmp_root) as tmp:
        entry, files = _build(plan, xs, t_len, fixed_point, align, Path(tmp), quant, voltages is not None)
        run_network(entry, b * t_len, fixed_point, timeout_s)
        neuron_act = {}
        for nid, (s_path, v_path) in files.items():
            spec = plan.neurons[nid]
            v_rec = None if v_path is None else _read_rec(v_path, spec.shape, b, t_len)
            if v_rec is not None:
                scale = spec.v_scale.reshape(spec.shape)
                if quant is not None:
                    scale = scale * quant.neurons[nid].v_unit
                v_rec = v_rec / scale
                if voltages is not None:
                    voltages[nid] = v_rec
            neuron_act[nid] = v_rec if s_path is None else _read_rec(s_path, spec.shape, b, t_len)
    return _node_activity(graph, plan, x, neuron_act)
