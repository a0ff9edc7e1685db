"""Placement of a mapping's blocks on the chip's mesh: where each core sits, and traffic-aware swaps.

``core_coords`` gives the default (greedy) placement: cores fill a tile, tiles fill the chip in serpentine
order, chips sit side by side. ``traffic_place`` then swaps blocks pairwise while Σ messages × hops drops,
weighted by measured block-to-block traffic or, without activity, by ``static_pair_weights``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hwmodels.profiles import ChipProfile

if TYPE_CHECKING:
    from hwmodels.mapping import Mapping

__all__ = ["core_coords", "static_pair_weights", "traffic_place"]


def core_coords(n: int, profile: ChipProfile) -> np.ndarray:
    """Tile coordinates of cores 0..n-1: cores fill a tile, tiles fill the chip serpentine, chips side by side."""
    cpt = int(profile.get("cores_per_tile", 1))
    mw, mh = int(profile.get("mesh_width", 1)), int(profile.get("mesh_height", 1))
    cpc = int(profile.get("cores_per_chip", max(n, 1)))
    c = np.arange(n)
    chip, local = c // cpc, c % cpc
    tile = np.minimum(local // cpt, mw * mh - 1)
    row, col = tile // mw, tile % mw
    col = np.where(row % 2 == 1, mw - 1 - col, col)
    return np.stack([chip * mw + col, row], axis=1)


def traffic_place(coords: np.ndarray, weights: np.ndarray, iters: int = 4000, seed: int = 0) -> np.ndarray:
    """Pairwise-swap hill climbing on Σ weight·hops (weights [nb, nb], symmetric use)."""
    n = len(coords)
    if n < 3 or not weights.any():
        return coords
    w = weights + weights.T
    pos = coords.copy()
    rng = np.random.default_rng(seed)

    def cost_of(i: int, p: np.ndarray) -> np.ndarray:
        return np.abs(pos - p).sum(axis=1) @ w[i]

    for _ in range(iters):
        i, j = rng.integers(0, n, 2)
        if i == j:
            continue
        before = cost_of(i, pos[i]) + cost_of(j, pos[j])
        pos[[i, j]] = pos[[j, i]]
        after = cost_of(i, pos[i]) + cost_of(j, pos[j])
        if after >= before:
            pos[[i, j]] = pos[[j, i]]
    return pos


def static_pair_weights(m: Mapping) -> np.ndarray:
    """Block-to-block messages per source spike under uniform rates: the placement weight without activity."""
    w = np.zeros((m.n_blocks, m.n_blocks))
    for (src, tgt), r in m.reach.items():
        bsrc = m.block_of_units(src)
        if bsrc is None:
            continue
        sl = m.blocks_of(tgt)
        np.add.at(
            w,
            (bsrc[None, :].repeat(r.shape[0], 0), np.arange(sl.start, sl.stop)[:, None].repeat(r.shape[1], 1)),
            r.astype(float),
        )
    return w
