"""Shapes of NIR nodes: one shape rule (padding included) and graph-wide inference (numpy + nir only).

Shapes exclude batch and time. Fan-in sums its inputs, so every input of a node has one shape. Conv
padding is numeric (symmetric), ``"valid"`` or ``"same"``; ``conv_pads`` is the one rule for all three,
PyTorch's (``"same"`` puts the odd pixel of an even total after), used by every simulator and cost model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import nir
import numpy as np

from exporters.core.errors import NIRFormatError
from exporters.core.kinds import KINDS, node_type
from exporters.core.traversal import input_ids, output_ids, require_input, topology

__all__ = ["conv_pads", "infer_shapes", "ints", "node_output_shape"]


def ints(v: object, n: int, name: str = "value", node_id: str | None = None) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints (NIR stores either) as an ``n``-tuple; ``NIRFormatError`` otherwise."""
    a = np.atleast_1d(np.asarray(v)).astype(int).ravel()
    if a.size == 1:
        return (int(a[0]),) * n
    if a.size == n:
        return tuple(int(x) for x in a)
    where = f"node {node_id!r}: " if node_id is not None else ""
    raise NIRFormatError(f"{where}{name} must be an int or {n} ints, got {v!r}")


def conv_pads(padding: object, kernel: Sequence[int], dilation: Sequence[int],
              node_id: str | None = None) -> tuple[tuple[int, int], ...]:
    """(before, after) zero padding per spatial dim, as ``torch.nn.functional.conv*d`` applies it.

    ``padding`` is numeric (one value or one per dim), ``"valid"`` or ``"same"`` (total ``d·(k-1)``, the odd
    pixel after).
    """
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, str):
        if padding == "valid":
            return tuple((0, 0) for _ in kernel)
        if padding == "same":
            totals = [int(d) * (int(k) - 1) for d, k in zip(dilation, kernel)]
            return tuple((t // 2, t - t // 2) for t in totals)
        where = f"node {node_id!r}: " if node_id is not None else ""
        raise NIRFormatError(f"{where}padding {padding!r} is not 'valid', 'same' or integers")
    return tuple((p, p) for p in ints(padding, len(kernel), "padding", node_id))


def _declared(node: nir.NIRNode, key: str, port: str) -> tuple[int, ...] | None:
    types = getattr(node, key, None)
    if not isinstance(types, dict) or not types:
        return None
    val = types.get(port, next(iter(types.values())))
    if val is None:
        return None
    arr = np.atleast_1d(np.asarray(val))
    if arr.size == 0 or arr.dtype == object:
        return None
    return tuple(int(x) for x in arr.ravel())


def _conv_out(size: int, k: int, s: int, pad: tuple[int, int], d: int) -> int:
    return (size + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1


def _conv_shape(node: nir.NIRNode, node_id: str, shp: tuple[int, ...], dims: int) -> tuple[int, ...]:
    w = np.asarray(node.weight)
    if w.ndim != dims + 2:
        raise NIRFormatError(f"node {node_id!r} (Conv{dims}d): weight must have {dims + 2} dims, got {w.shape}")
    cin = w.shape[1] * int(node.groups)
    if len(shp) != dims + 1 or shp[0] != cin:
        raise NIRFormatError(
            f"node {node_id!r} (Conv{dims}d): input shape {shp} does not match weight {w.shape} "
            f"with groups={node.groups} (expected ({cin}, ...) with {dims} spatial dims)"
        )
    kernel = w.shape[2:]
    stride = ints(node.stride, dims, "stride", node_id)
    dilation = ints(node.dilation, dims, "dilation", node_id)
    pads = conv_pads(node.padding, kernel, dilation, node_id)
    out = [w.shape[0]] + [
        _conv_out(shp[1 + i], kernel[i], stride[i], pads[i], dilation[i]) for i in range(dims)
    ]
    if min(out) <= 0:
        raise NIRFormatError(f"node {node_id!r} (Conv{dims}d): input {shp} too small for weight {w.shape}")
    return tuple(out)


def _pool_shape(node: nir.NIRNode, node_id: str, shp: tuple[int, ...]) -> tuple[int, ...]:
    if len(shp) != 3:
        raise NIRFormatError(f"node {node_id!r} ({node_type(node)}): needs a (C, H, W) input, got {shp}")
    k = ints(node.kernel_size, 2, "kernel_size", node_id)
    s = ints(node.stride, 2, "stride", node_id)
    p = conv_pads(node.padding, k, (1, 1), node_id)
    out = (shp[0], _conv_out(shp[1], k[0], s[0], p[0], 1), _conv_out(shp[2], k[1], s[1], p[1], 1))
    if min(out) <= 0:
        raise NIRFormatError(f"node {node_id!r} ({node_type(node)}): input {shp} too small for kernel {k}")
    return out


def _flatten_shape(node: nir.Flatten, shp: tuple[int, ...]) -> tuple[int, ...]:
    # Indices exclude the batch dim (as nir's own calc_flatten_output does).
    n = len(shp)
    start = int(node.start_dim) % n if n else 0
    end = int(node.end_dim) % n if n else 0
    return tuple(shp[:start]) + (int(np.prod(shp[start : end + 1])),) + tuple(shp[end + 1 :])


def _check_params(node: nir.NIRNode, node_id: str, shp: tuple[int, ...]) -> None:
    """Per-neuron parameters must be scalars or broadcast to the node's shape."""
    for name, val in vars(node).items():
        if name in ("input_type", "output_type", "metadata") or not isinstance(val, np.ndarray):
            continue
        if val.size <= 1:
            continue
        try:
            np.broadcast_shapes(val.shape, shp)
        except ValueError:
            raise NIRFormatError(
                f"node {node_id!r} ({node_type(node)}): parameter {name} has shape {val.shape}, "
                f"which does not fit the node's shape {shp}"
            ) from None
        if np.broadcast_shapes(val.shape, shp) != tuple(shp):
            raise NIRFormatError(
                f"node {node_id!r} ({node_type(node)}): parameter {name} of shape {val.shape} is larger than "
                f"the node's shape {shp}"
            )


def node_output_shape(node: nir.NIRNode, node_id: str, shp: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape of ``node`` fed with ``shp``, checking its parameters against it (``NIRFormatError``)."""
    t = node_type(node)
    if t in KINDS and KINDS[t].elementwise:
        _check_params(node, node_id, shp)
        return shp
    if t in ("Affine", "Linear"):
        w = np.asarray(node.weight)
        if w.ndim != 2 or not shp or shp[-1] != w.shape[1]:
            raise NIRFormatError(
                f"node {node_id!r} ({t}): weight {w.shape} expects inputs of size {w.shape[-1]}, got shape {shp}"
            )
        b = getattr(node, "bias", None)
        if b is not None and np.asarray(b).size not in (1, w.shape[0]):
            raise NIRFormatError(f"node {node_id!r} (Affine): bias {np.shape(b)} does not match weight {w.shape}")
        return tuple(shp[:-1]) + (w.shape[0],)
    if t == "Conv2d":
        return _conv_shape(node, node_id, shp, 2)
    if t == "Conv1d":
        return _conv_shape(node, node_id, shp, 1)
    if t in ("SumPool2d", "AvgPool2d"):
        return _pool_shape(node, node_id, shp)
    if t == "Flatten":
        return _flatten_shape(node, shp)
    if t == "NIRGraph":
        inner = infer_shapes(node, input_shapes={i: shp for i in input_ids(node)})
        outs = output_ids(node)
        if len(outs) != 1:
            raise NIRFormatError(f"node {node_id!r} (nested NIRGraph): needs exactly one Output node, has {outs}")
        return inner[outs[0]]
    raise NIRFormatError(f"node {node_id!r}: unknown NIR node type {t!r}")


def _merge_inputs(graph: nir.NIRGraph, node_id: str, srcs: Iterable[str], shapes: dict) -> tuple[int, ...] | None:
    shp = None
    for s in srcs:
        if s not in shapes:
            continue
        if shp is not None and shapes[s] != shp:
            raise NIRFormatError(
                f"node {node_id!r}: inputs have different shapes ({shp} and {shapes[s]} from {s!r}); "
                "fan-in sums its inputs, so they must match"
            )
        shp = shapes[s]
    return shp


def _check_conv_declared(node: nir.NIRNode, node_id: str, shp: tuple[int, ...]) -> None:
    # nir derives a conv's input_type/output_type from ``input_shape`` with weight.shape[1] as the channel
    # count (wrong for groups > 1) and one kernel size for all dims: check only the spatial input_shape.
    spatial = getattr(node, "input_shape", None)
    if spatial is None:
        return
    want = tuple(int(v) for v in np.atleast_1d(np.asarray(spatial)).ravel())
    if want != tuple(shp[1:]):
        raise NIRFormatError(
            f"node {node_id!r} ({node_type(node)}): declared spatial input_shape {want}, but receives {shp}"
        )


def infer_shapes(
    graph: nir.NIRGraph, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> dict[str, tuple[int, ...]]:
    """Output shape of every node (without batch and time), checked against the nodes' declared types.

    Raises ``NIRFormatError`` naming the node on a mismatch (declared vs computed, fan-in of different
    shapes, weights that do not fit their input), on an unknown node type, or when the graph has no Input.
    """
    require_input(graph)
    topo = topology(graph)
    order, back, preds = topo.order, topo.back, topo.preds
    shapes: dict[str, tuple[int, ...]] = {}
    in_shapes: dict[str, tuple[int, ...]] = {}
    for nid in order:
        node = graph.nodes[nid]
        if isinstance(node, nir.Input):
            given = (input_shapes or {}).get(nid)
            decl = _declared(node, "input_type", "input")
            shp = tuple(int(x) for x in given) if given is not None else decl
            if shp is None:
                raise NIRFormatError(f"node {nid!r} (Input): no shape declared")
            if given is not None and decl is not None and tuple(given) != decl:
                raise NIRFormatError(f"node {nid!r} (Input): declared shape {decl}, but fed {tuple(given)}")
            shapes[nid] = shp
            continue
        shp = _merge_inputs(graph, nid, preds[nid], shapes)
        if shp is None:
            shp = _declared(node, "input_type", "input")
        if shp is None:
            raise NIRFormatError(f"node {nid!r} ({node_type(node)}): has no input edge and no declared input shape")
        out = node_output_shape(node, nid, shp)
        if node_type(node) in ("Conv1d", "Conv2d"):
            _check_conv_declared(node, nid, shp)
            shapes[nid], in_shapes[nid] = out, shp
            continue
        decl_in = _declared(node, "input_type", "input")
        if decl_in is not None and decl_in != shp:
            raise NIRFormatError(
                f"node {nid!r} ({node_type(node)}): declared input shape {decl_in}, but receives {shp}"
            )
        decl_out = _declared(node, "output_type", "output")
        if decl_out is not None and decl_out != out:
            raise NIRFormatError(
                f"node {nid!r} ({node_type(node)}): declared output shape {decl_out}, computed {out} from input {shp}"
            )
        shapes[nid] = out
        in_shapes[nid] = shp
    for s, d in back:
        if node_type(graph.nodes[d]) == "Input":
            raise NIRFormatError(f"edge ({s!r}, {d!r}) feeds an Input node")
        if shapes[s] != in_shapes[d]:
            raise NIRFormatError(
                f"back edge ({s!r}, {d!r}): source shape {shapes[s]} does not match the other inputs of {d!r}"
            )
    return shapes
