"""NIR → lava-dl netx export, loading back with netx's own Network, refusals and bad files."""

from __future__ import annotations

from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from _paths import INTEROP

from exporters import lava as lb
from exporters import nir_torch
from exporters.equivalence import compare_activity
from exporters.netx import NetxFormatError, export_netx, simulate_netx

DT = 1e-4


def chain_graph() -> nir.NIRGraph:
    """Input 2x6x6 → Conv(2→3, 3x3, pad 1) → IF → SumPool(2) → Flatten → Affine(27→4) → LIF."""
    rng = np.random.default_rng(0)
    n1, n2 = (3, 6, 6), 4
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv": nir.Conv2d(input_shape=np.array([6, 6]), weight=rng.normal(0.3, 0.6, (3, 2, 3, 3)), stride=1,
                           padding=1, dilation=1, groups=1, bias=np.array([0.05, 0.0, -0.05])),
        "n1": nir.IF(r=np.ones(n1), v_threshold=np.ones(n1), v_reset=np.zeros(n1)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(0.2, 0.5, (n2, 27)), bias=np.full(n2, 0.02)),
        "n2": nir.LIF(tau=np.full(n2, 1e-3), r=np.full(n2, 10.0), v_leak=np.zeros(n2), v_threshold=np.ones(n2),
                      v_reset=np.zeros(n2)),
        "output": nir.Output(output_type={"output": np.array([n2])}),
    }
    edges = [("input", "conv"), ("conv", "n1"), ("n1", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "n2"),
             ("n2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT})


def test_netx_file_layout(tmp_path: Path) -> None:
    path = tmp_path / "chain.net"
    quant = export_netx(chain_graph(), path)
    with h5py.File(path, "r") as f:
        types = [f["layer"][k]["type"][()].decode() for k in sorted(f["layer"], key=int)]
        assert types == ["input", "conv", "flatten", "dense"]
        conv = f["layer/1"]
        assert conv["weight"].shape == (3, 2, 3, 3) and tuple(conv["shape"][()]) == (3, 6, 6)
        assert conv["bias"].shape == (6, 6, 3)  # neuron-wise, Lava's (W, H, C)
        assert int(conv["neuron/vThMant"][()]) == quant.neurons["n1"].vth
        assert int(conv["neuron/iDecay"][()]) == 4096 and int(conv["neuron/vDecay"][()]) == 0  # IF
        dense = f["layer/3"]
        assert dense["weight"].shape == (4, 108)  # pool + flatten folded: n1 (3x6x6) → 4
        assert np.abs(dense["weight"][()]).max() <= 126
        assert int(dense["neuron/vDecay"][()]) == round(0.1 * 4096)  # dt/τ = 0.1


def test_netx_round_trip_equals_lava_fixed_point_and_tracks_torch(tmp_path: Path) -> None:
    g = chain_graph()
    x = (np.random.default_rng(1).random((15, 2, 2, 6, 6)) < 0.4).astype(np.float32)
    path = tmp_path / "chain.net"
    export_netx(g, path)
    net = simulate_netx(path, x)
    assert sorted(net) == ["n1", "n2"] and net["n1"].shape == (15, 2, 3, 6, 6)
    fixed = lb.simulate(g, x, fixed_point=True, max_weight_exp=0)  # same integers, nasflow's own wiring
    for k in net:
        np.testing.assert_array_equal(net[k], fixed[k])
    ref = nir_torch.simulate(g, x)
    rep = compare_activity(ref, net, ["n1", "n2"])
    assert ref["n1"].sum() > 50 and ref["n2"].sum() > 5
    # 8-bit weights without exponent: measured precision/recall 1.0 on n1 and n2 for this input.
    assert rep["min_precision"] > 0.9 and rep["min_recall"] > 0.9, rep["nodes"]


def residual_graph() -> nir.NIRGraph:
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "a": nir.Linear(weight=np.eye(3)), "n1": nir.IF(r=np.ones(3), v_threshold=np.ones(3), v_reset=np.zeros(3)),
        "b": nir.Linear(weight=np.eye(3)), "skip": nir.Linear(weight=np.eye(3)),
        "n2": nir.IF(r=np.ones(3), v_threshold=np.ones(3), v_reset=np.zeros(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "a"), ("a", "n1"), ("n1", "b"), ("b", "n2"), ("input", "skip"), ("skip", "n2"),
             ("n2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_residual_graph_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="node 'n2': residual fan-in from \\['input', 'n1'\\]"):
        export_netx(residual_graph(), tmp_path / "r.net")
    assert not (tmp_path / "r.net").exists()


def test_recurrent_graph_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'lif1.lif'"):
        export_netx(nir.read(INTEROP / "braille_noDelay_bias_zero.nir"), tmp_path / "b.net", dt=DT)


def test_bad_net_files_get_clear_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.net"
    export_netx(chain_graph(), good)
    truncated = tmp_path / "truncated.net"
    truncated.write_bytes(good.read_bytes()[:300])
    text = tmp_path / "text.net"
    text.write_text("not a network\n")
    other = tmp_path / "other.net"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=1)
    x = np.zeros((2, 1, 2, 6, 6), np.float32)
    for path, msg in [(truncated, "not a readable HDF5"), (text, "not a readable HDF5"),
                      (other, "not a netx network"), (tmp_path / "missing.net", "no such netx file")]:
        with pytest.raises(NetxFormatError, match=msg) as info:
            simulate_netx(path, x)
        assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="input must be \\[T, B, 2, 6, 6\\]"):
        simulate_netx(good, np.zeros((2, 1, 3), np.float32))
