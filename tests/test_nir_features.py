"""Current NIR features on every backend: a non-zero ``v_reset`` (IF, LIF, CubaLIF) on Lava, ``CubaLI`` read-outs,
node metadata through a file, and files that lack what nir 1.0.8 requires (a firing neuron's ``v_threshold``)."""

from __future__ import annotations

import h5py
import nir
import numpy as np
import pytest
import torch

from exporters import lava, nir_torch
from exporters.core.conventions import Conventions
from exporters.core.errors import NIRFormatError
from exporters.lava import LavaBackendError
from exporters.nir_io import read_nir, write_nir

DT = 1e-3


def _reset_graph(v0: float) -> nir.NIRGraph:
    """Input(4) → IF(6, v_reset −0.5) → LIF(5, v_reset 0.25) → CubaLIF(3, v_reset −0.25) → CubaLI(2) read-out; every
    firing neuron starts at its v_reset when ``v0`` is None, else at ``v0``."""
    rng = np.random.default_rng(2)
    w = [rng.integers(-40, 64, s) * 2 / 64 for s in ((6, 4), (5, 6), (3, 5), (2, 3))]
    full = np.full
    nodes = {
        "in": nir.Input(input_type={"input": np.array([4])}),
        "w1": nir.Linear(weight=w[0]),
        "if": nir.IF(r=full(6, 1.0), v_threshold=full(6, 1.0), v_reset=full(6, -0.5)),
        "w2": nir.Linear(weight=w[1]),
        "lif": nir.LIF(tau=full(5, 4e-3), r=full(5, 1.0), v_leak=full(5, 0.5), v_threshold=full(5, 1.0),
                       v_reset=full(5, 0.25)),
        "w3": nir.Linear(weight=w[2]),
        "cuba": nir.CubaLIF(tau_syn=full(3, 2e-3), tau_mem=full(3, 4e-3), r=full(3, 2.0), v_leak=full(3, 0.0),
                            v_threshold=full(3, 1.0), v_reset=full(3, -0.25), w_in=full(3, 2.0)),
        "w4": nir.Linear(weight=w[3]),
        "li": nir.CubaLI(tau_syn=full(2, 2e-3), tau_mem=full(2, 4e-3), r=full(2, 2.0), v_leak=full(2, 0.0),
                         w_in=full(2, 2.0)),
        "out": nir.Output(output_type={"output": np.array([2])}),
    }
    order = ["in", "w1", "if", "w2", "lif", "w3", "cuba", "w4", "li", "out"]
    starts = {"if": -0.5, "lif": 0.25, "cuba": -0.25} if v0 is None else {"if": v0, "lif": v0, "cuba": v0}
    meta = Conventions(dt=DT, v_init="v_reset", v_init_nodes=starts).to_metadata()
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), metadata=meta)


def _x() -> np.ndarray:
    return (np.random.default_rng(5).random((30, 3, 4)) < 0.5).astype(np.float32)


def test_nonzero_v_reset_runs_on_lava_float_fixed_and_emu():
    graph, x = _reset_graph(None), _x()
    ref = nir_torch.simulate(graph, x.astype(np.float64))
    assert all(ref[k].sum() > 10 for k in ("if", "lif", "cuba"))
    v_float: dict[str, np.ndarray] = {}
    float_act = lava.simulate(graph, x, voltages=v_float)
    for k in ("if", "lif", "cuba"):
        np.testing.assert_array_equal(float_act[k], ref[k], err_msg=k)
    np.testing.assert_allclose(float_act["li"], ref["li"], atol=1e-5)  # the read-out membrane, with its offset
    v_fixed: dict[str, np.ndarray] = {}
    v_emu: dict[str, np.ndarray] = {}
    fixed = lava.simulate(graph, x, fixed_point=True, voltages=v_fixed)
    emu = lava.emulate(graph, x, voltages=v_emu)
    for k in fixed:
        np.testing.assert_array_equal(emu[k], fixed[k], err_msg=k)
    assert sorted(v_emu) == sorted(v_fixed)
    for k in v_fixed:
        np.testing.assert_array_equal(v_emu[k], v_fixed[k], err_msg=k)
    module = nir_torch.GraphModule(graph, dtype=torch.float64, record_voltage=True)
    module(x.astype(np.float64))
    # Lava's voltages come back in NIR units, the reset value included (after the reset, like the reference)
    np.testing.assert_allclose(v_float["if"], module.voltages["if"].numpy(), atol=1e-5)
    assert v_float["if"].min() < -0.4  # it really sits at −0.5 after a spike, not at Lava's 0


def test_v_reset_different_from_the_start_is_refused_by_name():
    with pytest.raises(LavaBackendError, match=r"node 'if' \(IF\): resets to v_reset = -0.5.* but starts at 0"):
        lava.build_plan(_reset_graph(0.0))


def test_node_metadata_survives_a_file(tmp_path):
    graph = _reset_graph(None)
    graph.nodes["lif"].metadata = {"origin": "layer 2", "refractory": 3}
    path = write_nir(tmp_path / "g.nir", graph)
    back = read_nir(path)
    assert back.nodes["lif"].metadata["origin"] == "layer 2"
    assert int(back.nodes["lif"].metadata["refractory"]) == 3


def test_missing_v_threshold_is_named(tmp_path):
    path = write_nir(tmp_path / "g.nir", _reset_graph(None))
    with h5py.File(path, "r+") as f:
        del f["node"]["nodes"]["lif"]["v_threshold"]
    with pytest.raises(NIRFormatError, match=r"node 'lif' \(LIF\) has no v_threshold"):
        read_nir(path)
