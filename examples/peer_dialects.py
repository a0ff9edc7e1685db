"""Bring NIR files from snnTorch, Norse, Sinabs and Rockpool and get the spikes their own framework computes.

    python examples/peer_dialects.py [--out runs/peer-dialects]

snnTorch and Norse (installed with nasflow) build small networks here, export them with their own NIR exporter
and simulate them; the Sinabs and Rockpool files and simulations come from ``examples/interop/dialects`` (made in
a separate environment, since both pin nir <= 1.0.4). Every file is then read by nasflow twice, as plain NIR and
with the producer's dialect (``read_nir(path, dialect=...)``, ``nasflow simulate --dialect``), and run on the torch
reference. Writes ``dialects.json`` and ``dialects.md``: per case the framework's spikes and how many spike
entries (neuron × step × sample) each reading gets wrong; the plain column is how different the frameworks are.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import torch

from exporters import nir_torch
from exporters.core.errors import NIRFormatError
from exporters.core.jsonio import SCHEMA_VERSION, write_json
from exporters.nir_io import read_nir

FIXTURES = Path(__file__).resolve().parent / "interop" / "dialects"
T, B, N_IN, N_HID, N_OUT = 40, 2, 6, 8, 5
NORSE_DT = 1e-3  # the modules' step; Norse <= 1.1.0 files then need dt = NORSE_DT · exporter dt (norse#411)


@dataclass
class Case:
    """A NIR file, its input and the producing framework's spikes per NIR node ``[T, B, *shape]``."""

    name: str
    dialect: str
    path: Path
    x: np.ndarray
    spikes: dict[str, np.ndarray]
    dt: float | None = None  # the step the dialect reading needs when the file has none
    plain_dt: float | None = None  # the step a plain NIR reading is given
    patch: Callable[[nir.NIRGraph], None] | None = field(default=None, repr=False)  # restores what an exporter lost


def spike_input(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return (torch.rand(T, B, *shape, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def loud(layer: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    """Seeded weights large enough that every layer fires (and a bias of 0.3 spread)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * scale)
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.3)
    return layer


def vec(n: int, v: float) -> torch.Tensor:
    return torch.full((n,), float(v))


# ------------------------------------------------------------------------------------------------------ snnTorch


class SnnNet(torch.nn.Module):
    """``Linear → neuron → Linear → neuron`` with snnTorch neurons (``init_hidden``)."""

    def __init__(self, first: torch.nn.Module, second: torch.nn.Module) -> None:
        super().__init__()
        self.fc1, self.lif1 = loud(torch.nn.Linear(N_IN, N_HID), 1.2, 11), first
        self.fc2, self.lif2 = loud(torch.nn.Linear(N_HID, N_OUT), 2.0, 12), second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))


def _snntorch_run(net: SnnNet, x: torch.Tensor) -> dict[str, np.ndarray]:
    import snntorch as snn

    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_mem()  # the exporter ran a forward pass
        if isinstance(m, snn.RLeaky):
            m.spk = torch.zeros(0)
    out: dict[str, list[torch.Tensor]] = {"lif1": [], "lif2": []}
    hooks = [getattr(net, k).register_forward_hook(
        lambda mod, i, o, k=k: out[k].append((o[0] if isinstance(o, tuple) else o).clone())) for k in out]
    with torch.no_grad():
        for t in range(T):
            net(x[t])
    for h in hooks:
        h.remove()
    return {k: torch.stack(v).numpy() for k, v in out.items()}


def snntorch_case(name: str, net: SnnNet, out: Path) -> Case:
    """Export ``net`` with snnTorch's ``export_to_nir``, run it in snnTorch on seeded input spikes."""
    from snntorch.export_nir import export_to_nir

    x = spike_input(1, (N_IN,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, torch.zeros(B, N_IN), ignore_dims=[0])
    out.mkdir(parents=True, exist_ok=True)
    nir.write(out / f"{name}.nir", graph)
    ref = _snntorch_run(net, x)
    ids = {k: k if k in graph.nodes else f"{k}.lif" for k in ref}  # RLeaky exports a subgraph
    return Case(name, "snntorch", out / f"{name}.nir", x.numpy(), {ids[k]: v for k, v in ref.items()},
                plain_dt=1e-4)


def snntorch_cases(out: Path) -> list[Case]:
    """Leaky + Synaptic; RLeaky (all-to-all, with the recurrent bias) + Leaky; a β = 1 integrator."""
    import snntorch as snn

    rec = snn.RLeaky(beta=0.85, linear_features=N_HID, init_hidden=True)
    loud(rec.recurrent, 0.8, 31)
    return [
        snntorch_case("snntorch_ff", SnnNet(
            snn.Leaky(beta=vec(N_HID, 0.85), threshold=vec(N_HID, 1.0), init_hidden=True),
            snn.Synaptic(alpha=vec(N_OUT, 0.5), beta=vec(N_OUT, 0.7), threshold=vec(N_OUT, 1.0), init_hidden=True)),
            out),
        snntorch_case("snntorch_rec", SnnNet(
            rec, snn.Leaky(beta=vec(N_OUT, 0.7), threshold=vec(N_OUT, 1.0), init_hidden=True)), out),
        snntorch_case("snntorch_if", SnnNet(
            snn.Leaky(beta=vec(N_HID, 1.0), threshold=vec(N_HID, 1.0), init_hidden=True),
            snn.Leaky(beta=vec(N_OUT, 0.9), threshold=vec(N_OUT, 1.0), init_hidden=True)), out),
    ]


# --------------------------------------------------------------------------------------------------------- Norse


def _norse_run(seq: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    mods = list(seq.children())
    state: list = [None] * len(mods)
    out: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for t in range(T):
            h = x[t]
            for i, m in enumerate(mods):
                if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                    h = m(h)
                    continue
                h, state[i] = m(h, state[i])
                out.setdefault(str(i), []).append(h.clone())
    return {k: torch.stack(v).numpy() for k, v in out.items()}


def norse_case(name: str, seq: torch.nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...], seed: int,
               out: Path) -> Case:
    """Export ``seq`` with ``norse.torch.to_nir`` (repairing the types it leaves wrong), run it in Norse."""
    import norse.torch as norse

    x = spike_input(seed, in_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = norse.to_nir(seq, torch.zeros(B, *in_shape), dt=NORSE_DT)
    for n in graph.nodes.values():  # Norse keeps the batch dimension in Input/Output and writes no conv shape
        if isinstance(n, nir.Input):
            n.input_type, n.output_type = {"input": np.array(in_shape)}, {"output": np.array(in_shape)}
        if isinstance(n, nir.Output):
            n.input_type, n.output_type = {"input": np.array(out_shape)}, {"output": np.array(out_shape)}
        if isinstance(n, nir.Conv2d) and n.input_shape is None:
            n.input_shape = np.array(in_shape[1:])
    out.mkdir(parents=True, exist_ok=True)
    nir.write(out / f"{name}.nir", graph)
    return Case(name, "norse", out / f"{name}.nir", x.numpy(), _norse_run(seq, x), dt=NORSE_DT * NORSE_DT,
                plain_dt=NORSE_DT)


def norse_cases(out: Path) -> list[Case]:
    """LIFBoxCell (v_leak 0.4) + LIFCell (CubaLIF); a conv network (Norse's exporter has no Flatten)."""
    import norse.torch as norse

    box = norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=vec(N_HID, 100.0), v_th=vec(N_HID, 1.0),
                                                  v_leak=vec(N_HID, 0.4), v_reset=vec(N_HID, 0.0)), dt=NORSE_DT)
    cuba = norse.LIFCell(norse.LIFParameters(tau_syn_inv=vec(N_OUT, 200.0), tau_mem_inv=vec(N_OUT, 100.0),
                                             v_th=vec(N_OUT, 1.0), v_leak=vec(N_OUT, 0.0), v_reset=vec(N_OUT, 0.0)),
                         dt=NORSE_DT)
    ff = norse.SequentialState(loud(torch.nn.Linear(N_IN, N_HID), 6.0, 11), box,
                               loud(torch.nn.Linear(N_HID, N_OUT), 5.0, 12), cuba)
    h = 6

    def conv_box(c: int) -> torch.nn.Module:
        return norse.LIFBoxCell(norse.LIFBoxParameters(
            tau_mem_inv=torch.full((c, h, h), 100.0), v_th=torch.full((c, h, h), 1.0), v_leak=torch.zeros(c, h, h),
            v_reset=torch.zeros(c, h, h)), dt=NORSE_DT)

    conv = norse.SequentialState(loud(torch.nn.Conv2d(2, 3, 3, padding=1), 6.0, 21), conv_box(3),
                                 loud(torch.nn.Conv2d(3, 2, 3, padding=1), 8.0, 22), conv_box(2))
    return [norse_case("norse_ff", ff, (N_IN,), (N_OUT,), 1, out),
            norse_case("norse_conv", conv, (2, h, h), (2, h, h), 3, out)]


# ---------------------------------------------------------------------------------------------- Sinabs, Rockpool


def fixture_cases() -> list[Case]:
    """The committed Sinabs 3.1.3 / Rockpool 3.1.0 files and simulations (``examples/interop/dialects``)."""
    cases = []
    for name in ("sinabs_ff", "sinabs_conv", "rockpool_ff", "rockpool_rec"):
        data = np.load(FIXTURES / f"{name}.npz")
        spikes = {k.split("__", 1)[1]: data[k] for k in data.files if k.startswith("spikes__")}
        patch = None
        if name == "rockpool_rec":  # Rockpool's exporter drops w_rec; the fixture keeps it
            w_rec = data["w_rec_nir__1_LIFTorch"].astype(np.float64)

            def patch(g: nir.NIRGraph, w: np.ndarray = w_rec) -> None:
                g.nodes["1_rec"] = nir.Linear(weight=w)
                g.edges += [("1_LIFTorch", "1_rec"), ("1_rec", "1_LIFTorch")]

        dialect = name.split("_")[0]
        cases.append(Case(name, dialect, FIXTURES / f"{name}.nir", data["input"], spikes,
                          plain_dt=1.0 if dialect == "sinabs" else 1e-3, patch=patch))
    return cases


# ------------------------------------------------------------------------------------------------------ readings


def wrong_spikes(case: Case, dialect: str) -> int | str:
    """Spike entries the torch reference gets wrong reading ``case`` with ``dialect``, or the reason the reading
    refuses the file (snnTorch's τ = ∞ or Rockpool's batch dimension read as plain NIR)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plain readings of nir 1.0.4 files warn about their reset
        try:
            graph = read_nir(case.path, dialect=dialect, dt=case.dt)
        except NIRFormatError as err:
            return str(err).split(": ", 1)[-1]
    if case.patch is not None:
        case.patch(graph)
    act = nir_torch.simulate(graph, np.asarray(case.x, np.float64), dt=case.plain_dt if dialect == "nir" else None)
    return sum(int((np.asarray(act[k]) != v).sum()) for k, v in case.spikes.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/peer-dialects"))
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    cases = snntorch_cases(args.out) + norse_cases(args.out) + fixture_cases()
    rows = []
    for c in cases:
        rows.append({"case": c.name, "dialect": c.dialect, "entries": int(sum(v.size for v in c.spikes.values())),
                     "framework_spikes": int(sum(v.sum() for v in c.spikes.values())),
                     "wrong_with_dialect": wrong_spikes(c, c.dialect), "wrong_as_plain_nir": wrong_spikes(c, "nir")})
        print(rows[-1], flush=True)
    write_json(args.out / "dialects.json", {"schema_version": SCHEMA_VERSION, "cases": rows})
    lines = ["| case | dialect | framework spikes | wrong with the dialect | wrong read as plain NIR |",
             "|---|---|---|---|---|"]
    for r in rows:
        plain = r["wrong_as_plain_nir"]
        plain = f"refused: {plain}" if isinstance(plain, str) else f"{plain} of {r['entries']}"
        lines.append(f"| {r['case']} | {r['dialect']} | {r['framework_spikes']} | {r['wrong_with_dialect']} "
                     f"| {plain} |")
    (args.out / "dialects.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"out": str(args.out)}))


if __name__ == "__main__":
    main()
