"""lava-dl netx ``.net`` → NIR: lava-dl's own shipped network and ground truth reproduced spike for spike on nasflow's
fixed-point backends, the file's integers given back by re-quantisation, nasflow's own ``.net`` round trip, and one
clear error per bad file."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import h5py
import numpy as np
import pytest

from exporters import lava
from exporters.netx import NetxFormatError
from exporters.netx_import import read_netx

# lava-dl's wheel ships its test networks and ground truths (lava-dl 0.6.0, a project dependency)
LAVA_DL_TESTS = Path(sysconfig.get_paths()["purelib"]) / "tests" / "lava" / "lib" / "dl" / "netx"
TINY = LAVA_DL_TESTS / "tiny.net"
GTS = LAVA_DL_TESTS / "gts" / "tinynet"


def _tiny_input(steps: int) -> np.ndarray:
    """lava-dl's tinynet test drives the input layer's bias with this image (Lava (W, H, C) → NIR (C, H, W))."""
    image = np.load(GTS / "input_bias.npy").transpose(2, 1, 0).astype(np.float32)
    return np.broadcast_to(image, (steps, 1) + image.shape).copy()


def test_lava_dl_tinynet_ground_truth_is_reproduced_spike_for_spike() -> None:
    graph = read_netx(TINY)
    x = _tiny_input(16)
    act = lava.emulate(graph, x)
    # The ground truth is time-last [1, C, H, W, T]; lava-dl's step t + 1 is NIR's step t (its test compares
    # output[..., 2:17] against gt[..., 1:] with the pipeline's two-step fill).
    for node, name in (("layer1_neuron", "layer1.npy"), ("layer2_neuron", "output.npy")):
        gt = np.moveaxis(np.load(GTS / name)[0], -1, 0)
        ours = act[node][:, 0]
        assert int(gt.sum()) > 50
        np.testing.assert_array_equal(ours[:15], gt[1:16], err_msg=node)
    fixed = lava.simulate(graph, x[:8], fixed_point=True)
    for node in ("layer0", "layer1_neuron", "layer2_neuron"):
        np.testing.assert_array_equal(fixed[node], act[node][:8], err_msg=node)


def test_requantising_the_imported_graph_gives_back_the_file_integers() -> None:
    graph = read_netx(TINY)
    quant = lava.quantize_plan(lava.build_plan(graph), _tiny_input(2))
    with h5py.File(TINY, "r") as f:
        for key, node in (("1", "layer1_neuron"), ("2", "layer2_neuron")):
            layer = f["layer"][key]
            (conn,) = [c for c in quant.conns if c.dst == node]
            np.testing.assert_array_equal(conn.weights, layer["weight"][()][..., 0].astype(np.int32))
            assert conn.weight_exp == 0
            q, neuron = quant.neurons[node], layer["neuron"]
            assert (q.vth, q.du, q.dv) == (int(neuron["vThMant"][()]), int(neuron["iDecay"][()]) - 1,
                                           int(neuron["vDecay"][()]))
            c, h, w = (int(v) for v in layer["shape"][()])
            bias = np.repeat(layer["bias"][()].astype(np.int64), h * w) if "bias" in layer else np.zeros(c * h * w)
            np.testing.assert_array_equal(q.bias_mant.reshape(-1).astype(np.int64) << q.bias_exp, 64 * bias)


def test_nasflow_net_round_trip_gives_the_original_graphs_fixed_point_spikes(tmp_path: Path) -> None:
    import nir

    from exporters.netx import export_netx

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.6, (6, 2, 3, 3))
    w2 = rng.normal(0, 0.4, (4, 6 * 4 * 4))
    lif = {"tau_syn": 4e-3, "tau_mem": 8e-3}

    def cuba(n):
        return nir.CubaLIF(tau_syn=np.full(n, lif["tau_syn"]), tau_mem=np.full(n, lif["tau_mem"]), r=np.full(n, 2.0),
                           v_leak=np.zeros(n), v_threshold=np.full(n, 0.5), w_in=np.full(n, 4.0))

    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([2, 4, 4])}),
               "conv": nir.Conv2d(input_shape=(4, 4), weight=w1, stride=1, padding=1, dilation=1, groups=1,
                                  bias=np.zeros(6)),
               "lif1": cuba((6, 4, 4)), "flat": nir.Flatten(input_type={"input": np.array([6, 4, 4])}, start_dim=0),
               "fc": nir.Linear(weight=w2), "lif2": cuba((4,)),
               "output": nir.Output(output_type={"output": np.array([4])})},
        edges=[("input", "conv"), ("conv", "lif1"), ("lif1", "flat"), ("flat", "fc"), ("fc", "lif2"),
               ("lif2", "output")],
        metadata={"dt": 1e-3})
    x = (rng.random((12, 3, 2, 4, 4)) < 0.4).astype(np.float32)
    quant = export_netx(graph, tmp_path / "m.net")
    original = lava.emulate(graph, x, quant=quant)
    imported = lava.emulate(read_netx(tmp_path / "m.net"), x)
    for ours, theirs in (("lif1", "layer1_neuron"), ("lif2", "layer3_neuron")):
        assert original[ours].sum() > 0
        np.testing.assert_array_equal(imported[theirs], original[ours], err_msg=ours)


def _edited(tmp_path: Path, edit) -> Path:
    path = tmp_path / "edited.net"
    shutil.copy(TINY, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _set(grp, key, value) -> None:
    del grp[key]
    grp.create_dataset(key, data=value)


@pytest.mark.parametrize("edit, needle", [
    (lambda f: _set(f["layer"]["1"], "type", np.bytes_("pool")), "layer 1: pooling layers"),
    (lambda f: _set(f["layer"]["2"]["neuron"], "type", np.bytes_("SDNN")), "layer 2: sigma-delta"),
    (lambda f: _set(f["layer"]["1"], "weight", f["layer"]["1"]["weight"][()] + 0.5), "non-integer"),
])
def test_unsupported_netx_layers_are_refused_by_name(tmp_path: Path, edit, needle: str) -> None:
    with pytest.raises(NetxFormatError, match=needle):
        read_netx(_edited(tmp_path, edit))


def test_truncated_or_foreign_net_files_get_one_clear_error(tmp_path: Path) -> None:
    cut = tmp_path / "cut.net"
    cut.write_bytes(TINY.read_bytes()[:4000])
    with pytest.raises(NetxFormatError, match="cut.net"):
        read_netx(cut)
    other = tmp_path / "other.net"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=1)
    with pytest.raises(NetxFormatError, match="'layer' group"):
        read_netx(other)


def test_cli_import_and_simulate_a_net_on_lava_emu(tmp_path: Path) -> None:
    import json

    from nasflow.cli import main

    assert main(["import", str(TINY), "--output", str(tmp_path / "tiny.nir")]) == 0
    np.save(tmp_path / "x.npy", _tiny_input(16))
    for model in (tmp_path / "tiny.nir", TINY):
        out = tmp_path / f"sim-{model.suffix[1:]}"
        assert main(["simulate", str(model), "--backend", "lava-emu", "--input", str(tmp_path / "x.npy"),
                     "--out", str(out)]) == 0
        act = np.load(out / "activity.npz")
        gt = np.moveaxis(np.load(GTS / "output.npy")[0], -1, 0)
        np.testing.assert_array_equal(act["layer2_neuron"][:15, 0], gt[1:16])
        assert json.loads((out / "simulate.json").read_text())


def test_cli_hw_costs_a_net_file(tmp_path: Path) -> None:
    import json

    from nasflow.cli import main

    assert main(["hw", str(TINY), "--chip", "loihi", "--out", str(tmp_path / "hw")]) == 0
    report = json.loads((tmp_path / "hw" / "hw.json").read_text())
    assert report["fits"] and report["cores_used"] >= 3  # one core per layer at least: input, conv, conv


def test_lava_dl_pilotnet_lif_currents_and_input_spikes_are_reproduced() -> None:
    """``gts/pilotnet_lif`` (recorded on Loihi 2: its voltages after a spike are not Lava-CPU's, so spikes are no
    oracle past the input layer) gives every layer's spikes and currents ``u``: each imported synapse (strided
    convs, flatten order, dense) maps the recorded spikes of step t − 1 onto exactly the recorded ``u`` of step t
    (u = 64·W·s with iDecay 4096), and the input layer driven by the image spikes as recorded."""
    from exporters.lava.linalg import apply_linear

    gts = LAVA_DL_TESTS / "gts" / "pilotnet_lif"
    graph = read_netx(gts / "network.net")

    def recorded(name: str) -> np.ndarray:  # (W, H, C, T) or (N, T) → (T, C, H, W) or (T, N)
        a = np.load(gts / f"{name}.npy")
        return np.moveaxis(a.transpose(2, 1, 0, 3) if a.ndim == 4 else a, -1, 0).astype(np.float64)

    chain = [("input-s", ["layer1"], "conv-0"), ("conv-0", ["layer2"], "conv-1"), ("conv-1", ["layer3"], "conv-2"),
             ("conv-2", ["layer4"], "conv-3"), ("conv-3", ["layer5"], "conv-4"),
             ("conv-4", ["layer6", "layer7"], "fc-0"), ("fc-0", ["layer8"], "fc-1"), ("fc-1", ["layer9"], "fc-2")]
    for src, ops, dst in chain:
        s, u = recorded(src), recorded(f"{dst}-u")
        y = s
        for op in ops:
            y = apply_linear(graph.nodes[op], op, y)
        y = 64 * y.reshape((len(s),) + u.shape[1:])
        assert np.abs(u).max() > 0
        # one reset interval (the recording ran with reset_interval 16)
        np.testing.assert_array_equal(y[:15], u[1:16], err_msg=f"{src} -> {dst}")
    image = np.load(gts / "image.npy").transpose(2, 1, 0).astype(np.float32)
    act = lava.emulate(graph, np.broadcast_to(image, (16, 1) + image.shape).copy())
    np.testing.assert_array_equal(act["layer0"][:, 0], recorded("input-s")[:16])


def test_lava_dl_ntidigits_with_axonal_delays_is_reproduced_spike_for_spike() -> None:
    """``gts/ntidigits``: three LOIHI dense layers, the first two with per-neuron axonal delays (0-62 steps), 3000
    steps of audio spikes; netx's own test loads the first five layers (the sixth is an average layer)."""
    gts = LAVA_DL_TESTS / "gts" / "ntidigits"
    graph = read_netx(gts / "ntidigits.net", layers=5)
    assert sum(type(n).__name__ == "Delay" for n in graph.nodes.values()) == 2
    spikes = np.load(gts / "input.npy")  # (64, T)
    shape = tuple(int(v) for v in graph.nodes["input"].input_type["input"])
    x = spikes.T.reshape((spikes.shape[1], 1) + shape).astype(np.float32)
    ours = lava.emulate(graph, x)["layer4_neuron"][:, 0]
    gt = np.load(gts / "output.npy").T  # (T, 242)
    assert gt.sum() > 20000
    # three synapse layers (one step each in lava-dl) plus the recording's own step, as for tinynet
    np.testing.assert_array_equal(ours[:-4], gt[4:])
    fixed = lava.simulate(graph, x[:150], fixed_point=True)  # Lava's own runtime with nasflow's delay lines
    for node in ("layer2_neuron", "layer3_neuron", "layer4_neuron"):
        np.testing.assert_array_equal(fixed[node][:, 0], lava.emulate(graph, x[:150])[node][:, 0], err_msg=node)
    with pytest.raises(NetxFormatError, match="layer 5: average layers"):
        read_netx(gts / "ntidigits.net")


def test_delay_on_lava_emu_equals_the_torch_reference() -> None:
    """A NIR Delay per neuron between weights and an IF layer (values exact in fixed point: weights -1, 0, 1 and a
    threshold of 1.5, so no rounding and no ties): the emulator, Lava float and Lava fixed point all give the torch
    reference's spikes."""
    import nir

    from exporters.nir_torch import simulate as torch_simulate

    rng = np.random.default_rng(3)
    w = rng.choice([-1.0, 0.0, 1.0, 1.0], (5, 6))
    delays = np.array([0, 1, 3, 0, 7]) * 1e-3
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([6])}), "fc": nir.Linear(weight=w),
               "wait": nir.Delay(delay=delays), "if": nir.IF(r=np.ones(5), v_threshold=np.full(5, 1.5)),
               "output": nir.Output(output_type={"output": np.array([5])})},
        edges=[("input", "fc"), ("fc", "wait"), ("wait", "if"), ("if", "output")], metadata={"dt": 1e-3})
    x = (rng.random((40, 8, 6)) < 0.5).astype(np.float32)
    ref, emu = torch_simulate(graph, x), lava.emulate(graph, x)
    assert ref["if"].sum() > 10
    for node in ("wait", "if"):
        np.testing.assert_array_equal(emu[node], ref[node], err_msg=node)
    for fixed_point in (False, True):  # Lava's runtime (float and fixed point), samples back to back
        np.testing.assert_array_equal(lava.simulate(graph, x, fixed_point=fixed_point)["if"], ref["if"],
                                      err_msg=f"fixed_point={fixed_point}")


def test_hardware_models_cost_delayed_networks_as_their_delay_free_twin(tmp_path: Path) -> None:
    """A Delay changes when a sum arrives, not how many synaptic operations or messages there are: the imported
    ntidigits network maps and prices exactly as the same graph without its Delay nodes, with the activity lava-emu
    measured."""
    import nir

    from hwmodels import hw_report

    gts = LAVA_DL_TESTS / "gts" / "ntidigits"
    graph = read_netx(gts / "ntidigits.net", layers=5)
    rewire = {"layer2_delay": "layer2_neuron", "layer3_delay": "layer3_neuron"}
    nodes = {k: v for k, v in graph.nodes.items() if k not in rewire}
    edges = [(a, rewire.get(b, b)) for a, b in graph.edges if a not in rewire]
    plain = nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata)
    spikes = np.load(gts / "input.npy")[:, :200]
    shape = tuple(int(v) for v in graph.nodes["input"].input_type["input"])
    act = lava.emulate(graph, spikes.T.reshape((200, 1) + shape).astype(np.float32))
    activity = {k: {"spikes_per_sample": float(v.sum())} for k, v in act.items() if k.endswith("_neuron")}
    delayed, flat = (hw_report(g, "loihi", activity, 200) for g in (graph, plain))
    assert delayed.cores_used == flat.cores_used >= 3
    assert delayed.energy_per_sample_j == pytest.approx(flat.energy_per_sample_j, rel=1e-12)
    assert delayed.energy_per_sample_j > 0

    from nasflow.cli import main

    assert main(["import", str(gts / "ntidigits.net"), "--layers", "5", "--output", str(tmp_path / "n.nir")]) == 0
    assert main(["hw", str(tmp_path / "n.nir"), "--chip", "loihi", "--out", str(tmp_path / "hw")]) == 0


def test_a_trained_model_round_trips_through_net_with_its_fixed_point_spikes(tmp_path: Path) -> None:
    """The main job's ``all-SCB_k3`` baseline (BN folded into biases, pooling, dense read-out) → ``.net`` → NIR:
    every layer's spikes equal those of the original graph run with the integers ``export_netx`` wrote (biases
    included: the export keeps them as netx's ``bias << 6``)."""
    from exporters.netx import export_netx
    from nasflow.cli.export import export_graph
    from nasflow.data.batches import test_inputs

    graph = export_graph(Path(__file__).parent / "golden" / "models" / "baseline.pt")
    x, _ = test_inputs("digits", None, 0, 8, 24)
    quant = export_netx(graph, tmp_path / "w.net")
    original = lava.emulate(graph, x, quant=quant)
    imported = lava.emulate(read_netx(tmp_path / "w.net"), x * quant.input_scale)
    with h5py.File(tmp_path / "w.net", "r") as f:
        by_node = {str(f["layer"][k].attrs["nasflow_node"]): f"layer{k}_neuron" for k in f["layer"]
                   if "nasflow_node" in f["layer"][k].attrs}
    assert len(by_node) >= 5
    for ours, theirs in by_node.items():
        assert original[ours].sum() > 0
        np.testing.assert_array_equal(imported[theirs], original[ours], err_msg=ours)


def test_ntidigits_written_back_by_nasflow_runs_identically_on_lava_dl(tmp_path: Path) -> None:
    """.net → NIR → .net: nasflow's writer gives back the file's weights, axonal delays and neuron integers, and
    lava-dl's own netx runtime (its DelayDense) on the written file spikes exactly as lava-emu on the NIR graph."""
    from exporters.netx import export_netx, simulate_netx

    gts = LAVA_DL_TESTS / "gts" / "ntidigits"
    graph = read_netx(gts / "ntidigits.net", layers=5)
    export_netx(graph, tmp_path / "again.net")
    with h5py.File(gts / "ntidigits.net", "r") as a, h5py.File(tmp_path / "again.net", "r") as b:
        for key in ("2", "3", "4"):
            src, out = a["layer"][key], b["layer"][key]
            np.testing.assert_array_equal(out["weight"][()], src["weight"][()])
            if "delay" in src:
                np.testing.assert_array_equal(out["delay"][()], src["delay"][()])
            for name in ("iDecay", "vDecay", "vThMant"):
                assert int(out["neuron"][name][()]) == int(src["neuron"][name][()])
    spikes = np.load(gts / "input.npy")[:, :120]
    shape = tuple(int(v) for v in graph.nodes["input"].input_type["input"])
    x = spikes.T.reshape((120, 1) + shape).astype(np.float32)
    theirs, ours = simulate_netx(tmp_path / "again.net", x), lava.emulate(graph, x)
    assert theirs["layer4_neuron"].sum() > 100
    for node in ("layer2_neuron", "layer3_neuron", "layer4_neuron"):
        np.testing.assert_array_equal(theirs[node], ours[node], err_msg=node)


def test_lava_dl_netx_backend_refuses_an_input_neuron_layer_it_cannot_stream_into() -> None:
    from exporters.netx import simulate_netx

    with pytest.raises(NetxFormatError, match="layer 0 is a neuron layer.*lava-emu"):
        simulate_netx(TINY, _tiny_input(4))


def test_recurrent_dense_layer_matches_lava_dl(tmp_path: Path) -> None:
    """A ``dense_rec`` layer (ntidigits' third layer made recurrent, its delays dropped): the imported graph's
    back edge runs on lava-emu exactly as lava-dl's own RecurrentDense block."""
    from exporters.netx import simulate_netx

    gts = LAVA_DL_TESTS / "gts" / "ntidigits"
    path = tmp_path / "rec.net"
    shutil.copy(gts / "ntidigits.net", path)
    with h5py.File(path, "r+") as f:
        for key in [k for k in f["layer"] if int(k) > 4]:  # the average read-out: lava-dl cannot build it
            del f["layer"][key]
        layer = f["layer"]["3"]
        n = int(np.prod(layer["shape"][()]))
        del layer["type"]
        layer.create_dataset("type", data=np.array([b"dense_rec"]))
        if "delay" in layer:
            del layer["delay"]
        rng = np.random.default_rng(0)
        layer.create_dataset("weight_rec", data=rng.integers(-40, 41, (n, n)).astype(np.float32) * 2)
    graph = read_netx(path, layers=5)
    assert ("layer3_neuron", "layer3_rec") in graph.edges and ("layer3_rec", "layer3_neuron") in graph.edges
    spikes = np.load(gts / "input.npy")[:, :120]
    shape = tuple(int(v) for v in graph.nodes["input"].input_type["input"])
    x = spikes.T.reshape((120, 1) + shape).astype(np.float32)
    theirs, ours = simulate_netx(path, x), lava.emulate(graph, x)
    plain = read_netx(gts / "ntidigits.net", layers=5)
    assert ours["layer3_neuron"].sum() > 50
    for key in ("layer3", "layer4"):  # netx shapes dense layers (n, 1, 1)
        np.testing.assert_array_equal(theirs[key].reshape(ours[f"{key}_neuron"].shape), ours[f"{key}_neuron"])
    assert not np.array_equal(lava.emulate(plain, x)["layer3_neuron"], ours["layer3_neuron"])  # the loop matters
