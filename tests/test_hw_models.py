"""hwmodels: REFERENCE §8 worked example, hand-worked mapping numbers, Speck, NeuroBench cross-check, errors, CLI."""

from __future__ import annotations

import argparse
import json

import nir
import numpy as np
import pytest
from _paths import INTEROP

from hwmodels import (
    ActivityError,
    HardwareCost,
    ProfileError,
    build_layer_table,
    hw_report,
    list_profiles,
    load_profile,
    map_layers,
)
from hwmodels.numerics import group_words


def _lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.ones(n), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))


def _worked_graph(w1: np.ndarray | None = None) -> nir.NIRGraph:
    """input 100 → Affine(100→50) → LIF(50) → Affine(50→10) → LIF(10) (REFERENCE §8)."""
    w1 = np.ones((50, 100)) if w1 is None else w1
    return nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([100])}),
        nir.Affine(w1, np.zeros(50)),
        _lif(50),
        nir.Affine(np.ones((10, 50)), np.zeros(10)),
        _lif(10),
        nir.Output(output_type={"output": np.array([10])}),
    )


def _spikes(rng, n: int, k: int, steps: int = 10) -> np.ndarray:
    a = np.zeros(steps * n)
    a[rng.choice(steps * n, k, replace=False)] = 1
    return a.reshape(steps, 1, n)


@pytest.mark.parametrize("level", ["totals", "neurons"])
def test_reference_worked_example(level):
    hc = HardwareCost(_worked_graph(), "loihi", steps=10, terms=("synops", "neuron_updates"), update_pricing="inactive")
    if level == "totals":
        act = {"input": {"spikes_per_sample": 200}, "lif": {"spikes_per_sample": 60}, "lif_1": {"spikes_per_sample": 8}}
    else:
        rng = np.random.default_rng(0)
        act = {"input": _spikes(rng, 100, 200), "lif": _spikes(rng, 50, 60), "lif_1": _spikes(rng, 10, 8)}
    r = hc.evaluate(act)
    assert r["synops_per_sample"] == 10_600 and r["macs_per_sample"] == 0
    assert r["neuron_updates_per_sample"] == 600
    assert r["spikes_per_sample"] == 68
    assert r["messages_per_sample"] == pytest.approx(260)
    assert r["cores_used"] == 2
    assert r["energy_per_sample_j"] == pytest.approx(281.36e-9, rel=1e-12)


def test_synapse_words_hand_count():
    # 8-bit weights, groups of 64 synapses, 10-bit header, 64-bit words (nengo-loihi):
    # 50 synapses → 410 bits → 7 words; 64 → 522 → 9; 65 → 9 + ceil(18/64)=1 → 10; 0 → 0
    assert group_words(np.array([50, 64, 65, 0]), 8, 64, 10, 64).tolist() == [7, 9, 10, 0]
    m = map_layers(build_layer_table(_worked_graph()), load_profile("loihi"))
    rows = {r["layer"]: r for r in m.block_rows()}
    assert rows["lif"]["synapse_words"] == 100 * 7  # 100 input axons × 50 synapses each
    assert rows["lif_1"]["synapse_words"] == 50 * 2  # 50 axons × 10 synapses: 90 bits → 2 words
    assert rows["lif"]["axons_in"] == 100 and rows["lif"]["axons_out"] == 50  # one destination core per neuron


def test_core_splitting_by_neurons_memory_and_fan_in():
    # 3,000 neurons, fan-in 100, dense: neurons → 1,024 per core; words per block 100 axons × ceil(...)
    big = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([100])}),
        nir.Affine(np.ones((3000, 100)), np.zeros(3000)),
        _lif(3000),
        nir.Output(output_type={"output": np.array([3000])}),
    )
    m = map_layers(build_layer_table(big), load_profile("loihi"))
    assert m.cores_used == 3 and [r["neurons"] for r in m.block_rows()] == [1024, 1024, 952]
    # 1,024 synapses per axon = 16 full groups of 64 × 9 words = 144 words; × 100 axons = 14,400 ≤ 16,384
    assert m.block_rows()[0]["synapse_words"] == 100 * 144
    # fan-in 5,000 > 4,096 axons: cannot split by outputs → a violation naming the layer and the limit
    wide = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([5000])}),
        nir.Affine(np.ones((2, 5000)), np.zeros(2)),
        _lif(2),
        nir.Output(output_type={"output": np.array([2])}),
    )
    m = map_layers(build_layer_table(wide), load_profile("loihi"))
    assert not m.fits and m.violations[0].layer == "lif" and m.violations[0].limit == "fan_in_axons"
    assert m.violations[0].value == 5000 and m.violations[0].allowed == 4096
    # memory-bound: 200 neurons × 1,000 dense inputs = 1,000 axons × (3 groups: 9+9+ceil(82/64)=2 ... ) words
    mem = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([1000])}),
        nir.Affine(np.ones((1024, 1000)), np.zeros(1024)),
        _lif(1024),
        nir.Output(output_type={"output": np.array([1024])}),
    )
    m = map_layers(build_layer_table(mem), load_profile("loihi"))
    words = [r["synapse_words"] for r in m.block_rows()]
    assert max(words) <= 16384 and m.cores_used > 1  # 1,024 per core would need 1,000 × 144 words


def test_chips_needed_and_hops():
    g = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([10])}),
        nir.Affine(np.ones((60_000, 10)), np.zeros(60_000)),
        _lif(60_000),
        nir.Output(output_type={"output": np.array([60_000])}),
    )
    m = map_layers(build_layer_table(g), load_profile("loihi"))
    assert m.cores_used == 59 and m.chips_needed == 1  # ceil(60,000 / 1,024)
    # core 0-3 → tile (0,0); core 4 → tile (1,0); core 32 → tile 8 = row 1, serpentine: x = 7
    assert m.coords[:5].tolist() == [[0, 0]] * 4 + [[1, 0]] and m.coords[32].tolist() == [7, 1]
    # input events from the host at (0, 0): messages to core 32 cost 1.7 + 7·3.0 + 1·4.0 pJ each
    hc = HardwareCost(g, "loihi", steps=1, terms=("messages",))
    act = {"input": np.zeros((1, 1, 10)), "lif": np.zeros((1, 1, 60_000))}
    act["input"][0, 0, 0] = 1  # one input spike → reaches all 59 cores (one message each)
    r = hc.evaluate(act)
    assert r["messages_per_sample"] == 59
    hops = np.abs(m.coords).sum(axis=1)
    expect = 59 * 1.7e-12 + (np.abs(m.coords[:, 0]) * 3.0e-12 + np.abs(m.coords[:, 1]) * 4.0e-12).sum()
    assert r["energy_per_sample_j"] == pytest.approx(expect, rel=1e-12) and hops.max() == 8


@pytest.fixture(scope="module")
def sinabs():
    return nir.read(str(INTEROP / "cnn_sinabs.nir"))


def test_speck_accepts_cnn_sinabs(sinabs):
    m = map_layers(build_layer_table(sinabs), load_profile("speck"))
    assert m.fits and m.cores_used == 5


def test_speck_rejects_kernel_memory_naming_layer(sinabs):
    g = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([64, 8, 8])}),
        nir.Conv2d((8, 8), np.ones((128, 64, 5, 5)), 1, 2, 1, 1, np.zeros(128)),
        nir.IF(np.ones((128, 8, 8)), np.ones((128, 8, 8))),
        nir.Output(output_type={"output": np.array([128, 8, 8])}),
    )
    m = map_layers(build_layer_table(g), load_profile("speck"))
    assert not m.fits
    v = m.violations[0]  # 64 · 2^(5 + 7) = 262,144 kernel entries
    assert (v.layer, v.limit, v.value, v.allowed) == ("if", "kernel_memory", 262_144, 65_536)
    assert "'if'" in v.message and "kernel memory" in v.message


def test_sinabs_on_loihi_counts_match_fanout_definition(sinabs):
    rng = np.random.default_rng(1)
    t = build_layer_table(sinabs)
    act = {
        n: (rng.random((4, 2, *sh)) < 0.1).astype(float)
        for n, sh in [
            ("input", (2, 34, 34)),
            ("1", (16, 16, 16)),
            ("3", (16, 16, 16)),
            ("6", (8, 8, 8)),
            ("10", (256,)),
            ("12", (10,)),
        ]
    }
    hc = HardwareCost(sinabs, "loihi")
    r = hc.evaluate(act)
    # conv 0 on binary input: Σ non-zero inputs × fan-out map (zero weights excluded) / B
    conv0 = next(c for c in t.connections if c.node_id == "0")
    from hwmodels.numerics import fanout_map

    expect0 = (act["input"].sum(axis=(0, 1)) * fanout_map(conv0)).sum() / 2
    counts = hc.counts(act)
    assert counts.acs["0"] == pytest.approx(expect0)
    assert "5" in counts.macs and "9" in counts.macs  # sum-pooled spikes are not binary: MACs (NeuroBench rule)
    assert r["fits"] and r["energy_per_sample_j"] > 0 and r["latency_per_step_s"] > 0


def test_matches_neurobench_synaptic_operations():
    torch = pytest.importorskip("torch")
    pytest.importorskip("neurobench")
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    g = torch.Generator().manual_seed(0)
    conv, fc = torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Linear(3 * 6 * 6, 4)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-2, 3, conv.weight.shape, generator=g).float())
        fc.weight.copy_(torch.randint(-2, 3, fc.weight.shape, generator=g).float())

    class Twin(torch.nn.Module):  # per-step, stateless Heaviside neurons: [B, T, ...] → [B, T, 4]
        def __init__(self):
            super().__init__()
            self.conv, self.fc = conv, fc

        def forward(self, x):
            outs = []
            for t in range(x.shape[1]):
                s = (self.conv(x[:, t]) > 0.5).float()
                outs.append((self.fc(s.flatten(1)) > 0.5).float())
            return torch.stack(outs, 1)

    graph = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([2, 6, 6])}),
        nir.Conv2d((6, 6), conv.weight.detach().numpy(), 1, 1, 1, 1, conv.bias.detach().numpy()),
        nir.IF(np.ones((3, 6, 6)), np.ones((3, 6, 6))),
        nir.Flatten({"input": np.array([3, 6, 6])}, 0),
        nir.Affine(fc.weight.detach().numpy(), fc.bias.detach().numpy()),
        nir.IF(np.ones(4), np.ones(4)),
        nir.Output(output_type={"output": np.array([4])}),
    )
    for analog in (False, True):
        x = (torch.rand(5, 3, 2, 6, 6, generator=g) < 0.3).float()
        if analog:
            x = x * torch.randint(1, 4, x.shape, generator=g) * 0.5
        twin = Twin().eval()
        with torch.no_grad():
            s1 = torch.stack([(conv(x[:, t]) > 0.5).float() for t in range(3)])
            s2 = torch.stack([(fc(s1[t].flatten(1)) > 0.5).float() for t in range(3)])
        act = {"input": x.transpose(0, 1).numpy(), "if": s1.numpy(), "if_1": s2.numpy()}
        ours = HardwareCost(graph, "generic-45nm-fp32").evaluate(act)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(5)), batch_size=5)
        model = TorchModel(twin)
        res = Benchmark(model, loader, [], [], [[], [SynapticOperations]]).run(quiet=True)["SynapticOperations"]
        model.cleanup_hooks()
        assert ours["synops_per_sample"] == pytest.approx(res["Effective_ACs"], rel=1e-12)
        assert ours["macs_per_sample"] == pytest.approx(res["Effective_MACs"], rel=1e-12)
        assert (ours["macs_per_sample"] > 0) == analog


def test_profiles_load_and_bad_profile_errors(tmp_path):
    assert {
        "loihi",
        "loihi-sanafe",
        "loihi2",
        "truenorth",
        "spinnaker2",
        "speck",
        "generic-45nm-fp32",
        "generic-45nm-int8",
    } <= set(list_profiles())
    for name in list_profiles():
        p = load_profile(name)
        assert all(p.sources.get(k) for k in p.values), name  # a source for every number
    assert "e_synop" in load_profile("loihi2").estimates
    with pytest.raises(ProfileError, match="unknown chip 'loihi9'.*known chips: .*loihi"):
        load_profile("loihi9")
    good = load_profile("loihi").to_dict()
    cases = [
        ("neurons_per_core", None, "missing field params.neurons_per_core"),
        ("e_synop", -1.0, "params.e_synop must not be negative"),
        ("neurons_per_core", "many", "params.neurons_per_core must be an integer"),
    ]
    for key, value, msg in cases:
        bad = json.loads(json.dumps(good))
        if value is None:
            del bad["params"][key]
        else:
            bad["params"][key] = value
        f = tmp_path / "mychip.json"
        f.write_text(json.dumps(bad))
        with pytest.raises(ProfileError, match=f"mychip.json: {msg}"):
            load_profile(f)


def test_a_bare_edge_between_neurons_is_one_identity_synapse_per_neuron():
    """NIR allows a bare edge between two neurons (an identity map: a residual shortcut, a skip edge); on a chip
    it is a weight-1 synapse per neuron, so each spike of the source is one synaptic op, whether the activity is
    per neuron or per-node totals, and next to the target's other inputs."""
    nodes = {
        "input": nir.Input(input_type={"input": np.array([10])}),
        "fc1": nir.Affine(np.ones((10, 10)), np.zeros(10)),
        "a": _lif(10),
        "fc2": nir.Affine(np.ones((10, 10)), np.zeros(10)),
        "b": _lif(10),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    edges = [("input", "fc1"), ("fc1", "a"), ("a", "fc2"), ("fc2", "b"), ("a", "b"), ("b", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges)
    assert [c.node_id for c in build_layer_table(graph).layers["b"].incoming] == ["fc2", "a->b"]
    rng = np.random.default_rng(0)
    act = {"input": _spikes(rng, 10, 30), "a": _spikes(rng, 10, 7), "b": _spikes(rng, 10, 4)}
    plain = nir.NIRGraph(nodes=nodes, edges=[e for e in edges if e != ("a", "b")])
    with_edge = hw_report(graph, "loihi", activity=act)
    without = hw_report(plain, "loihi", activity=act)
    assert with_edge.synops_per_sample - without.synops_per_sample == pytest.approx(7.0)  # a's 7 spikes, fan-out 1
    totals = {k: {"spikes_per_sample": float(v.sum())} for k, v in act.items()}
    t_with = hw_report(graph, "loihi", activity=totals, steps=10)
    t_without = hw_report(plain, "loihi", activity=totals, steps=10)
    assert t_with.synops_per_sample - t_without.synops_per_sample == pytest.approx(7.0)


def test_bad_activity_errors():
    hc = HardwareCost(_worked_graph(), "loihi", steps=10)
    rng = np.random.default_rng(0)
    ok = {"input": _spikes(rng, 100, 20), "lif": _spikes(rng, 50, 6), "lif_1": _spikes(rng, 10, 1)}
    with pytest.raises(ActivityError, match=r"activity\['lif'\] has shape \(10, 1, 49\)"):
        hc.evaluate({**ok, "lif": np.zeros((10, 1, 49))})
    nan = ok["lif"].copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ActivityError, match=r"activity\['lif'\] contains NaN"):
        hc.evaluate({**ok, "lif": nan})
    with pytest.raises(ActivityError, match="lacks node 'lif'"):
        hc.evaluate({"input": ok["input"], "lif_1": ok["lif_1"]})
    with pytest.raises(ActivityError, match="'nope'"):
        hc.evaluate({**ok, "nope": ok["lif"]})
    with pytest.raises(ActivityError, match="node 'lif'.*finite"):
        hc.evaluate({"lif": {"spikes_per_sample": float("nan")}, "lif_1": {"spikes_per_sample": 1.0}})


def test_cli_handler_writes_report(tmp_path, sinabs):
    from nasflow.cli.hw import add_hw_parser

    parser = argparse.ArgumentParser()
    add_hw_parser(parser.add_subparsers(dest="command"))
    model = INTEROP / "cnn_sinabs.nir"
    sim = {
        "schema_version": 1,
        "steps": 5,
        "nodes": {n: {"spikes_per_sample": 100.0} for n in ("1", "3", "6", "10")} | {"12": {"spikes_per_sample": 3.0}},
    }
    (tmp_path / "simulate.json").write_text(json.dumps(sim))
    args = parser.parse_args(
        [
            "hw",
            str(model),
            "--chip",
            "loihi",
            "--activity",
            str(tmp_path / "simulate.json"),
            "--out",
            str(tmp_path / "hw"),
        ]
    )
    assert args.handler(args) == 0
    rep = json.loads((tmp_path / "hw" / "hw.json").read_text())
    for key in (
        "schema_version",
        "fits",
        "cores_used",
        "chips_needed",
        "energy_per_sample_j",
        "energy_terms_j",
        "synops_per_sample",
        "neuron_updates_per_sample",
        "messages_per_sample",
        "max_core_messages_per_step",
        "latency_per_step_s",
        "layers",
    ):
        assert key in rep, key
    assert rep["activity"] == "node" and rep["neuron_updates_per_sample"] == 4096 * 2 * 5 + 512 * 5 + 266 * 5
    assert (tmp_path / "hw" / "traffic_heatmap.png").stat().st_size > 0
    assert (tmp_path / "hw" / "energy_per_layer.png").stat().st_size > 0
    assert "energy per sample" in (tmp_path / "hw" / "hw.md").read_text()
    bad = tmp_path / "broken.nir"
    bad.write_bytes(model.read_bytes()[:200])
    args = parser.parse_args(["hw", str(bad), "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="broken.nir: not a readable NIR"):
        args.handler(args)
    args = parser.parse_args(["hw", "--list-chips"])
    assert args.handler(args) == 0


def test_ac_mac_energy_and_optional_terms():
    # analog input: the first layer's ops are MACs; with dense analog input at every step (no 'input' entry):
    # MACs = 100 inputs × 50 × T; ACs = 60 × 10
    hc = HardwareCost(_worked_graph(), "generic-45nm-fp32", steps=10, terms=("synops",))
    r = hc.evaluate({"lif": {"spikes_per_sample": 60}, "lif_1": {"spikes_per_sample": 8}})
    assert (r["macs_per_sample"], r["synops_per_sample"]) == (50_000, 600)
    assert r["energy_per_sample_j"] == pytest.approx(50_000 * 4.6e-12 + 600 * 0.9e-12, rel=1e-12)
    # Lemaire-style memory term: one weight read per op, one state read + write per neuron update
    hm = HardwareCost(_worked_graph(), "generic-45nm-fp32", steps=10, terms=("memory",))
    rm = hm.evaluate({"lif": {"spikes_per_sample": 60}, "lif_1": {"spikes_per_sample": 8}})
    assert rm["energy_per_sample_j"] == pytest.approx(50_600 * 10e-12 + 600 * 20e-12, rel=1e-12)
    # static power × latency-bound time, where the chip gives one (Loihi); unknown → listed as missing
    hs = HardwareCost(_worked_graph(), "loihi", steps=10, terms=("static",))
    act = {"input": {"spikes_per_sample": 200}, "lif": {"spikes_per_sample": 60}, "lif_1": {"spikes_per_sample": 8}}
    rs = hs.evaluate(act)
    assert rs["energy_per_sample_j"] == pytest.approx(0.104 * 10 * rs["latency_per_step_s"], rel=1e-9)
    from hwmodels.energy import energy_and_latency

    e = energy_and_latency(hs.mapping, hs.counts(act), ("static", "memory"))
    assert e["terms_missing"] == ["memory"] and e["terms_included"] == ["static"]


def test_latency_bound_hand_computed():
    # one step, one input spike → 50 synops on core 0, then nothing: busiest core = 50·3.5 ns + 50 inactive
    # updates · 5.3 ns; route host (0,0) → core 0 on tile (0,0): 2.1 ns; barrier for 1 tile: 113 ns
    hc = HardwareCost(_worked_graph(), "loihi", steps=1)
    act = {"input": np.zeros((1, 1, 100)), "lif": np.zeros((1, 1, 50)), "lif_1": np.zeros((1, 1, 10))}
    act["input"][0, 0, 3] = 1
    r = hc.evaluate(act)
    assert r["latency_per_step_s"] == pytest.approx(50 * 3.5e-9 + 50 * 5.3e-9 + 2.1e-9 + 113e-9, rel=1e-12)
    assert r["max_core_messages_per_step"] == 1


def test_traffic_aware_placement_reduces_hop_energy(sinabs):
    act = {"input": {"spikes_per_sample": 300.0}} | {n: {"spikes_per_sample": 200.0} for n in ("1", "3", "6", "10")}
    act["12"] = {"spikes_per_sample": 2.0}
    greedy = HardwareCost(sinabs, "truenorth", steps=4, terms=("messages",))
    smart = HardwareCost(sinabs, "truenorth", steps=4, terms=("messages",), placement="traffic")
    assert smart.mapping.cores_used == greedy.mapping.cores_used
    assert sorted(map(tuple, smart.mapping.coords)) == sorted(map(tuple, greedy.mapping.coords))  # same cores
    eg, es = greedy.evaluate(act)["energy_per_sample_j"], smart.evaluate(act)["energy_per_sample_j"]
    assert es < eg


def test_sanafe_prices_convolutional_synapses_lower(sinabs):
    act = {n: {"spikes_per_sample": 100.0} for n in ("1", "3", "6", "10", "12")}
    hc = HardwareCost(sinabs, "loihi-sanafe", steps=4, terms=("synops",))
    c = hc.counts(act)
    r = hc.evaluate(act)
    conv = sum(c.layer_synops_conv.values())
    dense = sum(c.layer_synops.values()) - conv
    assert r["energy_per_sample_j"] == pytest.approx(conv * 24.0e-12 + dense * 34.55e-12, rel=1e-9)


def test_cli_per_neuron_activity_and_capacity_only(tmp_path, sinabs):
    from nasflow.cli.hw import add_hw_parser

    parser = argparse.ArgumentParser()
    add_hw_parser(parser.add_subparsers(dest="command"))
    rng = np.random.default_rng(2)
    shapes = {"input": (2, 34, 34), "1": (16, 16, 16), "3": (16, 16, 16), "6": (8, 8, 8), "10": (256,), "12": (10,)}
    np.savez(
        tmp_path / "activity.npz", **{n: (rng.random((3, 2, *s)) < 0.05).astype(np.float32) for n, s in shapes.items()}
    )
    model = str(INTEROP / "cnn_sinabs.nir")
    args = parser.parse_args(
        ["hw", model, "--chip", "speck", "--activity", str(tmp_path / "activity.npz"), "--out", str(tmp_path / "a")]
    )
    assert args.handler(args) == 0
    rep = json.loads((tmp_path / "a" / "hw.json").read_text())
    assert rep["activity"] == "neuron" and rep["fits"] and rep["latency_per_step_s"] > 0
    assert "synops" in rep["terms_missing"]  # Speck publishes no per-event energy
    args = parser.parse_args(["hw", model, "--chip", "loihi", "--out", str(tmp_path / "b")])
    assert args.handler(args) == 0
    rep = json.loads((tmp_path / "b" / "hw.json").read_text())
    assert rep["energy_per_sample_j"] is None and rep["cores_used"] > 0 and rep["schema_version"] == 1


def test_xy_link_loads_hand_routed():
    from hwmodels.energy import link_loads

    g = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([10])}),
        nir.Affine(np.ones((60_000, 10)), np.zeros(60_000)),
        _lif(60_000),
        nir.Output(output_type={"output": np.array([60_000])}),
    )
    hc = HardwareCost(g, "loihi", steps=1)
    act = {"input": np.zeros((1, 1, 10)), "lif": np.zeros((1, 1, 60_000))}
    act["input"][0, 0, 0] = 1  # one message from the host at (0, 0) to each of the 59 cores
    ew, ns = link_loads(hc.mapping, hc.counts(act))
    xy = hc.mapping.coords
    # link x→x+1 on row 0 carries every message whose target column is beyond x; column links carry row-1 targets
    assert ew[0].tolist() == [float((xy[:, 0] > x).sum()) for x in range(ew.shape[1])]
    assert ew[1:].sum() == 0
    assert ns[0].tolist() == [float(((xy[:, 0] == x) & (xy[:, 1] >= 1)).sum()) for x in range(ns.shape[1])]
    assert ew.sum() + ns.sum() == np.abs(xy).sum()  # total link traversals = total hops


def test_partial_measured_synops_are_refused_unless_the_rest_is_estimated():
    """Totals measured for only some synapses (the search's monitor sees no pool sums or voting): refused by default
    (a simulate.json that lost records), estimated as events × mean fan-out with ``estimate_unmeasured``."""
    graph = _worked_graph()
    first, second = build_layer_table(graph).connections
    spikes = {"input": {"spikes_per_sample": 200}, "lif": {"spikes_per_sample": 60}, "lif_1": {"spikes_per_sample": 8}}
    partial = spikes | {first.node_id: {"synops": {"lif": {"source": "input", "acs_per_sample": 7_000.0,
                                                            "macs_per_sample": 0.0}}}}
    with pytest.raises(ActivityError, match=repr(second.node_id)):
        HardwareCost(graph, "loihi", steps=10).evaluate(partial)
    r = HardwareCost(graph, "loihi", steps=10, estimate_unmeasured=True).evaluate(partial)
    assert r["synops_per_sample"] == 7_000 + 60 * 10
    notes = HardwareCost(graph, "loihi", steps=10, estimate_unmeasured=True).counts(partial).notes
    (note,) = [n for n in notes if "estimated" in n]
    assert note.endswith(f": {second.node_id} (into {second.target})")
    # Totals without measured synops cost the same either way.
    assert (HardwareCost(graph, "loihi", steps=10, estimate_unmeasured=True).evaluate(spikes)
            == HardwareCost(graph, "loihi", steps=10).evaluate(spikes))
