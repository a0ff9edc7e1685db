"""Linear NIR nodes in numpy/torch, and the collapse of the linear nodes between two neuron layers into one
Lava connection: a NIR conv (``[pool] → conv`` or a lone pool) or a dense matrix (the path's response to
a unit basis, in NIR flat order).
"""

from __future__ import annotations

import nir
import numpy as np
import torch
import torch.nn.functional as F

from exporters.core.errors import NIRFormatError
from exporters.core.kinds import NEURON_TYPES, node_type
from exporters.core.shapes import conv_pads, ints
from exporters.lava.errors import LavaBackendError

__all__ = ["MAX_DENSE_ENTRIES", "apply_linear", "eval_into", "conv_like", "dense_matrix", "split_matrices"]

#: Largest dense matrix (entries) a collapsed linear path may become before we refuse it.
MAX_DENSE_ENTRIES = 60_000_000


def _arr(v: object) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def _symmetric_pads(node: nir.NIRNode, node_id: str, kernel: tuple[int, ...], dilation: tuple[int, ...]
                    ) -> tuple[int, ...]:
    """Numeric padding of a conv or pool by the core's padding rule; refuses the uneven ``"same"`` of even
    kernels, which Lava's symmetric padding cannot express."""
    try:
        pads = conv_pads(node.padding, kernel, dilation, node_id)
    except NIRFormatError as err:
        raise LavaBackendError(str(err)) from None
    if any(a != b for a, b in pads):
        raise LavaBackendError(f"node {node_id!r} ({node_type(node)}): padding {node.padding!r} pads unevenly "
                               f"({pads}); Lava pads both sides alike: use an odd kernel or numeric padding")
    return tuple(a for a, _ in pads)


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
        w = _arr(node.weight)
        dil = ints(node.dilation, nd)
        pad = _symmetric_pads(node, node_id, w.shape[2:], dil)
        b = torch.from_numpy(_arr(node.bias)) if bias and node.bias is not None else None
        y = conv(t, torch.from_numpy(w), b, stride=ints(node.stride, nd), padding=pad, dilation=dil,
                 groups=int(node.groups))
        return y.numpy()
    if kind in ("SumPool2d", "AvgPool2d"):
        k = ints(node.kernel_size, 2)
        pad = _symmetric_pads(node, node_id, k, (1, 1))
        y = F.avg_pool2d(t, k, stride=ints(node.stride, 2), padding=pad, count_include_pad=True)
        return (y * (k[0] * k[1]) if kind == "SumPool2d" else y).numpy()
    raise LavaBackendError(f"node {node_id!r}: {kind} is not a linear node the Lava backend knows")


def eval_into(graph: nir.NIRGraph, preds: dict[str, list[str]], shapes: dict, target: str,
               feeds: dict[str, np.ndarray], n: int, bias: bool, cut: set | None = None) -> np.ndarray:
    """Sum of ``target``'s inputs when sources are ``feeds`` (others zero), through the linear nodes.

    Edges in ``cut`` (back edges) contribute nothing.
    """
    cut = cut or set()
    memo: dict[str, np.ndarray] = {}
    kinds = {k: node_type(v) for k, v in graph.nodes.items()}

    def out(node: str) -> np.ndarray:
        if node in memo:
            return memo[node]
        if node in feeds:
            return feeds[node]
        if kinds[node] in ("Input", "Delay") or kinds[node] in NEURON_TYPES:  # sources: their own connections
            return np.zeros((n,) + shapes[node])
        memo[node] = apply_linear(graph.nodes[node], node, into(node), bias)
        return memo[node]

    def into(node: str) -> np.ndarray:
        parts = [out(p) for p in preds[node] if (p, node) not in cut]
        return sum(parts) if parts else np.zeros((n,) + shapes[preds[node][0]])

    return into(target)


def conv_like(graph: nir.NIRGraph, path: list[str], shapes: dict, src: str) -> dict | None:
    """NIR conv equivalent to a path ``[pool] conv``, ``pool`` (pool with kernel = stride, no padding) or ``[]`` (a
    direct connection, e.g. a residual skip: a 1x1 identity conv instead of a diagonal ``N x N`` Dense matrix)."""
    nodes = [graph.nodes[p] for p in path]
    kinds = [node_type(n) for n in nodes]
    if len(shapes[src]) != 3:
        return None
    pool = None
    if kinds and kinds[0] in ("SumPool2d", "AvgPool2d"):
        k, s = ints(nodes[0].kernel_size, 2), ints(nodes[0].stride, 2)
        pd = _symmetric_pads(nodes[0], path[0], k, (1, 1))
        if k != s or pd != (0, 0):
            return None
        pool = (k, 1.0 if kinds[0] == "SumPool2d" else 1.0 / (k[0] * k[1]))
        kinds, nodes = kinds[1:], nodes[1:]
    if kinds == []:
        c = shapes[src][0]
        w = np.zeros((c, c, 1, 1))
        w[np.arange(c), np.arange(c)] = 1.0
        identity = dict(weight=w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)
        return identity if pool is None else _compose_pool(pool, identity)
    if kinds != ["Conv2d"]:
        return None
    cv = nodes[0]
    w = _arr(cv.weight)
    dil = ints(cv.dilation, 2)
    conv = dict(weight=w, stride=ints(cv.stride, 2), padding=_symmetric_pads(cv, path[-1], w.shape[2:], dil),
                dilation=dil, groups=int(cv.groups))
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


def dense_matrix(graph: nir.NIRGraph, preds: dict, shapes: dict, src: str, dst: str) -> np.ndarray:
    n_src, n_dst = int(np.prod(shapes[src])), int(np.prod(shapes[dst]))
    if n_src * n_dst > MAX_DENSE_ENTRIES:
        raise LavaBackendError(
            f"node {dst!r}: the linear path from {src!r} would become a {n_dst}x{n_src} Dense matrix, too large; "
            "only conv, pool→conv and pool paths map onto Lava Conv"
        )
    basis = np.eye(n_src).reshape((n_src,) + shapes[src])
    y = eval_into(graph, preds, shapes, dst, {src: basis}, n_src, bias=False)
    return y.reshape(n_src, n_dst).T


def split_matrices(graph: nir.NIRGraph, preds: dict, shapes: dict, src: str, dst: str,
                    back: set[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``[n_dst, n_src]`` matrices of the paths from ``src`` into ``dst`` crossing 0 and 1 back edges."""
    n_src, n_dst = int(np.prod(shapes[src])), int(np.prod(shapes[dst]))
    if 2 * n_src * n_dst > MAX_DENSE_ENTRIES:
        raise LavaBackendError(f"node {dst!r}: the linear paths from {src!r} would become two {n_dst}x{n_src} "
                               "Dense matrices, too large")
    basis = np.eye(n_src).reshape((n_src,) + shapes[src])
    kinds = {k: node_type(v) for k, v in graph.nodes.items()}
    memo: dict[tuple[str, int], np.ndarray] = {}

    def out(node: str, nb: int) -> np.ndarray:
        # The node's output counting only the paths from src that crossed exactly nb back edges.
        if node == src:
            return basis if nb == 0 else np.zeros_like(basis)
        if kinds[node] in ("Input", "Delay") or kinds[node] in NEURON_TYPES:
            return np.zeros((n_src,) + shapes[node])
        if (node, nb) not in memo:
            memo[(node, nb)] = apply_linear(graph.nodes[node], node, into(node, nb), bias=False)
        return memo[(node, nb)]

    def into(node: str, nb: int) -> np.ndarray:
        parts = [out(p, nb - int((p, node) in back)) for p in preds[node] if nb - int((p, node) in back) >= 0]
        return sum(parts) if parts else np.zeros((n_src,) + shapes[preds[node][0]])

    return tuple(into(dst, nb).reshape(n_src, n_dst).T for nb in (0, 1))  # type: ignore[return-value]
