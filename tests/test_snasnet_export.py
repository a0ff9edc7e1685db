"""SNASNet → NIR (backward cell edges as one-step NIR Delays) → nasflow's torch reference and Lava, spike for spike;
hardware report on the exported graph; cells and options that cannot be exported fail by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from exporters import nir_torch
from exporters.core.kinds import FIRING_TYPES, node_type
from exporters.core.traversal import back_edges
from exporters.equivalence import compare_activity
from exporters.lava import LavaBackendError, build_plan
from exporters.nir_export import to_nir
from exporters.nir_io import read_nir, write_nir
from nasflow.snn.neurons import Neuron
from nasflow.spaces.snasnet import RELEASED_CELLS, SNASNet, cell_kind

T, B = 4, 3
FORWARD = "0303 0030 0003 0000"
RELEASED = RELEASED_CELLS["cifar10"]  # backward edges 2 → 0 and 3 → 1 (conv1x1)
BACK_SKIP = "0411 0040 0002 0100"  # backward skip 3 → 1, avg pools: one source reaches a neuron same-step and late
BACK_POOL = "0404 0030 3002 0100"  # avg-pool ops, a backward conv 2 → 0 and a backward skip 3 → 1
FED_BACK_ONLY = "0023 3001 0400 0000"  # node 1 is fed by the backward pool 2 → 1 alone (no same-step input)
TWO_BACK = "0303 0030 1000 0030"  # the cycle 0 → 3 → 2 → 0 crosses two backward edges (conv 3 → 2, skip 2 → 0)


def build(cell: str, reduction: str = "code", count_include_pad: bool = False, seed: int = 0) -> SNASNet:
    """A small digits-shaped SNASNet with BN statistics that make every layer fire (untrained nets are silent)."""
    torch.manual_seed(seed)
    model = SNASNet(cell, in_shape=(1, 8, 8), num_classes=10, channels=4, steps=T, reduction=reduction,
                    second_pool=2, vote=2, hidden=16, count_include_pad=count_include_pad, classifier_bn=True)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(1.0, 2.5)
                m.bias.uniform_(0.1, 0.6)
    return model.eval()


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.rand(B, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 3


def torch_spikes(model: SNASNet, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every neuron's output [T, B, ...] from the torch model itself (recurrent cells call neurons per step)."""
    rec: dict[str, list[torch.Tensor]] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: rec.setdefault(n, []).append(o.detach()))
             for n, m in model.named_modules() if isinstance(m, Neuron)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return {n: torch.cat(v).numpy() for n, v in rec.items()}


def nir_input(x: torch.Tensor) -> np.ndarray:
    return np.broadcast_to(x.numpy(), (T, *x.shape)).copy()  # direct coding: the image at every step


@pytest.mark.parametrize("reduction", ["code", "paper"])
@pytest.mark.parametrize("cell", [FORWARD, RELEASED, BACK_SKIP, BACK_POOL, RELEASED_CELLS["cifar100"], FED_BACK_ONLY,
                                  TWO_BACK])
def test_round_trip_exact_on_every_neuron(tmp_path, cell, reduction):
    model = build(cell, reduction)
    x = inputs()
    ref = torch_spikes(model, x)
    graph = read_nir(write_nir(tmp_path / "snasnet.nir", to_nir(model)))
    back = back_edges(graph)
    if cell_kind(cell) == "backward":
        assert back and all(".back" in dst for _, dst in back)  # cycles are broken at the Delays, also after a file
    else:
        assert not back
    act = nir_torch.simulate(graph, nir_input(x))
    neurons = [n for n, node in graph.nodes.items() if node_type(node) in FIRING_TYPES]
    assert sorted(neurons) == sorted(ref)
    for n in neurons:
        np.testing.assert_array_equal(np.asarray(act[n]), ref[n], err_msg=n)
    assert sum(float(v.sum()) for v in ref.values()) > 0


def test_back_edges_matter_and_are_the_cell_edges():
    model = build(RELEASED)
    graph = to_nir(model)
    assert back_edges(graph) == {(f"{c}.ops.{e}.conv", f"{c}.node{e[-1]}.back0") for c in ("cell1", "cell2")
                                 for e in ("e2_0", "e3_1")}
    assert all(node_type(graph.nodes[d]) == "Delay" for _, d in back_edges(graph))
    x = nir_input(inputs())
    ref = nir_torch.simulate(graph, x)
    cut = type(graph)(nodes=graph.nodes, edges=[e for e in graph.edges if e not in back_edges(graph)],
                      metadata=graph.metadata, type_check=False)
    cut_act = nir_torch.simulate(cut, x)
    assert any(not np.array_equal(cut_act[n], ref[n]) for n in ("cell1.ops.e0_1.sn", "cell1.ops.e1_2.sn"))


def test_count_include_pad_true_exports_plain_avgpool():
    graph = to_nir(build(BACK_POOL, count_include_pad=True))
    assert node_type(graph.nodes["cell1.ops.e0_1"]) == "AvgPool2d"
    assert "cell1.ops.e0_1.sum" not in graph.nodes
    graph = to_nir(build(BACK_POOL, count_include_pad=False))
    assert node_type(graph.nodes["cell1.ops.e0_1.sum"]) == "SumPool2d"
    scale = np.asarray(graph.nodes["cell1.ops.e0_1"].scale)
    assert scale[0, 0, 0] == pytest.approx(1 / 4) and scale[0, 0, 1] == pytest.approx(1 / 6)
    assert scale[0, 1, 1] == pytest.approx(1 / 9)


@pytest.mark.parametrize("cell", [RELEASED, BACK_SKIP, FED_BACK_ONLY, TWO_BACK])
def test_lava_float_matches_reference_per_layer(cell):
    pytest.importorskip("lava")
    from exporters import lava

    graph = to_nir(build(cell))
    x = nir_input(inputs(seed=7))
    ref = nir_torch.simulate(graph, x)
    cand = lava.simulate(graph, x, timeout_s=120)
    report = compare_activity(ref, cand, nodes=graph)
    for node, r in report["nodes"].items():
        assert r["precision"] >= 0.999 and r["recall"] >= 0.999, (node, r)
    assert report["total"]["reference_spikes"] > 100


def test_lava_splits_same_step_and_late_paths_from_one_source():
    plan = build_plan(to_nir(build(BACK_SKIP)))
    pairs = [(c.src, c.dst) for c in plan.conns]
    split = [p for p in set(pairs) if pairs.count(p) == 2]
    assert split, "the backward skip gives a source both a same-step and a one-step-late path"
    for src, dst in split:
        assert sorted(c.delayed for c in plan.conns if (c.src, c.dst) == (src, dst)) == [False, True]


def test_hw_report_prices_exported_activity():
    from hwmodels import build_layer_table, hw_report

    graph = to_nir(build(RELEASED))
    act = nir_torch.simulate(graph, nir_input(inputs()))
    hw_graph = build_layer_table(graph).graph  # identity sum nodes are wires: fan-in sums land at the neurons
    assert not any(".node" in k for k in hw_graph.nodes)
    assert ("cell1.ops.e2_0.conv", "cell1.ops.e0_1.sn") in hw_graph.edges
    report = hw_report(graph, "loihi", activity={k: np.asarray(v) for k, v in act.items()})
    assert report.energy_per_sample_j > 0


def test_delay_cells_export_where_bare_back_edges_could_not():
    # node 1 fed by a backward edge alone: its junction has no same-step input; the Delay holds the whole lag
    graph = to_nir(build(FED_BACK_ONLY))
    assert node_type(graph.nodes["cell1.node1.back0"]) == "Delay"
    assert np.all(np.asarray(graph.nodes["cell1.node1.back0"].delay) == graph.metadata["dt"])
    assert ("cell1.node1.back0", "cell1.node1") in graph.edges
    # two backward edges on one cycle: each is its own Delay, both are cut (a bare DFS would cut one)
    graph = to_nir(build(TWO_BACK))
    assert {d for _, d in back_edges(graph) if d.startswith("cell1.")} == {"cell1.node0.back0", "cell1.node2.back0"}


def test_lava_refuses_linear_only_cycles_by_node():
    graph = to_nir(build("0104 0010 4000 0000"))  # skip 0 → 1 → 2, avg-pool 2 → 0: a cycle without a neuron
    with pytest.raises(LavaBackendError, match=r"cell1.node0.back0.*loop of linear nodes and Delays alone"):
        build_plan(graph)
