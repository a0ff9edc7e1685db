"""torch → NIR → torch round trips: identical spikes for every block type of every macro (issue 4's done
criterion), stems, event input, neuron kinds, recurrence through a registered converter, lossy cases."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import torch
from torch import nn

from exporters.core.shapes import infer_shapes
from exporters.core.traversal import back_edges
from exporters.nir_export import ExportContext, ExportError, LossyExportWarning, register_converter, to_nir
from exporters.nir_io import read_nir, write_nir
from exporters.nir_torch import simulate
from nasflow.models import AutoSNNNet
from nasflow.snn.blocks import BLOCKS, SIB_BLOCKS, NeuronSpec
from nasflow.snn.layers import SpikingMaxPool2d, TimeDistributed
from nasflow.snn.neurons import ALIF, CUBA, IF, LIF, Neuron
from nasflow.spaces.autosnn import MACROS
from nasflow.train.supernet import AutoSNNSupernet

ALL_BLOCKS = BLOCKS + SIB_BLOCKS  # 11 block types


def _liven(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random eval-mode BN statistics/affine (so that BN folding matters) and a stronger FC, so that
    every layer spikes; float64 so that float rounding cannot flip a spike between the two sides."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.6 - 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.1 + 0.05)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) + 0.2)
    fc = getattr(model, "fc", None)
    if fc is not None:
        fc.module.weight.data.mul_(8.0)
    return model.double().eval()


def _record(model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    acts: dict[str, np.ndarray] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: acts.__setitem__(n, o.detach().numpy()))
             for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return acts


def _round_trip(model: nn.Module, x: torch.Tensor, tmp_path, event: bool = False) -> tuple[int, int]:
    """Export (through a file), simulate, compare every neuron module's spikes exactly; returns
    (spikes, neuron layers that spiked)."""
    ref = _record(model, x)
    path = write_nir(tmp_path / "m.nir", to_nir(model))
    graph = read_nir(path)
    xs = x if event else x.unsqueeze(0).expand(model.steps, *x.shape)
    act = simulate(graph, xs.numpy())
    spikes, active = 0, 0
    for name, m in model.named_modules():
        if isinstance(m, Neuron) and name in ref:  # (a supernet's inactive choices do not run)
            assert name in act, f"neuron {name} has no NIR node"
            np.testing.assert_array_equal(act[name], ref[name], err_msg=f"spikes of {name} differ")
            spikes += int(ref[name].sum())
            active += int(ref[name].sum() > 0)
    np.testing.assert_allclose(act["output"], ref["vote"], rtol=0, atol=1e-12)
    return spikes, active


def _archs(n: int) -> list[tuple[str, ...]]:
    """Enough architectures of length n that every block type appears at every... block position set."""
    k = -(-len(ALL_BLOCKS) // n)
    seq = [ALL_BLOCKS[i % len(ALL_BLOCKS)] for i in range(k * n)]
    return [tuple(seq[i * n:(i + 1) * n]) for i in range(k)]


CASES = [(macro, arch) for macro in MACROS for arch in _archs(MACROS[macro].num_blocks)]


@pytest.mark.parametrize(("macro", "arch"), CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_round_trip_every_block_of_every_macro(macro, arch, tmp_path):
    torch.manual_seed(0)
    model = _liven(AutoSNNNet(arch=arch, in_shape=(2, 8, 8), channels=4, steps=4, macro=macro, vote=2))
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64) * 2
    spikes, active = _round_trip(model, x, tmp_path)
    n_neurons = sum(isinstance(m, Neuron) for m in model.modules())
    assert spikes > 50 and active >= n_neurons // 2, f"too little activity to test ({spikes} spikes, {active} layers)"


def test_every_block_type_is_covered():
    covered = {(m, b) for m, arch in CASES for b in arch}
    assert covered == {(m, b) for m in MACROS for b in ALL_BLOCKS}


@pytest.mark.parametrize(("stem", "size"), [("deep64", 16), ("deep128", 16)])
def test_round_trip_deep_stems(stem, size, tmp_path):
    torch.manual_seed(1)
    model = _liven(AutoSNNNet(arch="SRB_k3,SCB_k3,skip,SRB_k3,SCB_k3", in_shape=(1, size, size), channels=4,
                              steps=4, stem=stem, vote=2))
    spikes, _ = _round_trip(model, torch.rand(2, 1, size, size, dtype=torch.float64) * 2, tmp_path)
    assert spikes > 50


@pytest.mark.parametrize(
    "spec",
    [NeuronSpec(kind="if"), NeuronSpec(kind="lif", tau=3.0), NeuronSpec(kind="lif", tau=1.5, decay_input=False),
     NeuronSpec(kind="plif", v_threshold=0.7, strict=True), NeuronSpec(kind="lif", v_reset=-0.2, tau=2.5)],
    ids=["if", "lif", "lif-no-decay-input", "plif-strict", "lif-vreset"],
)
def test_round_trip_neuron_kinds_and_event_input(spec, tmp_path):
    torch.manual_seed(2)
    model = AutoSNNNet(arch="SRB_k3,SCB_k5,skip,SRB_k5,SIB_k3_e3", in_shape=(2, 8, 8), channels=4, steps=5,
                       macro="snn2", event_input=True, neuron=spec, vote=2)
    if spec.kind == "plif":
        for m in model.modules():  # trained τ differ per layer; the export freezes them
            if hasattr(m, "w"):
                m.w.data.uniform_(-1.5, 1.5)
    model = _liven(model)
    x = (torch.rand(5, 3, 2, 8, 8, dtype=torch.float64) < 0.5).double()
    spikes, _ = _round_trip(model, x, tmp_path, event=True)
    assert spikes > 50


def test_round_trip_supernet_path(tmp_path):
    torch.manual_seed(3)
    net = AutoSNNSupernet(in_shape=(2, 8, 8), channels=4, steps=4, vote=2)
    net.set_path("SRB_k5,skip,SCB_k3,SRB_k3,SCB_k5")
    net = _liven(net)
    spikes, _ = _round_trip(net, torch.rand(2, 2, 8, 8, dtype=torch.float64) * 2, tmp_path)
    assert spikes > 50
    graph = to_nir(net)
    assert "features.0.choices.SRB_k5.sn2" in graph.nodes  # ids are the qualified module names


def test_graph_structure_ids_metadata_and_per_neuron_arrays():
    model = AutoSNNNet(arch="SRB_k3,SCB_k3,skip,SRB_k3,SCB_k3", in_shape=(1, 8, 8), channels=4, steps=4, vote=2)
    graph = to_nir(model.eval(), dt=2e-3)
    assert graph.metadata["dt"] == 2e-3
    assert graph.metadata["conventions"]["threshold"] == ">="  # AutoSNN fires on H >= v_th
    assert graph.metadata["conventions"]["reset"] == "to_v_reset"
    assert graph.metadata["steps"] == 4 and graph.metadata["input_encoding"] == "direct"
    kinds = {k: type(n).__name__ for k, n in graph.nodes.items()}
    assert kinds["stem"] == "Conv2d" and kinds["stem_sn"] == "LIF" and kinds["fc"] == "Affine"
    assert kinds["features.1"] == "Threshold" and kinds["features.1.sum"] == "SumPool2d"
    assert kinds["flatten"] == "Flatten" and kinds["vote"] == "Affine" and kinds["output"] == "Output"
    # SRB residual: the shortcut (identity here) feeds sn2 next to conv2 (fan-in = sum)
    assert ("stem_sn", "features.0.sn2") in graph.edges and ("features.0.conv2", "features.0.sn2") in graph.edges
    shapes = infer_shapes(graph)
    lif = graph.nodes["features.0.sn1"]
    for attr in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
        assert np.shape(getattr(lif, attr)) == shapes["features.0.sn1"] == (4, 8, 8)
    # PLIF τ0 = 2 steps, decay_input: τ = 2 dt, r = 1
    np.testing.assert_allclose(lif.tau, 2 * 2e-3)
    np.testing.assert_allclose(lif.r, 1.0)
    vote = graph.nodes["vote"]
    assert vote.weight.shape == (10, 20) and np.allclose(vote.weight.sum(1), 1.0) and np.all(vote.bias == 0)
    assert not back_edges(graph)


def test_gap_and_avg_pool_macros():
    g2 = to_nir(AutoSNNNet(arch="all-SCB_k3", in_shape=(1, 8, 8), channels=4, steps=2, macro="snn2").eval())
    assert type(g2.nodes["gap"]).__name__ == "AvgPool2d" and infer_shapes(g2)["gap"] == (16, 1, 1)
    g4 = to_nir(AutoSNNNet(arch="all-SCB_k3", in_shape=(1, 8, 8), channels=4, steps=2, macro="snn4").eval())
    assert type(g4.nodes["features.1"]).__name__ == "AvgPool2d"


def test_strict_threshold_changes_only_ties():
    model = nn.Sequential(TimeDistributed(nn.Linear(2, 2, bias=False)), IF(v_threshold=1.0)).double()
    with torch.no_grad():
        model[0].module.weight.copy_(torch.eye(2, dtype=torch.float64))
    x = np.array([[[1.0, 0.75]], [[0.0, 0.25]]])  # neuron 0 hits 1.0 exactly (a tie); neuron 1 reaches 1.0 too
    loose = simulate(to_nir(model, input_shape=(2,)), x)
    strict = simulate(to_nir(model, input_shape=(2,), strict_threshold=True), x)
    ref = model(torch.tensor(x)).detach().numpy()
    np.testing.assert_array_equal(loose["1"], ref)
    np.testing.assert_array_equal(loose["1"][:, 0], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(strict["1"][:, 0], [[0, 0], [0, 0]])  # ties do not fire with NIR's >
    rng = np.random.default_rng(0)
    xr = rng.random((6, 4, 2))
    np.testing.assert_array_equal(simulate(to_nir(model, input_shape=(2,), strict_threshold=True), xr)["1"],
                                  simulate(to_nir(model, input_shape=(2,)), xr)["1"])


def test_cuba_round_trip():
    torch.manual_seed(4)
    cuba = CUBA(du=0.3, dv=0.2, bias=0.05, v_threshold=0.8)
    model = nn.Sequential(TimeDistributed(nn.Linear(5, 6)), cuba).double().eval()
    x = torch.rand(8, 3, 5, dtype=torch.float64)
    graph = to_nir(model, input_shape=(5,))
    node = graph.nodes["1"]
    assert type(node).__name__ == "CubaLIF"
    np.testing.assert_allclose(node.tau_syn, 1e-3 / 0.3)
    np.testing.assert_allclose(node.v_leak, 0.05 / 0.2)
    ref = model(x).detach().numpy()
    assert ref.sum() > 5
    np.testing.assert_array_equal(simulate(graph, x.numpy())["1"], ref)


def test_alif_fails_by_name_unless_allowed():
    model = nn.Sequential(TimeDistributed(nn.Linear(3, 4)), ALIF())
    with pytest.raises(ExportError, match=r"^1: ALIF"):
        to_nir(model, input_shape=(3,))
    with pytest.warns(LossyExportWarning, match="ALIF"):
        graph = to_nir(model, input_shape=(3,), allow_lossy=True)
    assert type(graph.nodes["1"]).__name__ == "LIF"


def test_soft_reset_warns_by_name_and_round_trips_through_conventions(tmp_path):
    model = nn.Sequential(TimeDistributed(nn.Linear(4, 6)), LIF(tau=2.0, v_reset=None)).double()
    x = torch.rand(10, 3, 4, dtype=torch.float64) * 2
    with pytest.warns(LossyExportWarning, match=r"1: soft reset"):
        graph = to_nir(model, input_shape=(4,))
    assert graph.metadata["conventions"]["reset"] == "subtract"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LossyExportWarning)
        graph = read_nir(write_nir(tmp_path / "soft.nir", graph))
    ref = model(x).detach().numpy()
    assert ref.sum() > 10
    np.testing.assert_array_equal(simulate(graph, x.numpy())["1"], ref)
    with pytest.raises(ExportError, match="1: soft reset"):
        to_nir(model, input_shape=(4,), soft_reset="error")


def test_max_pool_of_analog_input_fails_by_name():
    model = nn.Sequential(TimeDistributed(nn.Conv2d(1, 2, 3, padding=1)), SpikingMaxPool2d(2))
    with pytest.raises(ExportError, match=r"^1: max-pooling"):
        to_nir(model, input_shape=(1, 4, 4))


def test_unknown_module_fails_by_name():
    model = nn.Sequential(TimeDistributed(nn.Linear(3, 4)), nn.ReLU())
    with pytest.raises(ExportError, match=r"^1: no NIR converter for ReLU"):
        to_nir(model, input_shape=(3,))


# ----------------------------------------------------------------------------------------------- recurrence


class RecurrentLIF(nn.Module):
    """``s[t] = LIF(W x[t] + R s[t-1])``: the neuron's output feeds back one step late into its input sum."""

    def __init__(self, n_in: int, n: int) -> None:
        super().__init__()
        self.fc = TimeDistributed(nn.Linear(n_in, n))
        self.rec = nn.Linear(n, n, bias=False)
        self.sn = LIF(tau=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drive = self.fc(x)
        s_prev, state, out = torch.zeros_like(drive[0]), None, []
        for t in range(x.shape[0]):
            s, _, state = self.sn.step(drive[t] + self.rec(s_prev), state)
            out.append(s)
            s_prev = s
        return torch.stack(out)


@register_converter(RecurrentLIF)
def _convert_recurrent(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    fc = ctx.child(module, name, "fc", inputs)
    sn = ctx.child(module, name, "sn", fc)
    rec = ctx.child(module, name, "rec", sn)
    ctx.add_edge(rec[0], sn[0])  # closes the cycle: a back edge, delivered one step late
    return sn


def test_recurrent_module_round_trip(tmp_path):
    torch.manual_seed(5)
    model = nn.Sequential(RecurrentLIF(6, 8), TimeDistributed(nn.Linear(8, 3))).double().eval()
    with torch.no_grad():
        model[0].rec.weight.mul_(3.0)  # strong recurrence, so that the one-step delay matters
    x = torch.rand(12, 4, 6, dtype=torch.float64) * 2
    graph = read_nir(write_nir(tmp_path / "rec.nir", to_nir(model, input_shape=(6,))))
    assert back_edges(graph) == {("0.rec", "0.sn")}
    act = simulate(graph, x.numpy())
    ref = model[0](x).detach().numpy()
    assert ref.sum() > 20
    np.testing.assert_array_equal(act["0.sn"], ref)
    # without the recurrence the spikes differ: the test can fail
    no_rec = nir.NIRGraph(nodes=graph.nodes, edges=[e for e in graph.edges if e != ("0.rec", "0.sn")],
                          metadata=graph.metadata, type_check=False)
    assert not np.array_equal(simulate(no_rec, x.numpy())["0.sn"], ref)


def test_mixed_conventions_survive_the_file(tmp_path):
    torch.manual_seed(6)
    model = nn.Sequential(TimeDistributed(nn.Linear(4, 6)), LIF(tau=2.0, v_threshold=0.5),
                          TimeDistributed(nn.Linear(6, 5)), CUBA(du=0.5, dv=0.5, v_threshold=0.3)).double().eval()
    with torch.no_grad():
        model[0].module.weight.copy_(torch.full((6, 4), 0.25))  # drives of exactly 0.5: ties at the LIF
        model[0].module.bias.zero_()
    x = torch.ones(6, 2, 4, dtype=torch.float64)
    graph = read_nir(write_nir(tmp_path / "mixed.nir", to_nir(model, input_shape=(4,))))
    conv = graph.metadata["conventions"]
    assert conv["threshold"] in (">=", ">") and len(conv["threshold_overrides"]) == 1
    ref = _record(model, x)
    act = simulate(graph, x.numpy())
    assert ref["1"].sum() > 0 and ref["3"].sum() > 0
    np.testing.assert_array_equal(act["1"], ref["1"])
    np.testing.assert_array_equal(act["3"], ref["3"])
