"""Counts on a mapping: synaptic ops, neuron updates and messages per block and step, from activity.

Two inputs (REFERENCE.md §8): per-neuron activity ``{node_id: [T, B, *shape]}`` gives exact per-core counts;
per-node totals ``{node_id: {"spikes_per_sample": x}}`` give layer-level estimates (uniform rates over neurons and
steps), and the result says so (``level``). Synaptic ops: (non-zero input, non-zero weight) pairs per weight node,
ACs when its input is binary, MACs otherwise (NeuroBench's effective ops), counted by ``connection_synops`` and
nowhere else. Per-node totals may carry those counts as measured (``measured_synops``, what ``nasflow simulate``
writes into simulate.json, or a training-time ``ActivityMonitor``'s per-layer counts, which the search hands over);
without them ops are estimated as events × mean fan-out. Messages: one per (event, destination core); events of the
Input node come from the host at tile (0, 0); output spikes to the host are free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwmodels.graph import Connection, LayerTable, rows_to_units
from hwmodels.mapping import Mapping
from hwmodels.numerics import apply_path, conn_signature, count_map, fanout_map, shared_get, shared_put

__all__ = [
    "Counts",
    "ActivityError",
    "connection_synops",
    "counts_from_activity",
    "counts_from_totals",
    "measured_synops",
    "NodeStats",
]


class ActivityError(ValueError):
    """Activity that does not match the graph; the message names the node."""


@dataclass
class Counts:
    """Per-sample counts on a mapping (per-step arrays are means over samples)."""

    level: str  # "neuron" (per-neuron activity) or "node" (per-node totals: layer-level estimates)
    steps: int
    synops_step: np.ndarray  # [T, nb] ACs + MACs landing on each block per step
    updates: np.ndarray  # [nb] neuron updates per sample
    active_updates: np.ndarray  # [nb]
    msgs_in_step: np.ndarray  # [T, nb]
    msgs_out_step: np.ndarray  # [T, nb + 1] (last column: the host)
    pair_msgs: dict  # (source, target layer) → [nb_src (1 for the host), nb_tgt] messages per sample
    acs: dict[str, float] = field(default_factory=dict)  # per weight node
    macs: dict[str, float] = field(default_factory=dict)
    spikes: dict[str, float] = field(default_factory=dict)  # per spiking node (events per sample)
    layer_synops: dict[str, float] = field(default_factory=dict)
    layer_synops_conv: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _check(activity: dict, table: LayerTable) -> tuple[int, int]:
    shapes = table.shapes
    tb = None
    for nid, arr in activity.items():
        if nid in table.wires:
            continue
        if nid not in shapes:
            raise ActivityError(f"activity has node {nid!r}, which is not in the graph (nodes: {', '.join(shapes)})")
        a = np.asarray(arr)
        if a.ndim < 2 or int(np.prod(a.shape[2:])) != int(np.prod(shapes[nid])):
            raise ActivityError(
                f"activity[{nid!r}] has shape {a.shape}; expected [T, B, {', '.join(map(str, shapes[nid]))}]"
                f" ({int(np.prod(shapes[nid]))} values per step and sample)"
            )
        if tb is not None and a.shape[:2] != tb:
            raise ActivityError(f"activity[{nid!r}] has T, B = {a.shape[:2]} but other nodes have {tb}")
        tb = a.shape[:2]
        if not np.isfinite(a).all():
            raise ActivityError(f"activity[{nid!r}] contains NaN or infinite values")
    if tb is None:
        raise ActivityError("activity is empty")
    for src in table.sources():
        if src not in activity:
            users = ", ".join(c.node_id for c in table.outgoing(src))
            raise ActivityError(f"activity lacks node {src!r} (the source of events for {users})")
    return int(tb[0]), int(tb[1])


def _unit_sums(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Non-zero counts per unit and step, summed over the batch: [T, n_units]."""
    t = a.shape[0]
    nz = (a.reshape(t, a.shape[1], -1) != 0).sum(axis=1)
    return rows_to_units(nz.reshape(t, *shape).sum(axis=3)) if len(shape) == 3 else nz


def _empty(m: Mapping, steps: int, level: str) -> Counts:
    nb = m.n_blocks
    return Counts(
        level,
        steps,
        np.zeros((steps, nb)),
        np.zeros(nb),
        np.zeros(nb),
        np.zeros((steps, nb)),
        np.zeros((steps, nb + 1)),
        {},
    )


def _block_sum(m: Mapping, layer: str, per_neuron: np.ndarray) -> np.ndarray:
    """Sum [T, n_neurons] over each block of ``layer`` → [T, nb_layer]."""
    lay = m.table.layers[layer]
    t = per_neuron.shape[0]
    if len(lay.shape) == 3:
        per_unit = rows_to_units(per_neuron.reshape(t, *lay.shape).sum(axis=3))
    else:
        per_unit = per_neuron.reshape(t, lay.n_units)
    return np.add.reduceat(per_unit, m.starts[layer], axis=1)


def _updates(m: Mapping, c: Counts, layer: str, active: np.ndarray | None) -> None:
    lay, sl = m.table.layers[layer], m.blocks_of(layer)
    sizes = np.diff(np.append(m.starts[layer], lay.n_units)) * lay.unit_size
    c.updates[sl] = sizes * c.steps
    if active is not None:
        c.active_updates[sl] = _block_sum(m, layer, active).sum(axis=0)


def _messages(m: Mapping, c: Counts, source: str, units_step: np.ndarray, scale: float) -> None:
    """Add messages of ``source`` given events per unit and step ``units_step [T, n_units]`` (already / B)."""
    bsrc = m.block_of_units(source)
    for (s, tgt), r in m.reach.items():
        if s != source:
            continue
        sl = m.blocks_of(tgt)
        per_dst = units_step @ r.T.astype(float) * scale  # [T, nb_tgt]
        c.msgs_in_step[:, sl] += per_dst
        if bsrc is None:
            c.msgs_out_step[:, -1] += per_dst.sum(axis=1)
            c.pair_msgs[(source, tgt)] = per_dst.sum(axis=0)[None, :]
            continue
        tot_units = units_step.sum(axis=0) * scale  # [n_units]; units of a block are contiguous
        c.pair_msgs[(source, tgt)] = np.add.reduceat(tot_units[:, None] * r.T, m.starts[source], axis=0)
        out_units = units_step * r.sum(axis=0)[None, :] * scale
        np.add.at(c.msgs_out_step.T, bsrc, out_units.T)


def connection_synops(
    table: LayerTable, conn: Connection, activity: dict[str, np.ndarray], steps: int, batch: int
) -> tuple[np.ndarray, bool]:
    """The one count of synaptic ops (REFERENCE.md §8): for every non-zero value at the weight node's input, its
    fan-out into the connection (non-zero weights only; conv borders, stride and padding included), per sample.

    Returns ``[T, n_out]`` ops landing on each target neuron per step and whether the input was binary ({0, ±1}:
    ACs) or not (MACs). The input is the recorded activity of the node in front of the weight node, or the
    source's activity carried through the connection's Flatten/pool/Scale path when that node is not recorded.
    """
    x_id = conn.path[-1] if conn.path else conn.source
    if x_id in activity:
        x = np.asarray(activity[x_id], dtype=np.float64)
    else:
        src = np.asarray(activity[conn.source], dtype=np.float64)
        x = apply_path(table, conn, src.reshape(steps * batch, *table.shapes[conn.source]))
    x = x.reshape(steps, batch, *conn.in_shape)
    binary = bool(np.isin(x, (0.0, 1.0, -1.0)).all())
    nzc = (x != 0).sum(axis=1)
    return count_map(conn, nzc).reshape(steps, -1) / batch, binary


def measured_synops(table: LayerTable, activity: dict[str, np.ndarray]) -> dict[str, dict[str, dict]]:
    """Synaptic ops per sample of every connection, from per-neuron activity ``{node_id: [T, B, *shape]}``:
    ``{weight node: {target layer: {"source", "acs_per_sample", "macs_per_sample"}}}``.

    What ``nasflow simulate`` records in simulate.json so that costing its per-node totals gives the same ops as
    costing activity.npz (``counts_from_totals`` uses them instead of the events × mean fan-out estimate).
    """
    steps, batch = _check(activity, table)
    out: dict[str, dict[str, dict]] = {}
    for conn in table.connections:
        if conn.bare:  # no weight node to record it under; its count is exact from the source's spikes anyway
            continue
        per_out, binary = connection_synops(table, conn, activity, steps, batch)
        total = float(per_out.sum())
        out.setdefault(conn.node_id, {})[conn.target] = {
            "source": conn.source,
            "acs_per_sample": total if binary else 0.0,
            "macs_per_sample": 0.0 if binary else total,
        }
    return out


def counts_from_activity(m: Mapping, activity: dict[str, np.ndarray], input_spiking: bool | None = None) -> Counts:
    """Exact per-block counts from per-neuron activity ``{node_id: [T, B, *shape]}``."""
    table = m.table
    steps, batch = _check(activity, table)
    c = _empty(m, steps, "neuron")
    for conn in table.connections:
        per_out, binary = connection_synops(table, conn, activity, steps, batch)
        total = float(per_out.sum())
        (c.acs if binary else c.macs)[conn.node_id] = (c.acs if binary else c.macs).get(conn.node_id, 0.0) + total
        c.synops_step[:, m.blocks_of(conn.target)] += _block_sum(m, conn.target, per_out)
        c.layer_synops[conn.target] = c.layer_synops.get(conn.target, 0.0) + total
        if conn.kind == "conv":
            c.layer_synops_conv[conn.target] = c.layer_synops_conv.get(conn.target, 0.0) + total
    for name, lay in table.layers.items():
        out = np.asarray(activity[name]).reshape(steps, batch, -1) if name in activity else None
        feeds = [k.source if k.bare else k.node_id for k in lay.incoming]  # what each input adds to the neurons
        pre = [np.asarray(activity[f]).reshape(steps, batch, -1) for f in feeds if f in activity]
        active = None
        if out is not None and len(pre) == len(lay.incoming):
            got = sum(pre) != 0 if pre else np.zeros_like(out, dtype=bool)
            active = (got | (out != 0)).sum(axis=1) / batch
        elif out is not None:
            active = (out != 0).sum(axis=1) / batch
            c.notes.append(f"layer {name}: inputs not recorded, active updates = neurons that fired")
        _updates(m, c, name, active)
        if lay.spiking and out is not None:
            c.spikes[name] = float((out != 0).sum() / batch)
    for src in table.sources():
        a = np.asarray(activity[src])
        _messages(m, c, src, _unit_sums(a, table.shapes[src]).astype(float), 1.0 / batch)
        if src in table.input_ids:
            c.spikes[src] = float((a != 0).sum() / batch)
    return c


@dataclass
class NodeStats:
    """Per-connection constants for per-node totals (computed once per mapping)."""

    mean_fanout: dict[str, float]
    out_share: dict[str, np.ndarray]  # [n_out] share of the connection's ops per target neuron (uniform input)
    unit_share: dict[str, np.ndarray]  # source → [n_units] share of the source's neurons per unit


def node_stats(m: Mapping) -> NodeStats:
    """Mean fan-out and the uniform-rate distribution of ops over target neurons, per connection."""
    mf, share, units = {}, {}, {}
    for conn in m.table.connections:
        f = fanout_map(conn)
        mf[conn.node_id] = float(f.mean())
        key = ("out_share", conn_signature(conn))
        cached = shared_get(key)
        if cached is None:
            ones = count_map(conn, np.ones((1, *conn.in_shape))).ravel()
            cached = shared_put(key, ones / max(ones.sum(), 1e-300))
        share[conn.node_id] = cached
    for src in m.table.sources():
        shp = m.table.shapes[src]
        n_units = int(np.prod(shp)) // (shp[2] if len(shp) == 3 else 1)
        units[src] = np.full(n_units, 1.0 / n_units)
    return NodeStats(mf, share, units)


def _number(entry: dict | None, node: str, key: str) -> float | None:
    """``entry[key]`` as a finite float >= 0; None when absent or null (simulate.json writes null for counts that
    do not apply, e.g. spikes of a non-neuron node)."""
    val = entry.get(key) if isinstance(entry, dict) else None
    if val is None:
        return None
    try:
        num = float(val)
    except (TypeError, ValueError):
        raise ActivityError(f"node {node!r}: {key} must be a finite number >= 0, got {val!r}") from None
    if not np.isfinite(num) or num < 0:
        raise ActivityError(f"node {node!r}: {key} must be a finite number >= 0, got {val!r}")
    return num


def _events(totals: dict, node: str, m: Mapping, steps: int, input_spiking: bool | None) -> tuple[float, bool]:
    """Events per sample of a source node and whether they are spikes (binary)."""
    entry = totals.get(node)
    spikes = _number(entry, node, "spikes_per_sample")
    nonzero = _number(entry, node, "nonzero_per_sample")
    if node in m.table.input_ids:
        if spikes is not None:
            return spikes, True if input_spiking is None else input_spiking
        if nonzero is not None:
            return nonzero, bool(input_spiking)
        return float(np.prod(m.table.shapes[node]) * steps), bool(input_spiking)  # dense analog input every step
    if spikes is None and nonzero is None:
        raise ActivityError(f"node totals lack node {node!r} (give its spikes_per_sample)")
    layer = m.table.layers.get(node)
    return (spikes if spikes is not None else nonzero), (layer is None or layer.spiking)  # analog: graded values


def _measured(totals: dict, conn: Connection) -> tuple[float, float]:
    """(ACs, MACs) per sample of ``conn`` as recorded by ``measured_synops``."""
    by_target = (totals.get(conn.node_id) or {}).get("synops")
    rec = by_target.get(conn.target) if isinstance(by_target, dict) else None
    if not isinstance(rec, dict):
        raise ActivityError(
            f"node totals carry measured synops but none for node {conn.node_id!r} (into {conn.target!r}); "
            "re-run nasflow simulate on this graph"
        )
    acs = _number(rec, conn.node_id, "acs_per_sample")
    macs = _number(rec, conn.node_id, "macs_per_sample")
    return acs or 0.0, macs or 0.0


def _estimated(
    totals: dict, conn: Connection, m: Mapping, steps: int, stats: NodeStats, input_spiking: bool | None
) -> tuple[float, bool]:
    """(ops, binary) of ``conn`` from its source's events: a given ``synops_per_sample`` or events × mean fan-out
    (exact when every input of the connection has the same fan-out, an estimate otherwise)."""
    ev, spikes = _events(totals, conn.source, m, steps, input_spiking)
    binary = spikes and conn.static_binary if conn.source not in m.table.input_ids else spikes and not conn.path
    given = _number(totals.get(conn.node_id), conn.node_id, "synops_per_sample")
    return (given if given is not None else ev * stats.mean_fanout[conn.node_id]), binary


def _has_measured(totals: dict, conn: Connection) -> bool:
    by_target = (totals.get(conn.node_id) or {}).get("synops")
    return isinstance(by_target, dict) and isinstance(by_target.get(conn.target), dict)


def counts_from_totals(
    m: Mapping,
    totals: dict[str, dict],
    steps: int,
    stats: NodeStats | None = None,
    input_spiking: bool | None = None,
    estimate_unmeasured: bool = False,
) -> Counts:
    """Layer-level estimates from per-node totals per sample (uniform rates over neurons and steps).

    Totals that carry measured synops for some connections must carry them for all (a simulate.json that lost
    some is refused, naming the node), unless ``estimate_unmeasured``: then the connections without a record are
    estimated from their source's events and named in the notes. That is for callers whose measurements cover the
    model's own synapses but not the ones the export adds (the search's ``ActivityMonitor`` counts conv/linear
    layers; a spiking max-pool's SumPool2d and the voting Affine exist only in the NIR graph; their fan-out is
    uniform, so the estimate is exact for them).
    """
    if steps <= 0:
        raise ActivityError(f"steps must be a positive number of time steps, got {steps}")
    for nid in totals:
        if nid not in m.table.shapes and nid not in m.table.wires:
            raise ActivityError(f"node totals name node {nid!r}, which is not in the graph")
    stats = stats or node_stats(m)
    c = _empty(m, steps, "node")
    c.notes.append("layer-level estimate from per-node totals: uniform rates over neurons and steps")
    measured = any(isinstance(v, dict) and isinstance(v.get("synops"), dict) for v in totals.values())
    if measured:
        c.notes.append("synaptic ops as measured per connection (by nasflow simulate or the search's activity monitor)")
    table = m.table
    estimated: list[str] = []
    for conn in table.connections:
        if measured and not conn.bare and (not estimate_unmeasured or _has_measured(totals, conn)):
            acs, macs = _measured(totals, conn)
            total = acs + macs
            if acs or not macs:
                c.acs[conn.node_id] = c.acs.get(conn.node_id, 0.0) + acs
            if macs:
                c.macs[conn.node_id] = c.macs.get(conn.node_id, 0.0) + macs
        else:
            total, binary = _estimated(totals, conn, m, steps, stats, input_spiking)
            ops = c.acs if binary else c.macs
            ops[conn.node_id] = ops.get(conn.node_id, 0.0) + total
            if measured and not conn.bare:  # a bare edge's fan-out is 1: its count is exact
                estimated.append(f"{conn.node_id} (into {conn.target})")
        per_out = (stats.out_share[conn.node_id] * total / steps)[None, :].repeat(steps, 0)
        c.synops_step[:, m.blocks_of(conn.target)] += _block_sum(m, conn.target, per_out)
        c.layer_synops[conn.target] = c.layer_synops.get(conn.target, 0.0) + total
        if conn.kind == "conv":
            c.layer_synops_conv[conn.target] = c.layer_synops_conv.get(conn.target, 0.0) + total
    if estimated:
        c.notes.append(f"synaptic ops not measured, estimated from events × mean fan-out: {', '.join(estimated)}")
    for name, lay in table.layers.items():
        fired = 0.0
        if lay.spiking:
            entry = totals.get(name)
            got = _number(entry, name, "spikes_per_sample")
            fired = got if got is not None else (_number(entry, name, "nonzero_per_sample") or 0.0)
        frac = np.full((1, lay.n_neurons), fired / max(lay.n_neurons * steps, 1))
        _updates(m, c, name, frac.repeat(steps, 0))
        if lay.spiking and name in totals:
            c.spikes[name] = float(fired)
    for src in table.sources():
        ev, _ = _events(totals, src, m, steps, input_spiking)
        units = (stats.unit_share[src] * ev / steps)[None, :].repeat(steps, 0)
        _messages(m, c, src, units, 1.0)
        if src in table.input_ids:
            c.spikes[src] = ev
    return c
