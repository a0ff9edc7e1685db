#!/usr/bin/env python
"""Check EQUATIONS.md numerically: a tiny numpy re-implementation of NIR's reference Euler semantics
(the ones nasflow's ``exporters/nir_torch.py`` documents), run on the dialect fixtures with and without
the per-framework rewrites, compared against each framework's own outputs stored in the .npz files.

Needs only numpy, h5py and nir (1.0.4 in the peer env; nasflow's nir 1.0.8 works too, read with type_check=False):

    python verify_peers.py [--dir DIR]

Modes, per case:
  plain    the .nir file read literally: Euler with the file's parameters, spike where v > v_threshold,
           reset to 0 (NIR LIF/IF/CubaLIF have no v_reset field; 0 is their rest), one spike per step,
           dt = what the framework implies (1 step for sinabs, 1e-3 s for rockpool); no recurrence
  params   the parameter rewrites of EQUATIONS.md (tau', r', w_in', and for rockpool_rec the recurrent matrix the
           exporter dropped, on a back edge delivering the previous step's spikes), but NIR's ``>`` and reset to 0
  gt_sub   the rewrites, NIR's ``>``, one spike per step, subtractive reset (nasflow's reset="subtract")
  full     the rewrites plus the framework's spike rule: n = floor(v/thr) spikes where v >= thr, v -= n*thr
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nir
import numpy as np

CASES = ["sinabs_ff", "sinabs_conv", "rockpool_ff", "rockpool_rec"]


def _order(graph: nir.NIRGraph) -> list[str]:
    preds = {k: [a for a, b in graph.edges if b == k] for k in graph.nodes}
    done: list[str] = []
    while len(done) < len(graph.nodes):
        progressed = False
        for k in graph.nodes:
            if k not in done and all(p in done for p in preds[k]):
                done.append(k)
                progressed = True
        if not progressed:
            raise ValueError("cycle in the forward edges")
    return done


def _conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride, padding) -> np.ndarray:
    ph, pw = (int(p) for p in padding)
    sh, sw = (int(s) for s in stride)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # B,C,H,W,kh,kw
    return np.einsum("bchwij,ocij->bohw", win, w) + b.reshape(1, -1, 1, 1)


def _sumpool(x: np.ndarray, k, s) -> np.ndarray:
    kh, kw = (int(v) for v in k)
    assert tuple(int(v) for v in s) == (kh, kw)
    B, C, H, W = x.shape
    return x[:, :, : H // kh * kh, : W // kw * kw].reshape(B, C, H // kh, kh, W // kw, kw).sum(axis=(3, 5))


class Neuron:
    """One LIF / IF / CubaLIF node; parameters possibly rewritten; spike rule by mode."""

    def __init__(self, node, kind: str, dt: float, dialect: str, mode: str) -> None:
        f = lambda a: np.asarray(a, np.float64)  # noqa: E731
        self.kind, self.dt, self.mode = kind, dt, mode
        self.thr = f(node.v_threshold)
        if kind == "IF":
            self.r = f(node.r)
        elif kind == "LIF":
            tau, self.r, self.v_leak = f(node.tau), f(node.r), f(node.v_leak)
            if mode != "plain" and dialect == "sinabs":
                alpha = np.exp(-1.0 / tau)  # sinabs: alpha = exp(-1/tau_mem), tau in steps
                tau = dt / (1.0 - alpha)  # Euler factor dt/tau' = 1 - alpha
                # norm_input=True (sinabs default): input enters as (1-alpha)*I = dt/tau' * r * I with r = 1 -> keep r
            self.k = dt / tau
        elif kind == "CubaLIF":
            tau_s, tau_m = f(node.tau_syn), f(node.tau_mem)
            self.r, self.v_leak, self.w_in = f(node.r), f(node.v_leak), f(node.w_in)
            if mode != "plain" and dialect == "rockpool":
                alpha, beta = np.exp(-dt / tau_m), np.exp(-dt / tau_s)
                tau_s, self.w_in = dt / (1 - beta), self.w_in * beta / (1 - beta)
                tau_m, self.r = dt / (1 - alpha), np.ones_like(tau_m) / (1 - alpha)
                # rockpool's LIF bias (0 here) would be v_leak' = bias/(1-alpha); the exporter does not write it
                self.v_leak = np.zeros_like(tau_m)
            self.k_s, self.k = dt / tau_s, dt / tau_m
        self.v = self.i = None

    def step(self, x: np.ndarray) -> np.ndarray:
        if self.v is None:
            self.v = np.zeros_like(x)
            self.i = np.zeros_like(x)
        if self.kind == "IF":
            self.v = self.v + self.r * x
        elif self.kind == "LIF":
            self.v = self.v + self.k * (self.v_leak - self.v + self.r * x)
        else:
            self.i = self.i + self.k_s * (-self.i + self.w_in * x)
            self.v = self.v + self.k * (self.v_leak - self.v + self.r * self.i)
        thr = np.broadcast_to(self.thr, self.v.shape)
        if self.mode == "full":
            n = np.where(self.v >= thr, np.floor(self.v / thr), 0.0)
            self.v = self.v - n * thr
        elif self.mode == "gt_sub":
            n = (self.v > thr).astype(np.float64)
            self.v = self.v - n * thr
        else:
            n = (self.v > thr).astype(np.float64)
            self.v = np.where(n > 0, 0.0, self.v)
        return n


def simulate(graph: nir.NIRGraph, x: np.ndarray, dt: float, dialect: str, mode: str,
             back: tuple[str, np.ndarray] | None = None) -> dict[str, dict[str, np.ndarray]]:
    order = _order(graph)
    preds = {k: [a for a, b in graph.edges if b == k] for k in graph.nodes}
    neurons = {k: Neuron(n, type(n).__name__, dt, dialect, mode) for k, n in graph.nodes.items()
               if type(n).__name__ in ("LIF", "IF", "CubaLIF")}
    rec: dict[str, dict[str, list]] = {k: {"spikes": [], "v": [], "i": []} for k in neurons}
    outs_t = []
    prev: dict[str, np.ndarray] = {}
    for t in range(x.shape[0]):
        cur: dict[str, np.ndarray] = {}
        for k in order:
            node = graph.nodes[k]
            kind = type(node).__name__
            if kind == "Input":
                cur[k] = x[t].astype(np.float64)
                continue
            u = sum(cur[p] for p in preds[k])
            if back is not None and k == back[0] and back[0] in prev:  # previous step's spikes, NIR W[post, pre]
                u = u + prev[back[0]] @ back[1].T
            if kind == "Affine":
                y = u @ np.asarray(node.weight, np.float64).T + np.asarray(node.bias, np.float64)
            elif kind == "Linear":
                y = u @ np.asarray(node.weight, np.float64).T
            elif kind == "Conv2d":
                y = _conv2d(u, np.asarray(node.weight, np.float64), np.asarray(node.bias, np.float64),
                            node.stride, node.padding)
            elif kind == "SumPool2d":
                y = _sumpool(u, node.kernel_size, node.stride)
            elif kind == "Flatten":
                assert int(node.start_dim) == 0 and int(node.end_dim) == -1
                y = u.reshape(u.shape[0], -1)
            elif k in neurons:
                y = neurons[k].step(u)
                rec[k]["spikes"].append(y)
                rec[k]["v"].append(neurons[k].v.copy())
                rec[k]["i"].append(np.array(neurons[k].i))
            elif kind == "Output":
                y = u
                outs_t.append(y)
            else:
                raise NotImplementedError(kind)
            cur[k] = y
        prev = cur
    res = {k: {n: np.stack(v) for n, v in d.items()} for k, d in rec.items()}
    res["output"] = {"spikes": np.stack(outs_t)}
    return res


def recover_dt(r: float, tau: float) -> float:
    """Solve r = tau*exp(-dt/tau)/dt (rockpool's exported r) for dt by bisection (the right side falls with dt)."""
    lo, hi = 1e-12, 100 * tau
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        if tau * np.exp(-mid / tau) / mid > r:
            lo = mid
        else:
            hi = mid
    return float(np.sqrt(lo * hi))


def read(path: Path) -> nir.NIRGraph:
    """nir >= 1.0.5 type-checks on read and rejects sinabs' shape-() LIF and rockpool's [1, N] Input node."""
    try:
        return nir.read(path, type_check=False)
    except TypeError:  # nir <= 1.0.4 has no type_check argument (and does not check)
        return nir.read(path)


def check(d: Path, case: str) -> list[str]:
    graph = read(d / f"{case}.nir")
    data = dict(np.load(d / f"{case}.npz"))
    meta = json.loads((d / f"{case}.json").read_text())
    dialect, dt = meta["framework"], float(meta["dt"]["implied"])
    back = None
    wk = [k for k in data if k.startswith("w_rec_nir__")]
    if wk:
        back = (wk[0].split("__", 1)[1], data[wk[0]].astype(np.float64))
    lines = [f"### {case} ({dialect} {meta['framework_version']}, dt={dt})"]
    if dialect == "rockpool":
        for k, n in graph.nodes.items():
            if type(n).__name__ == "CubaLIF":
                taus, rs = np.ravel(n.tau_mem), np.ravel(n.r)
                got = [recover_dt(float(r), float(t)) for r, t in zip(rs, taus)]
                lines.append(f"dt recovered from {k}'s r and tau_mem: {min(got):.9g} .. {max(got):.9g} s")
    for mode in ("plain", "params", "gt_sub", "full"):
        res = simulate(graph, data["input"], dt, dialect, mode, back if mode != "plain" else None)
        parts = []
        for key in sorted(k for k in data if k.startswith("spikes__")):
            nid = key.split("__", 1)[1]
            mine, theirs = res[nid]["spikes"], data[key].astype(np.float64)
            part = f"{nid}: spike entries differing {int((mine != theirs).sum())}/{mine.size}"
            if f"v__{nid}" in data:
                part += f", max|dv| {np.abs(res[nid]['v'] - data[f'v__{nid}']).max():.3g}"
            if f"i__{nid}" in data:
                part += f", max|di| {np.abs(res[nid]['i'] - data[f'i__{nid}']).max():.3g}"
            parts.append(part)
        same_out = bool(np.array_equal(res["output"]["spikes"], data["output"]))
        lines.append(f"- {mode:6s}: output identical={same_out}; " + "; ".join(parts))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent)
    a = ap.parse_args()
    for case in CASES:
        if (a.dir / f"{case}.nir").exists():
            print("\n".join(check(a.dir, case)))
            print()


if __name__ == "__main__":
    main()
