"""The fan-out map: how many (output, non-zero weight) pairs each input element of a weight node feeds.

It is the factor of every effective-synaptic-op count (REFERENCE.md §8: ops = Σ non-zero inputs × fan-out),
so the training-time activity monitor (``nasflow.snn.activity``) and the hardware models (``hwmodels``)
must agree on it to the op: both call this one numpy definition (borders, stride, dilation, groups and
uneven ``"same"`` padding included).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["affine_fanout", "conv_fanout"]


def affine_fanout(nonzero: np.ndarray) -> np.ndarray:
    """Fan-out of each input of an ``(out, in)`` weight matrix, from its non-zero mask (float64 counts)."""
    return np.asarray(nonzero, dtype=bool).sum(axis=0).astype(np.float64)


def conv_fanout(nonzero: np.ndarray, in_shape: Sequence[int], stride: Sequence[int],
                pads: Sequence[tuple[int, int]], dilation: Sequence[int], groups: int = 1) -> np.ndarray:
    """Fan-out of each input position ``(C_in, H, W)`` of a 2-D convolution (float64 counts).

    ``nonzero`` is the ``(C_out, C_in/groups, kh, kw)`` mask of non-zero weights and ``pads`` the (before,
    after) zero padding per spatial dim (``exporters.core.shapes.conv_pads``). Positions no window reaches
    (when the stride does not divide) feed nothing.
    """
    nz = np.asarray(nonzero, dtype=bool)
    cin, hin, win = (int(s) for s in in_shape)
    cout, cig, kh, kw = nz.shape
    cog = cout // groups
    # per kernel tap, how many non-zero weights each input channel feeds
    taps = np.zeros((cin, kh, kw))
    for g in range(groups):
        taps[g * cig:(g + 1) * cig] = nz[g * cog:(g + 1) * cog].sum(axis=0)
    (pt, pb), (pl, pr) = pads
    ho = (hin + pt + pb - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (win + pl + pr - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho < 1 or wo < 1:
        return np.zeros((cin, hin, win))
    padded = np.zeros((cin, hin + pt + pb + kh * dilation[0], win + pl + pr + kw * dilation[1]))
    rows0, cols0 = stride[0] * np.arange(ho), stride[1] * np.arange(wo)
    for ky in range(kh):
        for kx in range(kw):
            kc = taps[:, ky, kx]
            if not kc.any():
                continue
            rows, cols = rows0 + ky * dilation[0], cols0 + kx * dilation[1]
            padded[:, rows[:, None], cols[None, :]] += kc[:, None, None]
    return padded[:, pt:pt + hin, pl:pl + win]
