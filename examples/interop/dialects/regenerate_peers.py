#!/usr/bin/env python
"""Regenerate the Sinabs / Rockpool NIR "dialect" fixtures.

Runs ONLY in the separate peer environment described in README.md (sinabs and rockpool pin ``nir<=1.0.4``,
so they cannot live in nasflow's environment); CI never runs it.

    python regenerate_peers.py --out DIR          # writes <fw>_<case>.{nir,npz,json} for the four cases

Every case is built from fixed seeds: weights come from ``numpy.random.default_rng(seed)``, input spikes are
Bernoulli draws from another seeded generator, so a rerun with the same package versions writes the same
arrays (the .nir files are HDF5 and may differ in bytes, not in content).

Array layout in every .npz: time first, batch second: ``[T, B, *shape]`` where ``shape`` is the NIR node's
shape without batch/time.  Keys: ``input``, ``output``, ``spikes__<nir node id>``, ``v__<nir node id>``
(membrane after the step, i.e. after reset), for rockpool also ``i__<nir node id>`` (synaptic current after
the step) and, for the recurrent case, ``w_rec_nir__<nir node id>`` (the recurrent matrix the exporter drops,
in NIR orientation ``[post, pre]``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")  # nirtorch's deprecation notice for extract_nir_graph, rockpool's backend notes

import nir  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(1)


def _versions(fw: str) -> dict:
    return {
        "framework": fw,
        "framework_version": version(fw),
        "nir_version": version("nir"),
        "nirtorch_version": version("nirtorch"),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }


def _spikes_in(seed: int, shape: tuple, rate: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < rate).astype(np.float32)


def _draw(seed: int, spec: list[tuple[str, float, float, tuple]]) -> tuple[dict, str]:
    """Draw float32 normal(mean, std, shape) arrays in order from default_rng(seed); also describe the draws."""
    rng = np.random.default_rng(seed)
    arrays = {name: rng.normal(m, s, shape).astype(np.float32) for name, m, s, shape in spec}
    text = f"numpy.random.default_rng({seed}), drawn in this order, cast to float32: " + ", ".join(
        f"{name}=normal({m}, {s}, {tuple(shape)})" for name, m, s, shape in spec)
    return arrays, text


def _build(calls: list[str], ns: dict) -> list:
    """Evaluate the constructor calls verbatim (so the strings recorded in the .json are exactly what ran)."""
    return [eval(c, ns) for c in calls]  # noqa: S307 - our own literal strings


def _counts(arrs: dict) -> dict:
    out = {}
    for k, a in arrs.items():
        if k.startswith("spikes__") or k == "output":
            out[k] = {"total_spikes": float(a.sum()), "rate_per_neuron_step": float((a > 0).mean()),
                      "max_spikes_in_one_step": float(a.max()), "entries_with_more_than_one_spike": int((a > 1).sum())}
    return out


def _write(out: Path, name: str, graph: nir.NIRGraph, arrs: dict, meta: dict) -> None:
    nir.write(out / f"{name}.nir", graph)
    np.savez_compressed(out / f"{name}.npz", **{k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrs.items()})
    meta = dict(meta)
    meta["arrays"] = {k: list(v.shape) for k, v in arrs.items()}
    meta["spike_counts"] = _counts(arrs)
    meta["nir_graph"] = {
        "nodes": {k: type(v).__name__ for k, v in graph.nodes.items()},
        "edges": sorted([list(e) for e in graph.edges]),
        "metadata": {k: str(v) for k, v in (graph.metadata or {}).items()},
    }
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
    counts = meta["spike_counts"].items()
    print(f"{name}: " + ", ".join(f"{k}={v['total_spikes']:.0f} (rate {v['rate_per_neuron_step']:.2f}, "
                                  f"max/step {v['max_spikes_in_one_step']:.0f})" for k, v in counts))


# ------------------------------------------------------------------------------------------------ sinabs

SINABS_EQUATIONS = {
    "LIF/LIFSqueeze (tau_syn=None)": [
        "alpha = exp(-1/tau_mem)            # tau_mem in time steps; no dt anywhere (sinabs/layers/lif.py:121)",
        "i = x[t]                           # no synaptic state when tau_syn is None (functional/lif.py:22)",
        "v = alpha*v + (1-alpha)*i          # norm_input=True (the LIF default); v = alpha*v + i if norm_input=False",
        "n = (v > 0) * trunc(v / thr)       # MultiSpike: n spikes per step, n >= 1 iff v >= thr"
        " (spike_generation.py:39)",
        "v = v - n*thr                      # MembraneSubtract, same step (reset_mechanism.py:45)",
        "v = max(v, min_v_mem)              # only if min_v_mem is not None (default None) (functional/lif.py:41)",
        "state starts at 0; this step's input reaches v this step",
    ],
    "IAF/IAFSqueeze (tau_syn=None)": [
        "v = v + x[t]                       # alpha_mem = 1, norm_input=False (sinabs/layers/iaf.py:60-78)",
        "n = (v > 0) * trunc(v / thr); v = v - n*thr   # MultiSpike + MembraneSubtract, same step",
        "v = max(v, min_v_mem) only if min_v_mem is set (default None); state starts at 0",
    ],
    "nn.Linear / nn.Conv2d": ["y = W x + b (bias added every step, before the neuron)"],
    "SumPool2d": ["torch.nn.LPPool2d with norm_type=1: sum over each kernel window (sinabs/layers/pool2d.py:94)"],
}


def sinabs_cases(out: Path) -> None:
    import sinabs
    import sinabs.layers as sl

    # ---- sinabs_ff: Linear(bias) -> LIF -> Linear -> IAF
    T, B, seed = 40, 3, 1
    p, ptext = _draw(seed, [("W1", 0.3, 0.6, (24, 16)), ("b1", 0.3, 0.1, (24,)), ("W2", 0.07, 0.06, (8, 24))])
    calls = [
        "nn.Linear(16, 24, bias=True)",
        f"sl.LIFSqueeze(tau_mem=4.0, spike_threshold=1.0, batch_size={B}, record_states=True)",
        "nn.Linear(24, 8, bias=False)",
        f"sl.IAFSqueeze(spike_threshold=1.0, batch_size={B}, record_states=True)",
    ]
    mods = _build(calls, {"nn": nn, "sl": sl})
    model = nn.Sequential(*mods)
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(p["W1"]))
        model[0].bias.copy_(torch.from_numpy(p["b1"]))
        model[2].weight.copy_(torch.from_numpy(p["W2"]))
    x = _spikes_in(seed + 1000, (T, B, 16), 0.25)
    arrs = _run_sinabs(model, x, spiking=["1", "3"])
    graph = sinabs.to_nir(model, torch.from_numpy(x.transpose(1, 0, 2).reshape(B * T, 16)))
    _check_ids(graph, ["1", "3"])
    meta = _versions("sinabs") | {
        "case": "sinabs_ff",
        "exporter_call": "sinabs.to_nir(model, sample_data)  # sinabs/nir.py:233, sample_data = the (B*T, 16) input",
        "model": "torch.nn.Sequential(*modules)",
        "constructor_calls": calls,
        "parameter_setup": ptext + "; copied into model[0].weight, model[0].bias, model[2].weight",
        "input": f"Bernoulli(p=0.25) from numpy default_rng({seed + 1000}).random((T,B,16)) < 0.25; "
                 "fed to sinabs as x.transpose(1,0,2).reshape(B*T,16) (batch-major, squeezed)",
        "T": T, "B": B,
        "dt": {"implied": 1.0, "unit": "one time step (sinabs has no dt; alpha = exp(-1/tau_mem), tau in steps)",
               "recorded_in_nir": False},
        "neuron_equations": SINABS_EQUATIONS,
        "node_ids": {"1": "LIFSqueeze -> nir.LIF(tau=4.0 scalar, r=1, v_leak=0, v_threshold=1) -- scalar params, "
                          "so the LIF node has shape () in the file (input_type empty)",
                     "3": "IAFSqueeze -> nir.IF(r=ones(8), v_threshold=ones(8))"},
        "nir_reference_rewrites": {
            "dt": 1.0,
            "LIF": "tau' = 1/(1-exp(-1/tau)); r' = r (norm_input=True) [r' = tau' if norm_input=False]; v_leak=0",
            "IF": "unchanged",
            "threshold": ">=", "reset": "subtract", "multi_spike": "n = floor(v/thr) for v>0 (MultiSpike)",
            "norm_input": True,
        },
    }
    _write(out, "sinabs_ff", graph, arrs, meta)

    # ---- sinabs_conv: Conv2d -> IAF -> SumPool2d -> Flatten -> Linear -> IAF
    T, B, seed = 30, 2, 2
    p, ptext = _draw(seed, [("Wc", 0.06, 0.08, (4, 2, 3, 3)), ("bc", 0.05, 0.05, (4,)),
                            ("Wl", 0.006, 0.03, (10, 64)), ("bl", 0.05, 0.03, (10,))])
    calls = [
        "nn.Conv2d(2, 4, kernel_size=3, padding=1, bias=True)",
        f"sl.IAFSqueeze(spike_threshold=1.0, batch_size={B}, record_states=True)",
        "sl.SumPool2d(kernel_size=2)",
        "nn.Flatten()",
        "nn.Linear(64, 10, bias=True)",
        f"sl.IAFSqueeze(spike_threshold=1.0, batch_size={B}, record_states=True)",
    ]
    mods = _build(calls, {"nn": nn, "sl": sl})
    model = nn.Sequential(*mods)
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(p["Wc"]))
        model[0].bias.copy_(torch.from_numpy(p["bc"]))
        model[4].weight.copy_(torch.from_numpy(p["Wl"]))
        model[4].bias.copy_(torch.from_numpy(p["bl"]))
    x = _spikes_in(seed + 1000, (T, B, 2, 8, 8), 0.25)
    arrs = _run_sinabs(model, x, spiking=["1", "5"])
    graph = sinabs.to_nir(model, torch.from_numpy(x.transpose(1, 0, 2, 3, 4).reshape(B * T, 2, 8, 8)))
    # sinabs writes nir.Conv2d(input_shape=None) and nir.Flatten(input_type=None); nir 1.0.4's nir.write then fails
    # with "TypeError: One of data, shape or dtype must be specified". NIR's own forward type inference fills
    # exactly those fields (Conv2d.input_shape=(8, 8), input/output types) from the Input node; nothing else changes.
    graph.infer_types()
    _check_ids(graph, ["1", "5"])
    meta = _versions("sinabs") | {
        "case": "sinabs_conv",
        "exporter_call": "sinabs.to_nir(model, sample_data)  # sinabs/nir.py:233, sample_data = the (B*T,2,8,8) input",
        "model": "torch.nn.Sequential(*modules)",
        "constructor_calls": calls,
        "parameter_setup": ptext + "; copied into model[0].weight, model[0].bias, model[4].weight, model[4].bias",
        "input": f"Bernoulli(p=0.25) from numpy default_rng({seed + 1000}).random((T,B,2,8,8)) < 0.25",
        "T": T, "B": B,
        "dt": {"implied": 1.0, "unit": "one time step (no time constants in this graph)", "recorded_in_nir": False},
        "neuron_equations": SINABS_EQUATIONS,
        "node_ids": {"1": "IAFSqueeze -> nir.IF(r=ones(4,8,8), v_threshold=ones(4,8,8))",
                     "5": "IAFSqueeze -> nir.IF(r=ones(10), v_threshold=ones(10))"},
        "written_with": "g = sinabs.to_nir(model, sample_data); g.infer_types(); nir.write(path, g)",
        "notes": ["sinabs.to_nir returns nir.Conv2d(input_shape=None) and nir.Flatten(input_type=None): nir.write (nir "
                  "1.0.4) on that graph raises 'TypeError: One of data, shape or dtype must be specified' (h5py cannot "
                  "store None). nir's own NIRGraph.infer_types() is called before writing; it sets Conv2d.input_shape "
                  "= (8, 8) and the input/output types of nodes 0, 2, 3 from the Input node; no parameter changes",
                  "SumPool2d written with kernel_size=(2,2), stride=(2,2), padding=(0,0)",
                  "nn.Flatten(start_dim=1) -> nir.Flatten(start_dim=0, end_dim=-1) (batch dim removed)"],
        "nir_reference_rewrites": {"dt": 1.0, "IF": "unchanged", "threshold": ">=", "reset": "subtract",
                                   "multi_spike": "n = floor(v/thr) for v>0 (MultiSpike)"},
    }
    _write(out, "sinabs_conv", graph, arrs, meta)


def _check_ids(graph: nir.NIRGraph, ids: list[str]) -> None:
    missing = [i for i in ids if i not in graph.nodes]
    if missing:
        raise RuntimeError(f"expected NIR node ids {missing} not in {list(graph.nodes)}")


def _run_sinabs(model: nn.Module, x: np.ndarray, spiking: list[str]) -> dict:
    T, B = x.shape[:2]
    caught: dict[str, torch.Tensor] = {}
    hooks = [getattr(model, k).register_forward_hook(lambda m, i, o, k=k: caught.__setitem__(k, o.detach()))
             for k in spiking]
    xb = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1)).reshape(B * T, *x.shape[2:]))
    with torch.no_grad():
        y = model(xb)
    for h in hooks:
        h.remove()

    def tb(a: torch.Tensor) -> np.ndarray:  # (B*T, ...) -> (T, B, ...)
        return np.swapaxes(a.reshape(B, T, *a.shape[1:]).numpy(), 0, 1)

    arrs = {"input": x, "output": tb(y)}
    for k in spiking:
        arrs[f"spikes__{k}"] = tb(caught[k])
        rec = getattr(model, k).recordings["v_mem"]  # (B, T, ...) after reset
        arrs[f"v__{k}"] = np.swapaxes(rec.numpy(), 0, 1)
    return arrs


# ------------------------------------------------------------------------------------------------ rockpool

ROCKPOOL_EQUATIONS = {
    "LIFTorch (leak_mode='taus', n_synapses=1, noise_std=0)": [
        "alpha = exp(-dt/tau_mem); beta = exp(-dt/tau_syn)    # lif_torch.py:128-129, 524",
        "isyn = isyn + x[t]                                   # lif_torch.py:687 (no input gain)",
        "isyn = isyn + s[t-1] @ w_rec                        # lif_torch.py:690-694: LAST step's"
        " spikes, w_rec[pre, post]",
        "v = alpha*v;  isyn = beta*isyn                       # lif_torch.py:697-698 (decay AFTER"
        " adding this step's input)",
        "v = v + isyn + bias (+ noise)                        # lif_torch.py:701 (this step's input"
        " reaches v this step)",
        "n = (v >= thr) * floor(v/thr), capped at max_spikes_per_dt=2**16   # StepPWL, lif_torch.py:43-46",
        "v = v - n*thr                                        # lif_torch.py:709, same step",
        "no clamping; state starts at 0 (vmem, isyn, spikes); w_rec is zeros when has_rec=False",
    ],
    "LinearTorch": ["y = x @ W + b  (W stored (in, out); bias only with has_bias=True)  # linear_torch.py:130-141"],
}


def rockpool_cases(out: Path) -> None:
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch, to_nir

    dt = 1e-3
    ns = {"Sequential": Sequential, "LIFTorch": LIFTorch, "LinearTorch": LinearTorch, "np": np}

    # ---- rockpool_ff: LinearTorch(bias) -> LIFTorch -> LinearTorch -> LIFTorch
    T, B, seed = 40, 3, 3
    p, ptext = _draw(seed, [("W1", 0.02, 0.06, (16, 24)), ("b1", 0.0, 0.01, (24,)), ("W2", 0.05, 0.08, (24, 8))])
    ns.update(p)
    ns["taus2"] = np.linspace(4e-3, 8e-3, 8).astype(np.float32)
    calls = [
        "LinearTorch((16, 24), weight=W1, bias=b1, has_bias=True)",
        "LIFTorch(24, tau_mem=5e-3, tau_syn=3e-3, threshold=1.0, dt=1e-3)",
        "LinearTorch((24, 8), weight=W2)",
        "LIFTorch(8, tau_mem=taus2, tau_syn=2e-3, threshold=1.0, dt=1e-3)",
    ]
    net = Sequential(*_build(calls, ns))
    x = _spikes_in(seed + 1000, (T, B, 16), 0.25)
    arrs = _run_rockpool(net, x, lif_ids=["1_LIFTorch", "3_LIFTorch"])
    graph = to_nir(net)
    _check_ids(graph, ["1_LIFTorch", "3_LIFTorch"])
    meta = _versions("rockpool") | {
        "case": "rockpool_ff",
        "exporter_call": "rockpool.nn.modules.to_nir(net)  # rockpool/nn/modules/torch/nir.py:301, default sample_data "
                         "torch.zeros((1, net.size_in)) so the Input node is written with shape [1, 16]",
        "model": "rockpool.nn.combinators.Sequential(*modules)",
        "constructor_calls": calls,
        "parameter_setup": ptext + " (rockpool weights are (in, out)); taus2 = linspace(4e-3, 8e-3, 8) float32",
        "input": f"Bernoulli(p=0.25) from numpy default_rng({seed + 1000}).random((T,B,16)) < 0.25; "
                 "fed to rockpool as x.transpose(1,0,2) (batch, time, channel) via net.evolve(x, record=True)",
        "input_shape_note": "the NIR Input node records shape [1, 16] (rockpool's sample batch kept) "
                            "and Output [1, 1, 8]; "
                            "the npz uses the per-sample shapes (16,) and (8,)",
        "T": T, "B": B,
        "dt": {"implied": dt, "unit": "seconds", "recorded_in_nir": False,
               "recoverable_from_file": "yes: the exporter writes r = tau_mem*exp(-dt/tau_mem)/dt, which is strictly "
                                        "decreasing in dt; solve it for dt"},
        "neuron_equations": ROCKPOOL_EQUATIONS,
        "node_ids": {"0_LinearTorch": "nir.Affine(weight=W1.T, bias=b1)", "1_LIFTorch": "nir.CubaLIF",
                     "2_LinearTorch": "nir.Linear(weight=W2.T)", "3_LIFTorch": "nir.CubaLIF (per-neuron tau_mem)"},
        "nir_reference_rewrites": _rockpool_rewrites(dt),
    }
    _write(out, "rockpool_ff", graph, arrs, meta)

    # ---- rockpool_rec: LinearTorch -> LIFTorch(has_rec=True)
    T, B, seed = 50, 2, 4
    p, ptext = _draw(seed, [("W1r", 0.02, 0.06, (16, 12)), ("Wrec", 0.0, 0.05, (12, 12))])
    ns.update(p)
    calls = [
        "LinearTorch((16, 12), weight=W1r)",
        "LIFTorch(12, tau_mem=6e-3, tau_syn=4e-3, threshold=1.0, has_rec=True, w_rec=Wrec, dt=1e-3)",
    ]
    net = Sequential(*_build(calls, ns))
    x = _spikes_in(seed + 1000, (T, B, 16), 0.25)
    arrs = _run_rockpool(net, x, lif_ids=["1_LIFTorch"])
    arrs["w_rec_nir__1_LIFTorch"] = net[1].w_rec.detach().numpy().T.copy()  # NIR orientation [post, pre]
    graph = to_nir(net)
    _check_ids(graph, ["1_LIFTorch"])
    meta = _versions("rockpool") | {
        "case": "rockpool_rec",
        "exporter_call": "rockpool.nn.modules.to_nir(net)",
        "model": "rockpool.nn.combinators.Sequential(*modules)",
        "constructor_calls": calls,
        "parameter_setup": ptext + "; Wrec is rockpool's w_rec, used as irec = spikes @ w_rec (w_rec[pre, post])",
        "input": f"Bernoulli(p=0.25) from numpy default_rng({seed + 1000}).random((T,B,16)) < 0.25",
        "T": T, "B": B,
        "dt": {"implied": dt, "unit": "seconds", "recorded_in_nir": False,
               "recoverable_from_file": "yes, from r and tau_mem as in rockpool_ff"},
        "neuron_equations": ROCKPOOL_EQUATIONS,
        "node_ids": {"0_LinearTorch": "nir.Linear(weight=W1r.T)", "1_LIFTorch": "nir.CubaLIF"},
        "LOST_IN_EXPORT": "the recurrent weights: _extract_rockpool_module (nir.py:252-275) maps LIFTorch to a bare "
                          "CubaLIF and never reads w_rec, so the .nir has no recurrent edge. The npz keeps them as "
                          "w_rec_nir__1_LIFTorch = w_rec.T (NIR [post, pre]); to reproduce the output add nodes/edges "
                          "1_LIFTorch -> Linear(w_rec_nir) -> 1_LIFTorch delivering the PREVIOUS step's spikes "
                          "into the CubaLIF input (same w_in path as the feed-forward input)",
        "nir_reference_rewrites": _rockpool_rewrites(dt),
    }
    _write(out, "rockpool_rec", graph, arrs, meta)


def _rockpool_rewrites(dt: float) -> dict:
    return {
        "dt": dt,
        "CubaLIF": "alpha=exp(-dt/tau_mem), beta=exp(-dt/tau_syn); tau_syn' = dt/(1-beta); w_in' = w_in*beta/(1-beta); "
                   "tau_mem' = dt/(1-alpha); r' = 1/(1-alpha) (ignore the file's r = tau_mem*alpha/dt); "
                   "v_leak' = bias/(1-alpha) (bias is not in the file: the exporter writes v_leak = 0)",
        "threshold": ">=", "reset": "subtract",
        "multi_spike": "n = floor(v/thr) where v >= thr (StepPWL, max 2**16)",
        "recurrent": "w_rec dropped by the exporter; back edge with one-step delay into the CubaLIF input",
    }


def _run_rockpool(net, x: np.ndarray, lif_ids: list[str]) -> dict:
    xb = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1)))  # (B, T, N)
    with torch.no_grad():
        y, _, rec = net.evolve(xb, record=True)
    sw = lambda a: np.swapaxes(a.detach().numpy(), 0, 1)  # noqa: E731
    arrs = {"input": x, "output": sw(y)}
    for k in lif_ids:
        arrs[f"spikes__{k}"] = sw(rec[k]["spikes"])
        arrs[f"v__{k}"] = sw(rec[k]["vmem"])
        arrs[f"i__{k}"] = sw(rec[k]["isyn"][..., 0])  # n_synapses == 1
    return arrs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--only", choices=["sinabs", "rockpool"], default=None)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.only in (None, "sinabs"):
        sinabs_cases(a.out)
    if a.only in (None, "rockpool"):
        rockpool_cases(a.out)


if __name__ == "__main__":
    sys.exit(main())
