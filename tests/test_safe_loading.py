"""Graphs the CLI must refuse or cost consistently: hw from simulate.json equals hw from activity.npz on measured
synaptic ops, NaN/inf parameters are refused on every backend, graphs without an Input node are refused by hw.

Every CLI case runs through ``nasflow.cli.main`` and checks the user-facing contract: exit status 2 and exactly
one error line naming the file and the node (and parameter), no traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import nir
import numpy as np
import pytest
from _paths import INTEROP, ROOT

from exporters.core.errors import NIRFormatError
from nasflow.cli import main

RNG = np.random.default_rng(0)


def _lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5),
                   v_reset=np.zeros(n))


def _lif3(shape: tuple[int, ...]) -> nir.LIF:
    return nir.LIF(tau=np.full(shape, 2e-3), r=np.ones(shape), v_leak=np.zeros(shape), v_threshold=np.full(shape, 0.5),
                   v_reset=np.zeros(shape))


def _w(rows: int, cols: int) -> np.ndarray:
    return RNG.normal(0.0, 1.0, (rows, cols))


def _graph(kind: str) -> nir.NIRGraph:
    """Small graphs with the structures that broke ``nasflow hw --activity simulate.json``."""
    if kind == "input-fanout":  # the input feeds two weight nodes into two layers
        nodes = {"input": nir.Input(input_type={"input": np.array([6])}), "a": nir.Affine(_w(5, 6), np.zeros(5)),
                 "l1": _lif(5), "b": nir.Linear(_w(4, 6)), "l2": _lif(4),
                 "output": nir.Output(output_type={"output": np.array([4])})}
        edges = [("input", "a"), ("a", "l1"), ("input", "b"), ("b", "l2"), ("l2", "output")]
    elif kind == "fan-in":  # l3 sums a two-layer path and a skip from l1
        nodes = {"input": nir.Input(input_type={"input": np.array([6])}), "a1": nir.Affine(_w(5, 6), np.zeros(5)),
                 "l1": _lif(5), "a2": nir.Linear(_w(5, 5)), "l2": _lif(5), "a3": nir.Linear(_w(3, 5)),
                 "skip": nir.Linear(_w(3, 5)), "l3": _lif(3),
                 "output": nir.Output(output_type={"output": np.array([3])})}
        edges = [("input", "a1"), ("a1", "l1"), ("l1", "a2"), ("a2", "l2"), ("l2", "a3"), ("a3", "l3"),
                 ("l1", "skip"), ("skip", "l3"), ("l3", "output")]
    elif kind == "cycle":  # l2 feeds back into l1 and into itself
        nodes = {"input": nir.Input(input_type={"input": np.array([6])}), "a1": nir.Affine(_w(5, 6), np.zeros(5)),
                 "l1": _lif(5), "a2": nir.Linear(_w(4, 5)), "l2": _lif(4), "rec": nir.Linear(_w(5, 4)),
                 "self": nir.Linear(_w(4, 4)), "output": nir.Output(output_type={"output": np.array([4])})}
        edges = [("input", "a1"), ("a1", "l1"), ("l1", "a2"), ("a2", "l2"), ("l2", "rec"), ("rec", "l1"),
                 ("l2", "self"), ("self", "l2"), ("l2", "output")]
    elif kind == "residual-from-input":  # input fan-out, fan-in at l2, and a cycle
        nodes = {"input": nir.Input(input_type={"input": np.array([6])}), "a1": nir.Affine(_w(5, 6), np.zeros(5)),
                 "l1": _lif(5), "a2": nir.Affine(_w(4, 5), np.zeros(4)), "skip": nir.Linear(_w(4, 6)),
                 "l2": _lif(4), "rec": nir.Linear(_w(5, 4)),
                 "output": nir.Output(output_type={"output": np.array([4])})}
        edges = [("input", "a1"), ("a1", "l1"), ("l1", "a2"), ("a2", "l2"), ("input", "skip"), ("skip", "l2"),
                 ("l2", "output"), ("l2", "rec"), ("rec", "l1")]
    else:  # "conv": analog input (MACs), a sparse conv kernel with padding, a sum-pool path, fan-out from l1
        w = RNG.normal(0.0, 1.0, (2, 1, 3, 3)) * (RNG.random((2, 1, 3, 3)) < 0.7)
        nodes = {"input": nir.Input(input_type={"input": np.array([1, 6, 6])}),
                 "conv": nir.Conv2d((6, 6), w, 1, 1, 1, 1, np.zeros(2)),
                 "l1": _lif3((2, 6, 6)),
                 "pool": nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
                 "flat": nir.Flatten({"input": np.array([2, 3, 3])}, 0), "fc": nir.Affine(_w(4, 18), np.zeros(4)),
                 "l2": _lif(4), "flat1": nir.Flatten({"input": np.array([2, 6, 6])}, 0), "fc1": nir.Linear(_w(4, 72)),
                 "output": nir.Output(output_type={"output": np.array([4])})}
        edges = [("input", "conv"), ("conv", "l1"), ("l1", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "l2"),
                 ("l1", "flat1"), ("flat1", "fc1"), ("fc1", "l2"), ("l2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3}, type_check=False)


def _cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def _one_error(rc: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ------------------------------------------------------------------------ 3: simulate.json vs activity.npz


@pytest.mark.parametrize("kind", ["input-fanout", "fan-in", "cycle", "residual-from-input", "conv"])
def test_hw_gives_the_same_synops_from_simulate_json_and_activity_npz(kind, tmp_path, capsys):
    graph = _graph(kind)
    nir.write(tmp_path / "g.nir", graph)
    in_shape = tuple(int(s) for s in graph.nodes["input"].input_type["input"])
    x = RNG.random((8, 3, *in_shape)).astype(np.float32)
    if kind != "conv":
        x = (x < 0.4).astype(np.float32)  # spikes; the conv graph sees analog values
    np.save(tmp_path / "x.npy", x)
    sim = tmp_path / "sim"
    assert main(["simulate", str(tmp_path / "g.nir"), "--backend", "torch", "--input", str(tmp_path / "x.npy"),
                 "--dt", "1e-3", "--out", str(sim)]) == 0
    reports = {}
    for form in ("simulate.json", "activity.npz"):
        out = tmp_path / form.split(".")[0]
        rc, err = _cli(capsys, "hw", str(tmp_path / "g.nir"), "--chip", "loihi", "--activity", str(sim / form),
                       "--out", str(out))
        assert rc == 0, err
        reports[form] = json.loads((out / "hw.json").read_text())
    js, npz = reports["simulate.json"], reports["activity.npz"]
    assert (js["activity"], npz["activity"]) == ("node", "neuron")
    assert js["synops_per_sample"] + js["macs_per_sample"] > 0
    assert js["synops_per_sample"] == pytest.approx(npz["synops_per_sample"], rel=1e-12, abs=0)
    assert js["macs_per_sample"] == pytest.approx(npz["macs_per_sample"], rel=1e-12, abs=0)
    assert (js["macs_per_sample"] > 0) == (kind == "conv")
    for a, b in zip(js["layers"], npz["layers"]):
        assert a["layer"] == b["layer"]
        assert a["acs_per_sample"] == pytest.approx(b["acs_per_sample"], rel=1e-12, abs=0)
        assert a["macs_per_sample"] == pytest.approx(b["macs_per_sample"], rel=1e-12, abs=0)
    assert js["spikes_per_sample"] == pytest.approx(npz["spikes_per_sample"], rel=1e-12)
    assert any("measured" in n for n in js["notes"])
    res = json.loads((sim / "simulate.json").read_text())
    nonzero = float(np.count_nonzero(x)) / 3
    assert res["nodes"]["input"]["nonzero_per_sample"] == pytest.approx(nonzero, rel=1e-12)
    assert res["nodes"]["input"]["spikes_per_sample"] == (None if kind == "conv" else pytest.approx(nonzero))
    neurons = [v["spikes_per_sample"] for v in res["nodes"].values() if v["type"] == "LIF"]
    assert res["spikes_per_sample"] == pytest.approx(sum(neurons))  # the input's spikes are not neuron spikes
    assert res["synops_per_sample"] == pytest.approx(npz["synops_per_sample"], rel=1e-12)


def test_old_simulate_json_falls_back_and_missing_nodes_are_named(tmp_path, capsys):
    nir.write(tmp_path / "g.nir", _graph("residual-from-input"))
    np.save(tmp_path / "x.npy", (RNG.random((6, 2, 6)) < 0.4).astype(np.float32))
    assert main(["simulate", str(tmp_path / "g.nir"), "--input", str(tmp_path / "x.npy"), "--dt", "1e-3",
                 "--out", str(tmp_path / "sim")]) == 0
    res = json.loads((tmp_path / "sim" / "simulate.json").read_text())
    old = json.loads(json.dumps(res))  # what simulate wrote before it recorded input events and synops
    for v in old["nodes"].values():
        v.pop("synops", None)
        v.pop("nonzero_per_sample", None)
    old["nodes"]["input"]["spikes_per_sample"] = None
    (tmp_path / "old.json").write_text(json.dumps(old))
    rc, err = _cli(capsys, "hw", str(tmp_path / "g.nir"), "--activity", str(tmp_path / "old.json"),
                   "--out", str(tmp_path / "hw_old"))
    assert rc == 0, err
    rep = json.loads((tmp_path / "hw_old" / "hw.json").read_text())
    assert rep["energy_per_sample_j"] > 0 and not any("measured" in n for n in rep["notes"])

    no_synops = json.loads(json.dumps(res))
    del no_synops["nodes"]["skip"]["synops"]
    (tmp_path / "partial.json").write_text(json.dumps(no_synops))
    rc, err = _cli(capsys, "hw", str(tmp_path / "g.nir"), "--activity", str(tmp_path / "partial.json"),
                   "--out", str(tmp_path / "hw_p"))
    _one_error(rc, err, "partial.json", "'skip'")
    no_node = json.loads(json.dumps(res))
    del no_node["nodes"]["l1"]
    (tmp_path / "lacks.json").write_text(json.dumps(no_node))
    rc, err = _cli(capsys, "hw", str(tmp_path / "g.nir"), "--activity", str(tmp_path / "lacks.json"),
                   "--out", str(tmp_path / "hw_l"))
    _one_error(rc, err, "lacks.json", "lack node 'l1'")


def _simulated_chain(tmp_path, *middle: nir.NIRNode) -> dict:
    """``simulate.json`` of Input(3) → ``middle`` → LIF(3) → Output on three steps of all-ones input (torch)."""
    g = nir.NIRGraph.from_list(nir.Input(input_type={"input": np.array([3])}), *middle, _lif(3),
                               nir.Output(output_type={"output": np.array([3])}))
    g.metadata = {"dt": 1e-3}
    nir.write(tmp_path / "d.nir", g)
    np.save(tmp_path / "x.npy", np.ones((3, 1, 3), np.float32))
    assert main(["simulate", str(tmp_path / "d.nir"), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "s")]) == 0
    return json.loads((tmp_path / "s" / "simulate.json").read_text())


def test_simulate_still_writes_results_when_hw_cannot_count_the_graph(tmp_path):
    res = _simulated_chain(tmp_path, nir.Scale(np.full(3, 2.0)))  # a neuron fed without a weight node
    assert res["synops_per_sample"] is None and "'lif'" in res["synops_note"]
    assert res["nodes"]["input"]["spikes_per_sample"] == 9.0  # 3 steps × 3 input spikes


def test_simulate_counts_synops_through_a_delay(tmp_path):
    """A Delay changes when a sum arrives, not how many synaptic operations there are (hwmodels maps it as a wire)."""
    res = _simulated_chain(tmp_path, nir.Linear(np.eye(3)), nir.Delay(np.full(3, 1e-3)))
    assert res["synops_per_sample"] == 9.0  # 3 steps × 3 input spikes × one weight each


# ------------------------------------------------------------------------------ 4: non-finite parameters


def _with(graph: nir.NIRGraph, node: str, param: str, value: float, count: int = 1) -> nir.NIRGraph:
    arr = np.array(getattr(graph.nodes[node], param), dtype=np.float64)
    arr.reshape(-1)[:count] = value
    setattr(graph.nodes[node], param, arr)
    return graph


@pytest.mark.parametrize("backend", ["torch", "lava", "lava-fixed", "lava-emu", "netx", "hw"])
def test_nan_weight_file_is_refused_by_every_command(backend, tmp_path, capsys):
    nir.write(tmp_path / "model.nir", _with(_graph("residual-from-input"), "a1", "weight", np.nan, 3))
    np.save(tmp_path / "x.npy", np.zeros((4, 1, 6), np.float32))
    if backend == "hw":
        argv = ["hw", str(tmp_path / "model.nir"), "--chip", "loihi", "--out", str(tmp_path / "out")]
    else:
        argv = ["simulate", str(tmp_path / "model.nir"), "--backend", backend, "--input", str(tmp_path / "x.npy"),
                "--dt", "1e-3", "--out", str(tmp_path / "out")]
    rc, err = _cli(capsys, *argv)
    _one_error(rc, err, "model.nir: node 'a1' parameter 'weight' has 3 NaN value(s)")
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize(
    ("node", "param", "value", "says"),
    [
        ("a2", "bias", np.inf, "1 infinite value(s)"),
        ("l1", "v_threshold", np.nan, "1 NaN value(s)"),
        ("l1", "tau", -np.inf, "1 infinite value(s)"),
        ("l2", "r", np.nan, "1 NaN value(s)"),
        ("l2", "v_leak", np.nan, "1 NaN value(s)"),
        ("l2", "v_reset", np.inf, "1 infinite value(s)"),
    ],
)
def test_non_finite_parameters_are_named_when_read(node, param, value, says, tmp_path):
    from exporters.nir_io import read_nir

    nir.write(tmp_path / "m.nir", _with(_graph("residual-from-input"), node, param, value))
    with pytest.raises(NIRFormatError, match=rf"m\.nir: node '{node}' parameter '{param}' has {re.escape(says)}; fix"):
        read_nir(tmp_path / "m.nir")


def test_cuba_time_constants_and_mixed_counts():
    from exporters.core.traversal import check_finite_parameters

    g = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([3])}),
        nir.Linear(np.ones((3, 3))),
        nir.CubaLIF(tau_syn=np.array([1e-3, np.nan, 1e-3]), tau_mem=np.full(3, 1e-3), r=np.ones(3),
                    v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3)),
        nir.Output(output_type={"output": np.array([3])}),
    )
    with pytest.raises(NIRFormatError, match=r"node 'cubalif' parameter 'tau_syn' has 1 NaN value\(s\)"):
        check_finite_parameters(g)
    g.nodes["cubalif"].tau_syn = np.full(3, 1e-3)
    g.nodes["cubalif"].tau_mem = np.array([np.nan, np.inf, 1e-3])
    with pytest.raises(NIRFormatError, match=r"'tau_mem' has 1 NaN and 1 infinite value\(s\)"):
        check_finite_parameters(g, "f.nir")
    g.nodes["cubalif"].tau_mem = np.full(3, 1e-3)
    check_finite_parameters(g)  # finite: no error
    nested = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}), "inner": g},
                          edges=[("input", "inner")], type_check=False)
    g.nodes["linear"].weight = np.full((3, 3), np.nan)
    with pytest.raises(NIRFormatError, match=r"node 'inner\.linear' parameter 'weight' has 9 NaN"):
        check_finite_parameters(nested)


def test_in_memory_entry_points_refuse_nan(tmp_path):
    """Graphs built in Python skip read_nir: each backend checks at its entry."""
    from exporters import lava, netx
    from exporters.nir_torch import simulate
    from hwmodels import build_layer_table, hw_report

    graph = _with(_graph("residual-from-input"), "rec", "weight", np.nan)
    x = np.zeros((2, 1, 6), np.float32)
    calls = {
        "torch": lambda: simulate(graph, x),
        "lava": lambda: lava.simulate(graph, x, timeout_s=10),
        "netx": lambda: netx.export_netx(graph, tmp_path / "m.net"),
        "hw_report": lambda: hw_report(graph, "loihi"),
        "build_layer_table": lambda: build_layer_table(graph),
    }
    for name, call in calls.items():
        with pytest.raises(NIRFormatError, match=r"node 'rec' parameter 'weight' has 1 NaN value\(s\)"):
            call()
            pytest.fail(f"{name} accepted a NaN weight")
    assert not (tmp_path / "m.net").exists()


def test_model_pt_with_nan_weights_is_refused(tmp_path, capsys):
    import torch

    from nasflow.models import AutoSNNNet, save_model

    model = AutoSNNNet(arch="SCB_k3,skip,skip,skip,skip", in_shape=(1, 8, 8), channels=4, steps=2)
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() > 1).view(-1)[:2] = float("nan")
    save_model(tmp_path / "model.pt", model, "autosnn")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 1, 8, 8), np.float32))
    rc, err = _cli(capsys, "simulate", str(tmp_path / "model.pt"), "--input", str(tmp_path / "x.npy"),
                   "--out", str(tmp_path / "out"))
    _one_error(rc, err, "model.pt: node '", "parameter 'weight' has 2 NaN value(s)")


# ---------------------------------------------------------------------------------- 5: no Input node


def test_hw_refuses_a_graph_without_input(tmp_path, capsys):
    g = _graph("residual-from-input")
    nodes = {k: v for k, v in g.nodes.items() if k not in ("input", "skip")}
    edges = [e for e in g.edges if "input" not in e and "skip" not in e]
    nir.write(tmp_path / "noin.nir", nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3}, type_check=False))
    for extra in ([], ["--activity", str(tmp_path / "missing.json")]):
        rc, err = _cli(capsys, "hw", str(tmp_path / "noin.nir"), "--chip", "loihi", "--out", str(tmp_path / "o"),
                       *extra)
        _one_error(rc, err, "noin.nir: graph has no Input node")
    assert not (tmp_path / "o").exists()
    from hwmodels import hw_report

    with pytest.raises(NIRFormatError, match="graph has no Input node"):
        hw_report(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), "loihi")


def test_hwmodels_still_imports_without_torch():
    code = "import sys, hwmodels; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_interop_fixture_still_costs_through_read_nir(tmp_path, capsys):
    rc, err = _cli(capsys, "hw", str(INTEROP / "cnn_sinabs.nir"), "--chip", "speck", "--out", str(tmp_path / "h"))
    assert rc == 0 and err == "", err  # legacy reset is irrelevant for costs: no warning
    assert json.loads((tmp_path / "h" / "hw.json").read_text())["cores_used"] == 5


def test_measured_synops_path_is_the_activity_count():
    """simulate.json's numbers come from the same function counts_from_activity uses (one definition)."""
    from hwmodels import HardwareCost
    from hwmodels.traffic import measured_synops

    sinabs = nir.read(str(INTEROP / "cnn_sinabs.nir"))
    shapes = {"input": (2, 34, 34), "1": (16, 16, 16), "3": (16, 16, 16), "6": (8, 8, 8), "10": (256,), "12": (10,)}
    act = {n: (RNG.random((3, 2, *s)) < 0.1).astype(np.float32) for n, s in shapes.items()}
    hc = HardwareCost(sinabs, "loihi", steps=3)
    counts = hc.counts(act)
    got = measured_synops(hc.table, act)
    for node, acs in counts.acs.items():
        assert sum(r["acs_per_sample"] for r in got[node].values()) == acs
    for node, macs in counts.macs.items():
        assert sum(r["macs_per_sample"] for r in got[node].values()) == macs
    totals = {n: {"spikes_per_sample": float(a.sum() / 2)} for n, a in act.items()}
    totals |= {n: {"synops": v} for n, v in got.items()}
    assert hc.evaluate(totals)["synops_per_sample"] == hc.evaluate(act)["synops_per_sample"]
