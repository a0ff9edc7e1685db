"""Hybrid (LIF + analog ReLU) networks downstream: activity counts, NIR files stock ``nir.read`` reads, the torch
reference against the model, Lava's refusal by name, and hwmodels costing analog layers as MACs."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from exporters.core.errors import NIRFormatError
from exporters.core.kinds import ACTIVATION_KEY, kind_of
from exporters.lava.errors import LavaBackendError
from exporters.lava.plan import build_plan
from exporters.nir_export import to_nir
from exporters.nir_torch import GraphModule
from hwmodels import HardwareCost
from hwmodels.hybrid import HybridError
from nasflow.evaluators.hw_cost import HardwareSearchCost
from nasflow.models import create_model
from nasflow.snn.activity import ActivityMonitor
from nasflow.snn.neuron_types import AnalogReLU, type_layers
from nasflow.snn.tps import apply_temporal


@pytest.fixture(scope="module")
def hybrid():
    torch.manual_seed(0)
    model = create_model("spikedhs", in_shape=(1, 8, 8), num_classes=10, channels=4, steps=4, layers=3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(0.05)  # enough drive for spikes in an untrained network
    layers = type_layers(model)
    apply_temporal(model, ";".join(f"{n}:type=relu" for n in (layers[0], layers[4], layers[-2])))
    return model.eval(), layers


def test_activity_counts_analog_layers_as_values_and_their_consumers_as_macs(hybrid):
    model, layers = hybrid
    with torch.no_grad(), ActivityMonitor(model) as mon:
        model(torch.rand(3, 1, 8, 8))
    s = mon.summary()
    row = s["layers"][layers[0]]
    assert row["kind"] == "analog" and row["nonzero_per_sample"] > 0 and 0 < row["activity"] <= 1
    assert layers[0] not in {n for n, r in s["layers"].items() if r["kind"] == "neuron"}  # never counted as spikes
    consumers = [n for n, r in s["layers"].items() if r["kind"] == "synapse" and r["macs_per_sample"] > 0]
    assert any(n.startswith("cells.0.pre") for n in consumers)  # the stem's consumers multiply
    assert s["neuron_updates_per_sample"] == sum(r["neuron_updates_per_sample"] for r in s["layers"].values()
                                                 if r["kind"] in ("neuron", "analog"))


def test_hybrid_nir_reads_with_stock_nir_and_the_reference_matches_the_model(hybrid, tmp_path):
    model, layers = hybrid
    graph = to_nir(model, (1, 8, 8))
    nir.write(tmp_path / "h.nir", graph)
    back = nir.read(tmp_path / "h.nir")
    node = back.nodes[layers[0]]
    assert type(node).__name__ == "LI" and node.metadata[ACTIVATION_KEY] == "relu"
    assert kind_of(node, layers[0]).name == "ReLU" and not kind_of(node).spiking
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        y = model(x)
        out = GraphModule(back)(x.unsqueeze(0).expand(4, *x.shape))
    torch.testing.assert_close(out["output"][-1], y, rtol=1e-5, atol=1e-5)
    assert torch.all(out[layers[0]] >= 0) and not torch.all((out[layers[0]] == 0) | (out[layers[0]] == 1))


def test_lava_refuses_an_analog_layer_by_name(hybrid):
    graph = to_nir(hybrid[0], (1, 8, 8))
    with pytest.raises(LavaBackendError, match=f"'{hybrid[1][0]}' is an analog ReLU layer"):
        build_plan(graph)


def test_hwmodels_costs_analog_layers_as_macs_and_refuses_chips_without_them(hybrid):
    model, layers = hybrid
    with torch.no_grad(), ActivityMonitor(model) as mon:
        model(torch.rand(3, 1, 8, 8))
    summary = mon.summary()
    costs = HardwareSearchCost("generic-45nm-fp32")(model, summary)
    assert costs["energy:generic-45nm-fp32"] > 0
    graph = to_nir(model, (1, 8, 8))
    hc = HardwareCost(graph, "generic-45nm-fp32", steps=4)
    stem_out = [c for c in hc.table.connections if c.source == layers[0]]
    assert stem_out and not any(c.static_binary for c in stem_out)  # an analog source feeds MACs
    with pytest.raises(HybridError, match="chip 'loihi' cannot run analog \\(ReLU\\) layer"):
        HardwareCost(graph, "loihi", steps=4)
    loihi2 = HardwareSearchCost("loihi2")(model, summary)["energy:loihi2"]
    all_ac = HardwareSearchCost("loihi2")(model, {**summary, "layers": {
        k: ({**v, "synops_per_sample": v["synops_per_sample"] + v["macs_per_sample"], "macs_per_sample": 0.0}
            if v["kind"] == "synapse" else v) for k, v in summary["layers"].items()}})["energy:loihi2"]
    assert loihi2 > all_ac  # Loihi 2 prices the graded (MAC) ops at e_mac, above a binary synaptic op


def _marked(node: nir.NIRNode, value: str = "relu") -> nir.NIRNode:
    node.metadata = {ACTIVATION_KEY: value}
    return node


@pytest.mark.parametrize("node, match", [
    (_marked(nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                     v_reset=np.zeros(2))), "on a LIF node"),
    (_marked(nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)), "gelu"), "'gelu'"),
    (_marked(nir.LI(tau=np.ones(2), r=np.full(2, 2.0), v_leak=np.zeros(2))), "r = 1 and v_leak = 0"),
])
def test_malformed_activation_metadata_is_refused_by_node(node, match):
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])), "x": node,
                                "output": nir.Output(output_type=np.array([2]))},
                         edges=[("input", "x"), ("x", "output")], metadata={"dt": 1.0})
    with pytest.raises(NIRFormatError, match=f"node 'x'.*{match}"):
        GraphModule(graph)


def test_analog_relu_is_elementwise_max_with_zero():
    x = torch.tensor([[[-1.0, 0.5]], [[2.0, -0.1]]])
    torch.testing.assert_close(AnalogReLU()(x), torch.tensor([[[0.0, 0.5]], [[2.0, 0.0]]]))
    with pytest.raises(ValueError, match="time-first"):
        AnalogReLU()(torch.ones(3))


def test_an_alif_layer_is_costed_as_its_lif_structure_when_asked():
    model = create_model("spikedhs", in_shape=(1, 8, 8), num_classes=10, channels=2, steps=2, layers=3)
    apply_temporal(model, f"{type_layers(model)[0]}:type=alif")
    with torch.no_grad(), ActivityMonitor(model.eval()) as mon:
        model(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="ALIF's adaptive threshold has no NIR node"):
        HardwareSearchCost("generic-45nm-fp32")(model, mon.summary())
    with pytest.warns(UserWarning, match="ALIF"):
        cost = HardwareSearchCost("generic-45nm-fp32", allow_lossy=True)(model, mon.summary())
    assert cost["energy:generic-45nm-fp32"] > 0
