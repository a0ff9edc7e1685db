"""Numpy kernels: effective-op count maps, fan-out maps, per-block synapse counts, reach through pooling."""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from exporters.core.fanout import affine_fanout, conv_fanout
from hwmodels.graph import Connection, ConvGeom, LayerTable, geometry, rows_to_units, units_to_rows

__all__ = ["count_map", "fanout_map", "block_counts", "reach_to_source", "apply_path", "group_words"]


def _group_rows(nz: np.ndarray, groups: int, cin: int) -> np.ndarray:
    """Expand a grouped conv mask (Cout, Cin/g, kh, kw) to a dense (Cout, Cin, kh, kw) one."""
    if groups == 1:
        return nz
    cout, cig = nz.shape[:2]
    cog = cout // groups
    full = np.zeros((cout, cin, *nz.shape[2:]), dtype=nz.dtype)
    for g in range(groups):
        full[g * cog : (g + 1) * cog, g * cig : (g + 1) * cig] = nz[g * cog : (g + 1) * cog]
    return full


def conv_apply(x: np.ndarray, w: np.ndarray, g: ConvGeom) -> np.ndarray:
    """Cross-correlation of ``x [N, Cin, H, W]`` with ``w [Cout, Cin/g, kh, kw]`` (NIR/torch Conv2d semantics)."""
    ph, pw = g.padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ekh, ekw = (g.kernel[0] - 1) * g.dilation[0] + 1, (g.kernel[1] - 1) * g.dilation[1] + 1
    win = sliding_window_view(xp, (ekh, ekw), axis=(2, 3))
    win = win[:, :, :: g.stride[0], :: g.stride[1], :: g.dilation[0], :: g.dilation[1]]
    cout, cig = w.shape[:2]
    cog = cout // g.groups
    out = np.empty((x.shape[0], cout, win.shape[2], win.shape[3]), dtype=x.dtype)
    for gi in range(g.groups):
        part = np.tensordot(
            win[:, gi * cig : (gi + 1) * cig], w[gi * cog : (gi + 1) * cog], axes=([1, 4, 5], [1, 2, 3])
        )
        out[:, gi * cog : (gi + 1) * cog] = part.transpose(0, 3, 1, 2)
    return out


def count_map(conn: Connection, nonzero: np.ndarray) -> np.ndarray:
    """Effective ops landing on each output neuron: ``nonzero [N, *in_shape]`` (counts of non-zero inputs, e.g.
    summed over the batch) → ``[N, *out_shape]`` counts of (non-zero input, non-zero weight) pairs."""
    n = nonzero.shape[0]
    x = nonzero.reshape(n, *conn.in_shape).astype(np.float64)
    if conn.kind == "affine":
        return x @ conn.nz.T.astype(np.float64)
    return conv_apply(x, conn.nz.astype(np.float64), conn.geom)


# Results keyed by a connection's content (kind, shapes, geometry, non-zero mask), shared by every mapping in
# the process: search candidates are built from the same blocks, so most of their numerics repeat.
_SHARED: dict = {}
_SHARED_MAX = 50_000


def conn_signature(conn: Connection) -> tuple:
    """A hashable key of everything the numerics of ``conn`` depend on (not its node ids)."""
    sig = conn._cache.get("signature")
    if sig is None:
        digest = hashlib.blake2b(np.packbits(conn.nz).tobytes(), digest_size=16).digest()
        sig = (conn.kind, conn.in_shape, conn.out_shape, repr(conn.geom), conn.nz.shape, digest)
        conn._cache["signature"] = sig
    return sig


def shared_get(key: tuple):
    """A cached numerics result, or None."""
    return _SHARED.get(key)


def shared_put(key: tuple, value):
    """Remember a numerics result (the cache is dropped whole when it grows past its bound)."""
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    _SHARED[key] = value
    return value


def fanout_map(conn: Connection) -> np.ndarray:
    """Number of non-zero-weight targets of every input position (``in_shape``), borders and stride included."""
    if "fanout" in conn._cache:
        return conn._cache["fanout"]
    shared = shared_get(("fanout", conn_signature(conn)))
    if shared is not None:
        conn._cache["fanout"] = shared
        return shared
    if conn.kind == "affine":
        f = affine_fanout(conn.nz)
    else:
        g = conn.geom
        pads = ((g.padding[0], g.padding[0]), (g.padding[1], g.padding[1]))
        f = conv_fanout(conn.nz, conn.in_shape, g.stride, pads, g.dilation, g.groups)
    conn._cache["fanout"] = f
    return shared_put(("fanout", conn_signature(conn)), f)


def block_counts(conn: Connection, starts: np.ndarray, unit_size: int) -> np.ndarray:
    """Synapses from one input neuron of each input unit into each target block: ``[n_blocks, n_in_units]``.

    Blocks are contiguous ranges of the target's units starting at ``starts``. Conv rows use an interior input
    column (an upper bound at the left/right borders); stride > 1 spreads a column's taps over ``stride`` columns.
    """
    nb = len(starts)
    if conn.kind == "affine":
        rows = np.add.reduceat(conn.nz.astype(np.float64), starts * unit_size, axis=0)
        return rows
    g = conn.geom
    cin, hin, _ = conn.in_shape
    cout, ho, _ = conn.out_shape
    full = _group_rows(conn.nz, g.groups, cin)
    krow = full.sum(axis=3).astype(np.float64) / g.stride[1]  # (Cout, Cin, kh)
    units = np.arange(cout * ho)
    block_of = np.searchsorted(starts, units, side="right") - 1
    yo, co = units // cout, units % cout  # spatial-major units
    out = np.zeros(nb * cin * hin)
    ci = np.arange(cin)
    for ky in range(g.kernel[0]):
        yi = yo * g.stride[0] - g.padding[0] + ky * g.dilation[0]
        ok = (yi >= 0) & (yi < hin)
        if not ok.any():
            continue
        vals = krow[co[ok], :, ky]  # (n_ok, Cin)
        idx = (block_of[ok, None] * hin + yi[ok, None]) * cin + ci[None, :]
        out += np.bincount(idx.ravel(), weights=vals.ravel(), minlength=out.size)
    return out.reshape(nb, hin * cin)


def group_words(n: np.ndarray, bits_per_synapse: float, group: int, header_bits: float, word_bits: int) -> np.ndarray:
    """nengo-loihi's accounting: an axon's ``n`` synapses in groups of ``group``, each group ``n·bits + header``
    bits rounded up to whole words. Works element-wise; fractional ``n`` is rounded up."""
    n = np.ceil(np.asarray(n, dtype=np.float64) - 1e-9)
    full, rem = np.floor_divide(n, group), np.mod(n, group)
    per_full = np.ceil((group * bits_per_synapse + header_bits) / word_bits)
    per_rem = np.where(rem > 0, np.ceil((rem * bits_per_synapse + header_bits) / word_bits), 0)
    return full * per_full + per_rem


def _pool_back(r: np.ndarray, in_hw: tuple[int, int], g: ConvGeom, rows_only: bool) -> np.ndarray:
    """OR a reach over pooling outputs back onto the pooling inputs. ``r``: [nb, C, Ho] or [nb, C, Ho, Wo]."""
    hin, win_ = in_hw
    ho = r.shape[2]
    out = np.zeros(r.shape[:2] + ((hin,) if rows_only else (hin, win_)), dtype=bool)
    for ky in range(g.kernel[0]):
        yi = np.arange(ho) * g.stride[0] - g.padding[0] + ky
        oky = (yi >= 0) & (yi < hin)
        if rows_only:
            out[:, :, yi[oky]] |= r[:, :, oky]
            continue
        wo = r.shape[3]
        for kx in range(g.kernel[1]):
            xi = np.arange(wo) * g.stride[1] - g.padding[1] + kx
            okx = (xi >= 0) & (xi < win_)
            out[:, :, yi[oky][:, None], xi[okx][None, :]] |= r[:, :, oky][:, :, :, okx]
    return out


def reach_to_source(table: LayerTable, conn: Connection, reach_in: np.ndarray) -> np.ndarray:
    """Map a block reach over the weight node's input units (``[nb, n_in_units]`` bool) back to the spike source's
    units, through the connection's Flatten / pooling / Scale nodes."""
    nb = reach_in.shape[0]
    shape = conn.in_shape
    r = units_to_rows(reach_in, shape[0], shape[1]) if len(shape) == 3 else reach_in
    mode = "rows" if len(shape) == 3 else "flat"
    for pid in reversed(conn.path):
        node = table.graph.nodes[pid]
        t = type(node).__name__
        in_shape = table.shapes[table_pred(table, pid)]
        if t == "Flatten":
            if mode == "rows":
                raise ValueError(f"node {pid!r}: a Flatten feeding a convolution is not supported")
            r = r.reshape(nb, *in_shape) if len(in_shape) == 3 else r.reshape(nb, -1)
            mode = "neurons3d" if len(in_shape) == 3 else "flat"
        elif t in ("SumPool2d", "AvgPool2d"):
            g = geometry(pid, node, in_shape)
            r = _pool_back(r, in_shape[1:], g, rows_only=(mode == "rows"))
    if mode == "neurons3d":
        r = r.any(axis=3)
    return rows_to_units(r) if r.ndim == 3 else r.reshape(nb, -1)


def table_pred(table: LayerTable, nid: str) -> str:
    """The single predecessor of a stateless node."""
    return next(a for a, b in table.graph.edges if b == nid)


def apply_path(table: LayerTable, conn: Connection, x: np.ndarray) -> np.ndarray:
    """Values at the weight node's input from the source output ``x [N, *source_shape]`` (pools, flatten, scale)."""
    n = x.shape[0]
    for pid in conn.path:
        node = table.graph.nodes[pid]
        t = type(node).__name__
        if t == "Flatten":
            x = x.reshape(n, -1)
        elif t == "Scale":
            x = x * np.asarray(node.scale).reshape(1, *np.shape(node.scale))
        else:
            s = table.shapes[pid]
            xin = x.reshape(n, *table.shapes[table_pred(table, pid)])
            g = geometry(pid, node, xin.shape[1:])
            ones = np.ones((1, 1, *g.kernel)) / (np.prod(g.kernel) if t == "AvgPool2d" else 1)
            c = xin.shape[1]
            x = conv_apply(xin.reshape(n * c, 1, *xin.shape[2:]), ones, g).reshape(n, *s)
    return x.reshape(n, *conn.in_shape)
