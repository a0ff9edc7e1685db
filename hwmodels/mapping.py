"""Map a layer table onto a chip: split layers into per-core blocks, check limits, place blocks on the mesh.

Splitting (neuromorphic chips): a layer is cut into equal blocks of whole units (rows of a 3-D layer, neurons of a
1-D one), as large as the per-core neuron limit allows, then smaller until every block's synapse memory
(nengo-loihi's accounting: per input axon, groups of ``synapses_per_group`` synapses of weight+delay+tag+index
bits plus a ``group_header_bits`` header, rounded up to ``word_bits`` words) and fan-in axons fit, then smaller
again until each block's fan-out axons (neurons × destination cores) fit. One block per core.

Speck: each layer (weight node + neurons) takes one core whose kernel and neuron memories hold it
(``C_in·2^(⌈log2 kh·kw⌉+⌈log2 C_out⌉)`` kernel entries, ``C_out·2^(⌈log2 H⌉+⌈log2 W⌉)`` neuron entries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwmodels.graph import Connection, Layer, LayerTable
from hwmodels.numerics import block_counts, conn_signature, group_words, reach_to_source, shared_get, shared_put
from hwmodels.placement import core_coords, static_pair_weights, traffic_place
from hwmodels.profiles import ChipProfile

__all__ = ["Mapping", "Violation", "map_layers"]


@dataclass(frozen=True)
class Violation:
    """One broken limit: which layer, which limit, the value needed and the chip's limit."""

    layer: str
    limit: str
    value: float
    allowed: float
    message: str

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "limit": self.limit,
            "value": self.value,
            "allowed": self.allowed,
            "over_by": self.value - self.allowed,
            "message": self.message,
        }


@dataclass
class Mapping:
    """Blocks (one per core), their coordinates and the reach of every source unit onto target blocks."""

    table: LayerTable
    profile: ChipProfile
    starts: dict[str, np.ndarray]  # layer → first unit of each block
    block_offset: dict[str, int]  # layer → index of its first block
    coords: np.ndarray  # [n_blocks, 2] (x, y) tile coordinates, chips side by side
    words: np.ndarray  # synapse memory words per block
    axons_in: np.ndarray
    axons_out: np.ndarray
    reach: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (source, layer) → [nb, n_src_units]
    violations: list[Violation] = field(default_factory=list)
    cores_used: int = 0
    chips_needed: int = 1
    placement: str = "greedy"

    @property
    def fits(self) -> bool:
        return not self.violations and self.chips_needed <= 1

    @property
    def n_blocks(self) -> int:
        return int(self.coords.shape[0])

    def blocks_of(self, layer: str) -> slice:
        """Slice of the global block index range that holds ``layer``."""
        off = self.block_offset[layer]
        return slice(off, off + len(self.starts[layer]))

    def block_of_units(self, node: str) -> np.ndarray | None:
        """Global block index of every unit of a layer (``None`` for Input nodes, which live on the host)."""
        if node not in self.starts:
            return None
        layer = self.table.layers[node]
        idx = np.searchsorted(self.starts[node], np.arange(layer.n_units), side="right") - 1
        return idx + self.block_offset[node]

    def block_rows(self) -> list[dict]:
        """One row per block: layer, units, neurons, core coordinates and memory use."""
        rows = []
        for name, st in self.starts.items():
            layer = self.table.layers[name]
            stops = np.append(st[1:], layer.n_units)
            for i, (a, b) in enumerate(zip(st, stops)):
                g = self.block_offset[name] + i
                rows.append(
                    {
                        "layer": name,
                        "block": i,
                        "units": [int(a), int(b)],
                        "neurons": int(b - a) * layer.unit_size,
                        "x": int(self.coords[g, 0]),
                        "y": int(self.coords[g, 1]),
                        "synapse_words": int(self.words[g]),
                        "axons_in": int(self.axons_in[g]),
                        "axons_out": int(self.axons_out[g]),
                    }
                )
        return rows


def _lim(profile: ChipProfile, key: str) -> float:
    v = profile.get(key)
    return math.inf if v is None else float(v)


def _bits_per_synapse(profile: ChipProfile) -> int:
    return sum(int(profile.get(k, 0)) for k in ("weight_bits", "delay_bits", "tag_bits", "index_bits")) or 8


def _conn_loads(
    conn: Connection, layer: Layer, starts: np.ndarray, profile: ChipProfile, cache: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(words, axons, counts[nb, n_in_units]) of one connection for a blocking of its target layer."""
    key = (conn.node_id, conn.target, starts.tobytes())
    if key in cache:
        return cache[key]
    bps, grp = _bits_per_synapse(profile), int(profile.get("synapses_per_group", 64))
    hdr, wb = float(profile.get("group_header_bits", 10)), int(profile.get("word_bits", 64))
    sharing = bool(profile.get("conv_weight_sharing", False))
    content_key = ("loads", conn_signature(conn), layer.shape, starts.tobytes(), bps, grp, hdr, wb, sharing)
    shared = shared_get(content_key)
    if shared is not None:
        cache[key] = shared
        return shared
    counts = block_counts(conn, starts, layer.unit_size)
    u_in = conn.in_shape[2] if conn.kind == "conv" else 1
    if conn.kind == "conv" and sharing:
        # one kernel copy per block for the output channels it holds (units are spatial-major: u = y·C + c)
        stops, nch = np.append(starts[1:], layer.n_units), layer.shape[0]
        c0, c1 = starts % nch, (stops - 1) % nch + 1
        whole = (stops - starts >= nch) | (c1 <= c0)
        c0, c1 = np.where(whole, 0, c0), np.where(whole, nch, c1)
        cs = np.concatenate([np.zeros((1, *conn.nz.shape[1:])), np.cumsum(conn.nz, axis=0)])
        words = np.array([group_words(cs[b] - cs[a], bps, grp, hdr, wb).sum() for a, b in zip(c0, c1)])
    else:
        words = (group_words(counts, bps, grp, hdr, wb) * u_in).sum(axis=1)
    axons = ((counts > 0) * u_in).sum(axis=1).astype(float)
    cache[key] = shared_put(content_key, (words, axons, counts))
    return cache[key]


def _layer_loads(layer: Layer, starts: np.ndarray, profile: ChipProfile, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    words, axons = np.zeros(len(starts)), np.zeros(len(starts))
    for conn in layer.incoming:
        w, a, _ = _conn_loads(conn, layer, starts, profile, cache)
        words += w
        axons += a
    return words, axons


def _split_in(layer: Layer, profile: ChipProfile, cache: dict, violations: list[Violation]) -> int:
    """Units per block so that neurons, synapse memory and fan-in axons fit."""
    u, n = layer.unit_size, layer.n_units
    max_neurons = _lim(profile, "neurons_per_core")
    if u > max_neurons:
        violations.append(
            Violation(
                layer.node_id,
                "neurons_per_core",
                u,
                max_neurons,
                f"layer {layer.node_id!r}: one row of {u} neurons exceeds the {int(max_neurons)} neurons per core",
            )
        )
        return 1
    k = int(min(n, max_neurons // u))
    lim_w, lim_a = _lim(profile, "synapse_words_per_core"), _lim(profile, "fan_in_axons")
    for _ in range(64):
        starts = np.arange(0, n, k)
        words, axons = _layer_loads(layer, starts, profile, cache)
        ratio = max(words.max() / lim_w, axons.max() / lim_a)
        if ratio <= 1:
            return k
        if k == 1:
            name, val, lim = (
                ("synapse_words_per_core", words.max(), lim_w)
                if words.max() > lim_w
                else ("fan_in_axons", axons.max(), lim_a)
            )
            violations.append(
                Violation(
                    layer.node_id,
                    name,
                    float(val),
                    lim,
                    f"layer {layer.node_id!r}: {int(val)} {name.replace('_per_core', '')} for a "
                    f"single {'row' if u > 1 else 'neuron'} > {int(lim)} per core (split fan-in "
                    "or use fewer inputs)",
                )
            )
            return 1
        k = max(1, min(k - 1, int(k / ratio)))
    return k


def _reaches(table: LayerTable, starts: dict, profile: ChipProfile, cache: dict, into: str | None = None) -> dict:
    """Reach of every source unit onto target blocks, per (source, target); only into ``into`` when given."""
    reach: dict[tuple[str, str], np.ndarray] = {}
    for conn in table.connections:
        if into is not None and conn.target != into:
            continue
        layer = table.layers[conn.target]
        _, _, counts = _conn_loads(conn, layer, starts[conn.target], profile, cache)
        r = reach_to_source(table, conn, counts > 0)
        key = (conn.source, conn.target)
        reach[key] = reach[key] | r if key in reach else r
    return reach


def _destinations(table: LayerTable, reach: dict, source: str) -> np.ndarray:
    """Destination cores of one neuron of each unit of ``source`` (all target layers)."""
    n_units = int(np.prod(table.shapes[source])) // (table.shapes[source][2] if len(table.shapes[source]) == 3 else 1)
    d = np.zeros(n_units)
    for (s, _), r in reach.items():
        if s == source:
            d += r.sum(axis=0)
    return d


def _split_neuromorphic(table: LayerTable, profile: ChipProfile) -> tuple[dict, dict, list, dict]:
    cache: dict = {}
    violations: list[Violation] = []
    k = {name: _split_in(layer, profile, cache, violations) for name, layer in table.layers.items()}
    starts = {name: np.arange(0, layer.n_units, k[name]) for name, layer in table.layers.items()}
    lim_out = _lim(profile, "fan_out_axons")
    reach = _reaches(table, starts, profile, cache)
    # Fan-out axons (neurons × destination cores) depend on the targets' blocks, so settle the last layers first
    # and shrink only the source: shrinking both ends would leave neurons × destinations unchanged.
    for name in reversed(list(table.layers)):
        layer = table.layers[name]
        d = _destinations(table, reach, name) * layer.unit_size
        if not d.size or not d.any():
            continue
        changed = False
        for _ in range(64):
            worst = np.add.reduceat(d, starts[name]).max()
            if worst <= lim_out or k[name] == 1:
                break
            k[name] = max(1, min(k[name] - 1, int(k[name] * lim_out / worst)))
            starts[name] = np.arange(0, layer.n_units, k[name])
            changed = True
        if worst > lim_out:
            violations.append(
                Violation(
                    name,
                    "fan_out_axons",
                    float(worst),
                    lim_out,
                    f"layer {name!r}: {int(worst)} fan-out axons (neurons × destination cores) "
                    f"for a single {'row' if layer.unit_size > 1 else 'neuron'} > {int(lim_out)}",
                )
            )
        if changed:
            reach.update(_reaches(table, starts, profile, cache, into=name))
    return starts, reach, violations, cache


def _speck_entries(table: LayerTable, layer: Layer) -> tuple[int, int, tuple[int, int], tuple[int, int]]:
    """(kernel entries, neuron entries, kernel size, stride) of a Speck layer (its one incoming connection)."""
    conn = layer.incoming[0]
    if conn.kind == "conv":
        cin, cout = conn.in_shape[0], conn.out_shape[0]
        kh, kw = conn.geom.kernel
        stride = conn.geom.stride
        hout, wout = conn.out_shape[1], conn.out_shape[2]
    else:  # a dense layer is a convolution whose kernel covers the whole input
        flats = [i for i, p in enumerate(conn.path) if type(table.graph.nodes[p]).__name__ == "Flatten"]
        src3 = table.shapes[conn.path[flats[0] - 1] if flats[0] else conn.source] if flats else None
        cin, (kh, kw) = (src3[0], src3[1:]) if src3 is not None and len(src3) == 3 else (conn.n_in, (1, 1))
        cout, hout, wout, stride = conn.n_out, 1, 1, (1, 1)

    def lg(v: int) -> int:
        return int(math.ceil(math.log2(v))) if v > 1 else 0

    kernel = cin * 2 ** (lg(kh * kw) + lg(cout))
    neurons = cout * 2 ** (lg(hout) + lg(wout))
    return kernel, neurons, (kh, kw), stride


def _map_speck(table: LayerTable, profile: ChipProfile) -> tuple[dict, list[Violation], list[int]]:
    kmem, nmem = profile.get("kernel_memory"), profile.get("neuron_memory")
    violations: list[Violation] = []
    need = []
    for name, layer in table.layers.items():
        if len(layer.incoming) != 1:
            violations.append(
                Violation(
                    name,
                    "inputs_per_layer",
                    len(layer.incoming),
                    1,
                    f"layer {name!r}: {len(layer.incoming)} weight nodes feed it; a Speck core "
                    "takes one convolution per layer",
                )
            )
            need.append((name, 0, 0))
            continue
        kern, neur, ksize, stride = _speck_entries(table, layer)
        need.append((name, kern, neur))
        if kern > max(kmem):
            violations.append(
                Violation(
                    name,
                    "kernel_memory",
                    kern,
                    max(kmem),
                    f"layer {name!r}: kernel memory {kern:,} entries > {max(kmem):,} (largest core)",
                )
            )
        if neur > max(nmem):
            violations.append(
                Violation(
                    name,
                    "neuron_memory",
                    neur,
                    max(nmem),
                    f"layer {name!r}: neuron memory {neur:,} entries > {max(nmem):,} (largest core)",
                )
            )
        mk = profile.get("max_kernel_size")
        if mk and max(ksize) > mk:
            violations.append(
                Violation(
                    name, "max_kernel_size", max(ksize), mk, f"layer {name!r}: kernel {ksize[0]}x{ksize[1]} > {mk}x{mk}"
                )
            )
        strides = profile.get("strides")
        if strides and any(s not in strides for s in stride):
            violations.append(
                Violation(
                    name, "strides", max(stride), max(strides), f"layer {name!r}: stride {stride} not in {strides}"
                )
            )
        dests = {c.target for c in table.outgoing(name)}
        md = profile.get("max_destinations")
        if md is not None and len(dests) > md:
            violations.append(
                Violation(
                    name,
                    "max_destinations",
                    len(dests),
                    md,
                    f"layer {name!r}: feeds {len(dests)} layers > {md} destinations",
                )
            )
    assign = _assign_cores([(k, n) for _, k, n in need], kmem, nmem)
    if assign is None and not violations:
        violations.append(
            Violation(
                "*",
                "cores_per_chip",
                len(need),
                len(kmem),
                f"{len(need)} layers cannot be assigned to the {len(kmem)} cores' memories",
            )
        )
    starts = {name: np.array([0]) for name in table.layers}
    return starts, violations, assign or list(range(len(need)))


def _assign_cores(need: list[tuple[int, int]], kmem: list[int], nmem: list[int]) -> list[int] | None:
    """Backtracking assignment of layers to distinct cores whose memories hold them (largest layers first)."""
    order = sorted(range(len(need)), key=lambda i: -need[i][0])
    out: dict[int, int] = {}
    used: set[int] = set()

    def go(i: int) -> bool:
        if i == len(order):
            return True
        li = order[i]
        for c in sorted(range(len(kmem)), key=lambda c: (kmem[c], nmem[c])):
            if c not in used and need[li][0] <= kmem[c] and need[li][1] <= nmem[c]:
                used.add(c)
                out[li] = c
                if go(i + 1):
                    return True
                used.discard(c)
        return False

    return [out[i] for i in range(len(need))] if go(0) else None


def map_layers(
    table: LayerTable, profile: ChipProfile, placement: str = "greedy", traffic: np.ndarray | None = None
) -> Mapping:
    """Split and place ``table`` on ``profile``'s chip; ``placement`` is ``greedy`` or ``traffic`` (swap-based
    minimisation of messages × hops, weighted by ``traffic [nb, nb]`` or by static fan-out when not given)."""
    if placement not in ("greedy", "traffic"):
        raise ValueError(f"placement must be 'greedy' or 'traffic', got {placement!r}")
    cache: dict = {}
    if profile.kind == "neuromorphic":
        starts, reach, violations, cache = _split_neuromorphic(table, profile)
    elif profile.kind == "speck":
        starts, violations, _ = _map_speck(table, profile)
        reach = _reaches(table, starts, profile, cache)
    else:  # accelerator: one block per layer, no limits, no mesh
        starts, violations = {name: np.array([0]) for name in table.layers}, []
        reach = _reaches(table, starts, profile, cache)
    offset, n = {}, 0
    for name, st in starts.items():
        offset[name] = n
        n += len(st)
    words, axons_in, axons_out = np.zeros(n), np.zeros(n), np.zeros(n)
    for name, layer in table.layers.items():
        sl = slice(offset[name], offset[name] + len(starts[name]))
        words[sl], axons_in[sl] = _layer_loads(layer, starts[name], profile, cache)
        d = _destinations(table, reach, name) * layer.unit_size
        axons_out[sl] = np.add.reduceat(d, starts[name]) if d.size else 0
        per = profile.get("destinations_per_neuron")
        if per is not None and d.size and (d / layer.unit_size).max() > per:
            violations.append(
                Violation(
                    name,
                    "destinations_per_neuron",
                    float((d / layer.unit_size).max()),
                    per,
                    f"layer {name!r}: a neuron reaches {int((d / layer.unit_size).max())} cores > "
                    f"{per} per neuron (duplicate neurons with splitter cores)",
                )
            )
    coords = (
        core_coords(n, profile) if profile.kind == "neuromorphic" else np.stack([np.arange(n), np.zeros(n, int)], 1)
    )
    cpc = int(profile.get("cores_per_chip", n or 1))
    m = Mapping(
        table,
        profile,
        starts,
        offset,
        coords,
        words,
        axons_in,
        axons_out,
        reach,
        violations,
        n,
        max(1, math.ceil(n / cpc)) if profile.kind != "accelerator" else 1,
        placement,
    )
    if placement == "traffic" and profile.kind == "neuromorphic":
        m.coords = traffic_place(coords, traffic if traffic is not None else static_pair_weights(m))
    return m
