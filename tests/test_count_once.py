"""Count once (issue 13): the synaptic ops the search measures are the ones the hardware model prices.

The search's ``ActivityMonitor`` counts ACs/MACs per conv/linear layer (REFERENCE.md §8); ``HardwareSearchCost``
hands those counts to hwmodels per weight node (``measured_totals``) instead of letting it re-estimate them from
uniform rates. The exported graph has synapses the model does not (a spiking max-pool's SumPool2d, the voting
Affine): hwmodels counts them from their source's spikes, exactly, since their fan-out is uniform.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from _paths import ROOT

from exporters.nir_export import to_nir
from exporters.nir_torch import simulate
from hwmodels import HardwareCost, build_layer_table, hw_report
from nasflow.data import make_loaders
from nasflow.evaluators.hw_cost import HardwareSearchCost, measured_totals
from nasflow.evaluators.supernet_eval import SupernetEvaluator
from nasflow.models import load_model
from nasflow.snn.activity import ActivityMonitor
from nasflow.snn.neurons import reset_states
from nasflow.train.supernet import AutoSNNSupernet

ARCH = ("SCB_k3", "SRB_k5", "skip", "SRB_k3", "SCB_k3")  # max-pools after blocks 1 and 4, residual blocks


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """32 validation images (a power of two: per-sample counts stay exact binary fractions)."""
    loaders = make_loaders("digits", 32, seed=0, val_split=0.2, eval_batch_size=32)
    return next(iter(loaders.val))


def _summary(net: torch.nn.Module, x: torch.Tensor) -> dict:
    net.eval()
    with torch.no_grad(), ActivityMonitor(net) as mon:
        reset_states(net)
        net(x)
    return mon.summary()


def _check_counted_once(net: torch.nn.Module, x: torch.Tensor, summary: dict, costs: dict) -> None:
    """Journal costs = monitor = hwmodels, per weight node and in total, and the search's energy prices them."""
    steps = int(net.steps)
    assert costs["synops"] == summary["synops_per_sample"] and costs["macs"] == summary["macs_per_sample"]
    assert costs["neuron_updates"] == summary["neuron_updates_per_sample"]
    graph = to_nir(net, dt=1e-3, validate=False)
    act = simulate(graph, x.unsqueeze(0).expand(steps, *x.shape).contiguous().numpy(), dt=1e-3)
    exact = HardwareCost(graph, "loihi")
    counts = exact.counts(act)
    report = hw_report(graph, "loihi", activity=act)
    synapses = {n: r for n, r in summary["layers"].items() if r["kind"] == "synapse"}
    assert synapses and summary["synops_per_sample"] > 0 and summary["macs_per_sample"] > 0
    for name, row in synapses.items():  # per layer: the monitor's count is hwmodels' exact count
        assert counts.acs.get(name, 0.0) == row["synops_per_sample"], name
        assert counts.macs.get(name, 0.0) == row["macs_per_sample"], name
    for row in report.layers:  # hw.json's per-layer rows: the sum over the layer's inputs (residual: two)
        if row["inputs"] and all(k in synapses for k in row["inputs"]):
            assert row["acs_per_sample"] == sum(synapses[k]["synops_per_sample"] for k in row["inputs"])
            assert row["macs_per_sample"] == sum(synapses[k]["macs_per_sample"] for k in row["inputs"])
    for name, row in summary["layers"].items():  # neuron updates: neurons × T on both sides
        if row["kind"] == "neuron":
            assert exact.counts(act).updates[exact.mapping.blocks_of(name)].sum() == row["neuron_updates_per_sample"]
    # The only ops the monitor does not see: the export's pool sums and voting, one op per source spike.
    extra = {c.node_id: c for c in exact.table.connections if c.node_id not in synapses}
    assert {c.target for c in extra.values()} == {"features.1", "features.4", "vote"}
    for node, conn in extra.items():
        assert counts.acs[node] == summary["layers"][conn.source]["spikes_per_sample"], node
    assert report.synops_per_sample == summary["synops_per_sample"] + sum(counts.acs[n] for n in extra)
    assert report.macs_per_sample == summary["macs_per_sample"]
    # What the search priced: the measured totals give hwmodels' exact ops, and the journaled energy is theirs.
    search = HardwareCost(graph, "loihi", steps=steps, estimate_unmeasured=True)
    priced = search.evaluate(measured_totals(search.table, summary))
    assert priced["synops_per_sample"] == report.synops_per_sample
    assert priced["macs_per_sample"] == report.macs_per_sample
    assert priced["energy_terms_j"]["synops"] == pytest.approx(report.energy_terms_j["synops"], rel=1e-12)
    assert costs["energy:loihi"] == priced["energy_per_sample_j"]


def test_supernet_candidate_is_counted_once(digits):
    x, y = digits
    torch.manual_seed(0)
    net = AutoSNNSupernet(in_shape=(1, 8, 8), num_classes=10, channels=4, steps=3)
    with torch.no_grad():  # an untrained supernet barely spikes: louder weights exercise every count
        for p in net.parameters():
            if p.dim() > 1:
                p.mul_(4)
    _, costs = SupernetEvaluator(net, [(x, y)], cost_fns=[HardwareSearchCost("loihi")]).evaluate_one(ARCH)
    summary = _summary(net, x)  # the evaluator's monitor saw the same pass
    assert costs["spikes"] == summary["spikes_per_sample"] > 0
    _check_counted_once(net, x, summary, costs)


def test_trained_winner_is_counted_once(digits):
    """The main job's winner: trained, so its classifier and voting layer spike too."""
    x, _ = digits
    net, _ = load_model(ROOT / "tests" / "golden" / "models" / "winner.pt")
    summary = _summary(net, x)
    assert summary["layers"]["fc_sn"]["spikes_per_sample"] > 0
    costs = {"synops": summary["synops_per_sample"], "macs": summary["macs_per_sample"],
             "neuron_updates": summary["neuron_updates_per_sample"]}
    costs |= HardwareSearchCost("loihi")(net, summary)
    _check_counted_once(net, x, summary, costs)


def test_monitor_synapse_missing_from_graph_is_an_error(digits):
    x, _ = digits
    net, _ = load_model(ROOT / "tests" / "golden" / "models" / "winner.pt")
    summary = _summary(net, x)
    summary["layers"]["ghost"] = {"kind": "synapse", "synops_per_sample": 1.0, "macs_per_sample": 0.0}
    with pytest.raises(ValueError, match="'ghost'"):
        HardwareSearchCost("loihi")(net, summary)


def _skewed_graph() -> nir.NIRGraph:
    """REFERENCE §8's worked example with only the first 20 inputs wired (each to all 50 neurons): the mean
    fan-out is 10, but inputs that spike only there have fan-out 50."""
    w1 = np.zeros((50, 100))
    w1[:, :20] = 1
    lif = [nir.LIF(tau=np.ones(n), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n)) for n in (50, 10)]
    return nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([100])}), nir.Affine(w1, np.zeros(50)), lif[0],
        nir.Affine(np.ones((10, 50)), np.zeros(10)), lif[1], nir.Output(output_type={"output": np.array([10])}),
    )


def test_energy_comes_from_measured_synops_not_the_uniform_estimate():
    graph = _skewed_graph()
    first, second = build_layer_table(graph).connections
    spikes = {"input": {"spikes_per_sample": 200}, first.target: {"spikes_per_sample": 60},
              second.target: {"spikes_per_sample": 8}}
    # 200 input spikes on the wired inputs: 200·50 ACs; 60 spikes into 10 neurons: 600 ACs (both measured).
    measured = spikes | {c.node_id: {"synops": {c.target: {"source": c.source, "acs_per_sample": acs,
                                                            "macs_per_sample": 0.0}}}
                         for c, acs in ((first, 10_000.0), (second, 600.0))}
    kw = dict(steps=10, terms=("synops", "neuron_updates"), update_pricing="inactive")
    est = HardwareCost(graph, "loihi", **kw).evaluate(spikes)
    got = HardwareCost(graph, "loihi", **kw).evaluate(measured)
    assert est["synops_per_sample"] == 200 * 10 + 600
    assert est["energy_per_sample_j"] == pytest.approx((2_600 * 23.6 + 600 * 52) * 1e-12, rel=1e-12)  # 92.56 nJ
    assert got["synops_per_sample"] == 10_600
    assert got["energy_per_sample_j"] == pytest.approx((10_600 * 23.6 + 600 * 52) * 1e-12, rel=1e-12)  # 281.36 nJ
    # Per-neuron activity with the same spikes on the wired inputs gives the same (exact) energy.
    rng = np.random.default_rng(0)
    act = {}
    for node, n, k, wired in (("input", 100, 200, 20), (first.target, 50, 60, 50), (second.target, 10, 8, 10)):
        a = np.zeros((10, wired))
        a.flat[rng.choice(10 * wired, k, replace=False)] = 1
        act[node] = np.concatenate([a, np.zeros((10, n - wired))], axis=1)[:, None, :]
    exact = HardwareCost(graph, "loihi", **kw).evaluate(act)
    assert exact["synops_per_sample"] == 10_600
    assert exact["energy_per_sample_j"] == pytest.approx(got["energy_per_sample_j"], rel=1e-12)
