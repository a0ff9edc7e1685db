"""Energy and latency from counts on a mapping, per term, layer and core.

Terms: ``synops`` (synaptic ops × E_synop; on AC/MAC accelerators ACs × E_AC + MACs × E_MAC; on a neuromorphic
chip that prices graded spikes, ``e_mac``, its MACs at E_MAC), ``neuron_updates``
(active/inactive × E_update), ``messages`` (messages × (E_message + hops_EW·E_hop_EW + hops_NS·E_hop_NS)),
``memory`` (optional, after Lemaire et al. 2022: one weight read per op, one state read and write per update),
``static`` (static power × chips × steps × latency bound per step). A term whose price the profile lacks is left
out and listed in ``terms_missing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hwmodels.mapping import Mapping
from hwmodels.profiles import ChipProfile
from hwmodels.traffic import Counts

__all__ = ["DEFAULT_TERMS", "EventPrices", "energy_and_latency", "event_prices", "link_loads"]

DEFAULT_TERMS = ("synops", "neuron_updates", "messages")
ALL_TERMS = DEFAULT_TERMS + ("memory", "static")


def _e(m: Mapping, key: str) -> float | None:
    v = m.profile.get(key)
    return None if v is None else float(v)


@dataclass(frozen=True)
class EventPrices:
    """Joules per synaptic op on binary input, per neuron update and per message (0 where the chip has none).

    What a search needs to price a *candidate* op before any graph exists (SpikeDHS's differentiable energy
    term); a mapped graph is priced by ``energy_and_latency``, which reads the same profile keys.
    """

    synop: float
    update: float
    message: float


def event_prices(profile: ChipProfile) -> EventPrices:
    """The per-event prices of ``profile``: ``e_synop`` (accelerators: ``e_ac``), the active update price (else the
    inactive one) and, on neuromorphic chips, ``e_message``."""
    g = lambda key: None if profile.get(key) is None else float(profile.get(key))  # noqa: E731
    synop = g("e_synop") if profile.kind != "accelerator" else g("e_ac")
    update = g("e_update_active") if g("e_update_active") is not None else g("e_update_inactive")
    message = g("e_message") if profile.kind == "neuromorphic" else None
    return EventPrices(synop or 0.0, update or 0.0, message or 0.0)


def _pair_coords(m: Mapping, src: str, tgt: str) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of a source's blocks (the host at (0, 0) for Input nodes) and of a target layer's blocks."""
    a = m.coords[m.blocks_of(src)] if src in m.starts else np.zeros((1, 2), dtype=int)
    return a, m.coords[m.blocks_of(tgt)]


def _hop_cost(m: Mapping, e_key: tuple[str, str], base_key: str, src: str, tgt: str) -> np.ndarray:
    """Cost of one message for every (source block or host, target block) pair: [nb_src, nb_tgt]."""
    a, b = _pair_coords(m, src, tgt)
    dx = np.abs(a[:, None, 0] - b[None, :, 0])
    dy = np.abs(a[:, None, 1] - b[None, :, 1])
    return (_e(m, base_key) or 0.0) + dx * (_e(m, e_key[0]) or 0.0) + dy * (_e(m, e_key[1]) or 0.0)


def _synop_energy(m: Mapping, c: Counts) -> tuple[np.ndarray | None, dict[str, float]]:
    """Per block and per layer synaptic energy, or None when unpriced."""
    per_block = c.synops_step.sum(axis=0)
    per_layer: dict[str, float] = {}
    if m.profile.kind == "accelerator":
        e_ac, e_mac = _e(m, "e_ac"), _e(m, "e_mac")
        if e_ac is None or e_mac is None:
            return None, {}
        for conn in m.table.connections:
            v = c.acs.get(conn.node_id, 0.0) * e_ac + c.macs.get(conn.node_id, 0.0) * e_mac
            per_layer[conn.target] = per_layer.get(conn.target, 0.0) + v
        out = np.zeros(m.n_blocks)
        for name, v in per_layer.items():
            sl = m.blocks_of(name)
            tot = per_block[sl].sum()
            out[sl] = v * (per_block[sl] / tot if tot else 1.0 / (sl.stop - sl.start))
        return out, per_layer
    e = _e(m, "e_synop")
    if e is None:
        return None, {}
    e_conv = _e(m, "e_synop_conv") or e
    e_mac = _e(m, "e_mac")  # graded spikes (Loihi 2): their ops are multiplies, priced on their own
    macs_into: dict[str, float] = {}
    for conn in m.table.connections:
        macs_into[conn.target] = macs_into.get(conn.target, 0.0) + c.macs.get(conn.node_id, 0.0)
    out = np.zeros(m.n_blocks)
    for name in m.table.layers:
        sl = m.blocks_of(name)
        tot = c.layer_synops.get(name, 0.0)
        conv_frac = c.layer_synops_conv.get(name, 0.0) / tot if tot else 0.0
        price = conv_frac * e_conv + (1 - conv_frac) * e
        mac_frac = min(macs_into.get(name, 0.0) / tot, 1.0) if (tot and e_mac is not None) else 0.0
        out[sl] = per_block[sl] * (price + mac_frac * ((e_mac or 0.0) - price))
        per_layer[name] = float(out[sl].sum())
    return out, per_layer


def link_loads(m: Mapping, c: Counts) -> tuple[np.ndarray, np.ndarray]:
    """Messages per sample on every mesh link under XY routing (X first along the source row, then Y along the
    target column): ``east_west [H, W-1]`` (link between x and x+1) and ``north_south [H-1, W]``."""
    w = int(m.coords[:, 0].max()) + 1 if m.n_blocks else 1
    h = int(m.coords[:, 1].max()) + 1 if m.n_blocks else 1
    dh, dv = np.zeros((h, w + 1)), np.zeros((w, h + 1))
    for (src, tgt), pm in c.pair_msgs.items():
        a, b = _pair_coords(m, src, tgt)
        x0, y0 = np.broadcast_to(a[:, None, 0], pm.shape), np.broadcast_to(a[:, None, 1], pm.shape)
        x1, y1 = np.broadcast_to(b[None, :, 0], pm.shape), np.broadcast_to(b[None, :, 1], pm.shape)
        np.add.at(dh, (y0, np.minimum(x0, x1)), pm)
        np.add.at(dh, (y0, np.maximum(x0, x1)), -pm)
        np.add.at(dv, (x1, np.minimum(y0, y1)), pm)
        np.add.at(dv, (x1, np.maximum(y0, y1)), -pm)
    return np.cumsum(dh, axis=1)[:, : w - 1], np.cumsum(dv, axis=1)[:, : h - 1].T


def _barrier(m: Mapping, tiles: int) -> float:
    lo, hi = _e(m, "t_barrier_min"), _e(m, "t_barrier_max")
    if lo is None:
        return 0.0
    n_max = float(m.profile.get("barrier_tiles_max", 32))
    return lo + (max(hi or lo, lo) - lo) * min(max(tiles - 1, 0) / max(n_max - 1, 1), 1.0)


def latency_per_step(m: Mapping, c: Counts) -> tuple[float | None, np.ndarray]:
    """Bound per step: the busiest core's ops, updates and sent messages, plus the longest route and barrier sync."""
    p = m.profile
    if p.kind == "speck":
        t_ev = _e(m, "t_event")
        per = c.msgs_in_step.max(axis=1) * t_ev if t_ev is not None else np.zeros(c.steps)
        return (float(per.max()) if t_ev is not None else None), per
    if _e(m, "t_synop") is None:  # a fixed tick (TrueNorth's 1 ms) or unknown
        tick = _e(m, "t_event")
        return (tick, np.full(c.steps, tick)) if tick is not None else (None, np.zeros(c.steps))
    inactive = (c.updates - c.active_updates) / c.steps
    core = (
        c.synops_step * _e(m, "t_synop")
        + (c.active_updates / c.steps) * (_e(m, "t_update_active") or 0.0)
        + inactive * (_e(m, "t_update_inactive") or 0.0)
        + c.msgs_out_step[:, :-1] * (_e(m, "t_message") or 0.0)
    )
    route = 0.0
    for (src, tgt), pm in c.pair_msgs.items():
        used = pm > 0
        if used.any():
            route = max(route, float(_hop_cost(m, ("t_hop_ew", "t_hop_ns"), "t_message", src, tgt)[used].max()))
    tiles = len({(int(x), int(y)) for x, y in m.coords})
    per = core.max(axis=1) + route + _barrier(m, tiles)
    return float(per.max()), per


def energy_and_latency(
    m: Mapping, c: Counts, terms: tuple[str, ...] | None = None, update_pricing: str = "split"
) -> dict[str, Any]:
    """Energy per sample (J) per term, layer and core, and the latency bound per step."""
    terms = tuple(terms) if terms is not None else DEFAULT_TERMS
    bad = [t for t in terms if t not in ALL_TERMS]
    if bad:
        raise ValueError(f"unknown energy terms {bad}; choose from {', '.join(ALL_TERMS)}")
    if update_pricing not in ("split", "active", "inactive"):
        raise ValueError(f"update_pricing must be 'split', 'active' or 'inactive', got {update_pricing!r}")
    nb = m.n_blocks
    per_term_block: dict[str, np.ndarray] = {}
    missing: list[str] = []
    syn, _ = _synop_energy(m, c)
    if "synops" in terms:
        (missing.append("synops") if syn is None else per_term_block.__setitem__("synops", syn))
    if "neuron_updates" in terms:
        ea, ei = _e(m, "e_update_active"), _e(m, "e_update_inactive")
        ei = ea if ei is None else ei
        ea = ei if ea is None else ea
        if ea is None:
            missing.append("neuron_updates")
        else:
            act = {"split": c.active_updates, "active": c.updates, "inactive": np.zeros(nb)}[update_pricing]
            per_term_block["neuron_updates"] = act * ea + (c.updates - act) * ei
    if "messages" in terms:
        if m.profile.kind != "neuromorphic" or all(_e(m, k) is None for k in ("e_message", "e_hop_ew", "e_hop_ns")):
            missing.append("messages")
        else:
            # charged to the sending core; host-injected events to the receiving cores
            msg = np.zeros(nb)
            for (src, tgt), pm in c.pair_msgs.items():
                cost = pm * _hop_cost(m, ("e_hop_ew", "e_hop_ns"), "e_message", src, tgt)
                if src in m.starts:
                    msg[m.blocks_of(src)] += cost.sum(axis=1)
                else:
                    msg[m.blocks_of(tgt)] += cost.sum(axis=0)
            per_term_block["messages"] = msg
    if "memory" in terms:
        er, ew = _e(m, "e_mem_read"), _e(m, "e_mem_write")
        if er is None:
            missing.append("memory")
        else:
            per_term_block["memory"] = c.synops_step.sum(axis=0) * er + c.updates * (er + (ew or er))
    lat, lat_steps = latency_per_step(m, c)
    static = None
    if _e(m, "p_static_per_chip") is not None and lat is not None:
        static = _e(m, "p_static_per_chip") * m.chips_needed * float(lat_steps.sum())
    if "static" in terms:
        if static is None:
            missing.append("static")
        else:
            per_term_block["static"] = np.full(nb, static / max(nb, 1))
    by_term = {k: float(v.sum()) for k, v in per_term_block.items()}
    per_core = sum(per_term_block.values()) if per_term_block else np.zeros(nb)
    per_layer = {}
    for name in m.table.layers:
        sl = m.blocks_of(name)
        per_layer[name] = {k: float(v[sl].sum()) for k, v in per_term_block.items()}
    return {
        "energy_per_sample_j": float(sum(by_term.values())) if by_term else None,  # None: nothing priced
        "energy_terms_j": by_term,
        "terms_included": [t for t in terms if t in per_term_block],
        "terms_missing": missing,
        "update_pricing": update_pricing,
        "static_energy_per_sample_j": static,
        "energy_per_core_j": np.asarray(per_core, dtype=float),
        "energy_per_layer_j": per_layer,
        "latency_per_step_s": lat,
        "latency_steps_s": lat_steps,
    }

