"""HNS: the type mixture on hand-made currents, commit, the energy terms and loss on a hand-worked 2-layer network
(both accountings, both factor sources), ∂L/∂γ against finite differences, resume, and clear refusals."""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch

from hwmodels.graph import build_layer_table
from hwmodels.hybrid import (
    HybridError,
    HybridPrices,
    LayerLoad,
    analog_support,
    hybrid_prices,
    layer_loads,
    paper_energy,
    type_energy,
)
from nasflow.config import ConfigError
from nasflow.hns_search import HNSConfig, hns_config_from_args
from nasflow.models import create_model
from nasflow.snn.dhs import SPIKEDHS_NEURON
from nasflow.snn.hns import HNSNeuron
from nasflow.snn.neuron_types import AnalogReLU, check_types, make_type, type_layers
from nasflow.snn.neurons import ALIF, LIF
from nasflow.snn.tps import apply_temporal, parse_temporal, read_temporal
from nasflow.spaces.temporal import HybridSpace
from nasflow.strategies.hns import HNSStrategy

PJ = 1e-12
PRICES_45NM = HybridPrices(ac=0.9 * PJ, mac=4.6 * PJ, update=0.9 * PJ, message=0.0)


def _two_layer_graph() -> nir.NIRGraph:
    """Input 4 → Affine(4→3) → LIF 'a' (3) → Affine(3→2) → LIF 'b' (2) → Output, every weight non-zero."""
    lif = lambda n: nir.LIF(tau=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n),  # noqa: E731
                            v_threshold=np.ones(n), v_reset=np.zeros(n))
    nodes = {"input": nir.Input(input_type=np.array([4])), "w1": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
             "a": lif(3), "w2": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)), "b": lif(2),
             "output": nir.Output(output_type=np.array([2]))}
    edges = [("input", "w1"), ("w1", "a"), ("a", "w2"), ("w2", "b"), ("b", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def test_layer_loads_from_the_graph():
    loads = layer_loads(build_layer_table(_two_layer_graph()), ["a", "b"])
    assert loads["a"] == LayerLoad(neurons=3, synapses=6.0, consumers=1)  # 3 neurons × 2 targets
    assert loads["b"] == LayerLoad(neurons=2, synapses=0.0, consumers=0)  # feeds the host only
    with pytest.raises(HybridError, match="'w1' is not a neuron layer"):
        layer_loads(build_layer_table(_two_layer_graph()), ["w1"])


def _hand_terms(accounting: str) -> dict[str, dict[str, float]]:
    """Hand-worked at T = 4, 45 nm prices (AC 0.9, MAC 4.6, update 0.9 pJ), LIF rate 0.25 ('a') / 0.5 ('b'),
    ReLU non-zero fraction 0.5:
    a: LIF 3 spikes·2 synapses·0.9 + 12 updates·0.9 = 16.2 pJ; ReLU per step 4·(0.5·6·4.6 + 3·0.9) = 66 pJ,
       per inference 16.5 pJ.  b: LIF 8 updates·0.9 = 7.2 pJ; ReLU per step 4·(2·0.9) = 7.2, per inference 1.8."""
    if accounting == "per-step":
        return {"a": {"lif": 16.2, "relu": 66.0}, "b": {"lif": 7.2, "relu": 7.2}}
    return {"a": {"lif": 16.2, "relu": 16.5}, "b": {"lif": 7.2, "relu": 1.8}}


@pytest.mark.parametrize("accounting", ["per-step", "per-inference"])
def test_type_energy_on_the_hand_worked_network(accounting):
    loads = layer_loads(build_layer_table(_two_layer_graph()), ["a", "b"])
    acts = {"a": {"lif": 0.25, "relu": 0.5}, "b": {"lif": 0.5, "relu": 0.5}}
    for layer, terms in _hand_terms(accounting).items():
        for kind, pj in terms.items():
            got = type_energy(loads[layer], kind, acts[layer][kind], 4, PRICES_45NM, accounting)
            assert got == pytest.approx(pj * PJ), (layer, kind)


@pytest.mark.parametrize("accounting, relu_a", [("per-inference", 4.26 * 6), ("per-step", 4.26 * 6 * 4)])
def test_paper_factors_are_the_constants_1_and_4_26(accounting, relu_a):
    load = LayerLoad(3, 6.0, 1)
    assert paper_energy(load, "lif", 4, accounting) == pytest.approx(6.0)
    assert paper_energy(load, "alif", 4, accounting) == pytest.approx(6.0)
    assert paper_energy(load, "relu", 4, accounting) == pytest.approx(relu_a)


def test_hybrid_prices_come_from_the_chip_profiles():
    p = hybrid_prices("generic-45nm-fp32")
    assert (p.ac, p.mac, p.message) == (pytest.approx(0.9 * PJ), pytest.approx(4.6 * PJ), 0.0)
    p2 = hybrid_prices("loihi2")  # graded spikes with flagged estimates
    assert p2.ac == pytest.approx(23.6 * PJ) and p2.mac > p2.ac and p2.message > 0
    for chip in ("loihi", "truenorth", "speck", "spinnaker2"):
        assert analog_support(chip) is not None
        with pytest.raises(HybridError, match=f"chip '{chip}' cannot run"):
            hybrid_prices(chip)
    assert hybrid_prices("loihi", analog=False).mac == 0.0  # spiking types only: allowed


def _tiny_strategy(**kw) -> HNSStrategy:
    st = HNSStrategy((1, 8, 8), 10, channels=2, steps=2, epochs=2, warmup=0, every=2, **kw)
    st.relax(HybridSpace(types=("lif", "relu"), options={"layers": 3}))
    return st


@pytest.mark.parametrize("factors, accounting", [("hw", "per-step"), ("hw", "per-inference"),
                                                 ("paper", "per-step"), ("paper", "per-inference")])
def test_energy_loss_equals_the_hand_computed_value(factors, accounting):
    st = _tiny_strategy(lambda_e=0.3, factors=factors, accounting=accounting)
    names = list(st.layers)
    # two layers carry the hand-worked terms; every other layer costs nothing
    if factors == "hw":
        hand = _hand_terms(accounting)
        terms = [[hand[k]["lif"] * PJ, hand[k]["relu"] * PJ] for k in ("a", "b")]
    else:
        terms = [[6.0, 4.26 * 6 * (4 if accounting == "per-step" else 1)], [0.0, 0.0]]
    st.energy = torch.tensor(terms + [[0.0, 0.0]] * (len(names) - 2), dtype=torch.float64)
    st.e_ref = float(st.energy[:, 1].sum())
    with torch.no_grad():
        st.layers[names[0]].gamma.copy_(torch.tensor([0.0, math.log(3.0)]))  # 0.25 LIF, 0.75 ReLU
    w = [0.25, 0.75]
    e_pred = w[0] * terms[0][0] + w[1] * terms[0][1] + 0.5 * terms[1][0] + 0.5 * terms[1][1]
    e_ref = terms[0][1] + terms[1][1]
    out, y = torch.randn(3, 10), torch.tensor([1, 2, 3])
    task = float(st.task.loss(out, y))
    loss = float(st._loss(out, y, searching=True))
    assert loss == pytest.approx(0.7 * task + 0.3 * e_pred / e_ref, rel=1e-6)
    if factors == "hw" and accounting == "per-step":
        assert e_pred / e_ref == pytest.approx(60.75 / 73.2)


def test_energy_gradient_in_gamma_matches_finite_differences():
    st = _tiny_strategy(lambda_e=0.6)
    torch.manual_seed(0)
    st.energy = torch.rand(len(st.layers), 2, dtype=torch.float64) * 1e-9
    st.e_ref = float(st.energy[:, 1].sum())
    for w in st.layers.values():
        w.gamma = torch.nn.Parameter(torch.randn(2, dtype=torch.float64))
    gammas = [w.gamma for w in st.layers.values()]

    def energy_term() -> torch.Tensor:
        return 0.6 * st.predicted_energy() / st.e_ref

    grads = torch.autograd.grad(energy_term(), gammas)
    eps = 1e-4
    for g, dg in zip(gammas[:3], grads[:3]):
        for k in range(2):
            with torch.no_grad():
                g[k] += eps
                up = float(energy_term())
                g[k] -= 2 * eps
                down = float(energy_term())
                g[k] += eps
            assert float(dg[k]) == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-12)


def test_type_mixture_on_hand_made_currents_and_commit():
    # SpikeDHS neuron (λ = 0.2, fire on mem > 0.5), I = 0.6, -0.2, 0.3: LIF 1, 0, 0; ReLU 0.6, 0, 0.3
    layer = HNSNeuron(SPIKEDHS_NEURON.build().double(), ("lif", "relu"))
    with torch.no_grad():
        layer.gamma.copy_(torch.tensor([math.log(1.0), math.log(3.0)]))  # 0.25, 0.75
    out = layer(torch.tensor([0.6, -0.2, 0.3], dtype=torch.float64).view(3, 1, 1))
    torch.testing.assert_close(out.view(-1), torch.tensor([0.25 + 0.45, 0.0, 0.225], dtype=torch.float64))
    assert layer.take_activity() == pytest.approx([1 / 3, 2 / 3]) and layer.take_activity() is None
    assert layer.commit() == "relu" and layer.type == "relu"
    assert torch.equal(layer.gamma.detach(), torch.zeros(2))  # γ back to its initial value
    layer.stop()
    assert isinstance(layer.current(), AnalogReLU)


def test_make_type_keeps_the_layers_settings():
    ref = SPIKEDHS_NEURON.build()
    alif = make_type(ref, "alif")
    assert isinstance(alif, ALIF) and alif.tau == ref.tau and alif.v_threshold == ref.v_threshold
    assert alif.decay_input == ref.decay_input and alif.strict == ref.strict
    lif = make_type(alif, "lif")
    assert type(lif) is LIF and lif.tau == ref.tau
    assert isinstance(make_type(ref, "relu"), AnalogReLU)


def test_decoded_types_apply_and_read_back():
    model = create_model("spikedhs", in_shape=(1, 8, 8), num_classes=10, channels=2, steps=2, layers=3)
    layers = type_layers(model)
    arch = f"{layers[0]}:type=relu;{layers[1]}:type=alif;{layers[1]}:decay=0.5"
    apply_temporal(model, arch)
    assert isinstance(model.get_submodule(layers[0]), AnalogReLU)
    got = read_temporal(model, ["type", "decay"]).as_dict()
    assert got[layers[0]] == {"type": "relu"} and got[layers[1]] == {"type": "alif", "decay": 0.5}
    assert str(parse_temporal(arch)) == arch


@pytest.mark.parametrize("bad, match", [
    (lambda: check_types([]), "empty"),
    (lambda: check_types(["lif", "tanh"]), "unknown neuron type"),
    (lambda: parse_temporal("stem.sn:type=sigmoid"), "unknown neuron type 'sigmoid'"),
    (lambda: HNSStrategy((1, 8, 8), 10, lambda_e=1.5), r"lambda_e must lie in \[0, 1\]"),
    (lambda: HNSStrategy((1, 8, 8), 10, factors="lookup"), "energy factors"),
    (lambda: HNSStrategy((1, 8, 8), 10, accounting="per-year"), "accounting"),
])
def test_bad_settings_are_refused_clearly(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


@pytest.mark.parametrize("args, match", [
    ({"lambda_e": -0.1}, r"lambda_e=-0.1"),
    ({"types": "lif,sigmoid"}, "unknown neuron type"),
    ({"types": ""}, "empty"),
    ({"cost": "energy:loihi"}, "chip 'loihi' cannot run an analog .* no graded spikes"),
    ({"cost": "energy:nochip"}, "nochip"),
    ({"cost": "cores:generic-45nm-fp32"}, "energy:CHIP"),
    ({"energy_factors": "table"}, "energy_factors"),
])
def test_bad_hns_config_is_refused_before_any_work(args, match):
    with pytest.raises(ConfigError, match=match):
        hns_config_from_args(args)


def test_spiking_types_run_on_a_chip_without_analog_layers():
    cfg = hns_config_from_args({"types": "lif,alif", "cost": "energy:loihi"})
    assert cfg.types == ["lif", "alif"] and isinstance(cfg, HNSConfig)


def test_state_round_trip_resumes_exactly():
    torch.manual_seed(0)
    st = _tiny_strategy(lambda_e=0.3)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    st.begin_epoch(0)
    for _ in range(3):
        st.step((x, y), (x, y))
    state = st.state_dict()
    torch.manual_seed(1)
    other = _tiny_strategy(lambda_e=0.3)
    other.load_state_dict(state)
    other.begin_epoch(0)
    assert other.decode() == st.decode() and other.e_ref == st.e_ref
    torch.testing.assert_close(other.energy, st.energy)
    a, b = st.step((x, y), (x, y)), other.step((x, y), (x, y))
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)


def _run_hns(tmp_path, name: str, epochs: int):
    from nasflow.data import make_loaders
    from nasflow.data.loaders import first_samples
    from nasflow.strategies.intraining import run_in_training

    loaders = make_loaders("digits", 16, seed=0, val_split=0.5)
    loaders = loaders._replace(train=first_samples(loaders.train, 48, True, 0),
                               val=first_samples(loaders.val, 32, False, 0))
    st = HNSStrategy((1, 8, 8), 10, lambda_e=0.3, channels=4, steps=2, epochs=3, warmup=1, every=2)
    out = run_in_training(st, HybridSpace(types=("lif", "alif", "relu"), options={"layers": 3}), loaders,
                          tmp_path / name, epochs, seed=0, progress=False)
    return out, st


def test_hns_commits_types_every_search_step_and_resumes_exactly(tmp_path):
    full, st = _run_hns(tmp_path, "a", 3)
    history = st.history()
    assert [h["search_step"] for h in history] == [0, 1, 2, 3]  # 3 batches per epoch, 2 searching epochs
    assert all(v == "lif" for _, _, v in parse_temporal(history[0]["values"]).values)
    assert all("energy_ratio" in h for h in history[1:])
    report = st.energy_report()
    assert set(report["layers"]) == set(st.layers) and report["e_ratio"] == pytest.approx(history[-1]["energy_ratio"])
    _run_hns(tmp_path, "b", 2)
    resumed, again = _run_hns(tmp_path, "b", 3)
    assert resumed["best"]["arch"] == full["best"]["arch"] and again.history() == history


def test_cli_search_hns_retrains_and_costs_the_hybrid(tmp_path, capsys):
    import json

    from nasflow.cli import main

    rc = main(["search", "hns", "--dataset", "digits", "--types", "lif,relu", "--channels", "2", "--steps", "2",
               "--epochs", "2", "--warmup", "1", "--every", "8", "--lambda-e", "0.3", "--retrain-epochs", "1",
               "--threads", "1", "--no-progress", "--out", str(tmp_path / "run")])
    assert rc == 0
    out = json.loads((tmp_path / "run" / "search.json").read_text())
    assert out["energy"]["accounting"] == "per-step" and out["energy"]["chip"] == "generic-45nm-fp32"
    assert out["retrain"]["energy:generic-45nm-fp32"] > 0 and (tmp_path / "run" / "history.png").exists()
    assert main(["search", "hns", "--cost", "energy:truenorth", "--out", str(tmp_path / "x")]) == 2
    assert "chip 'truenorth' cannot run" in capsys.readouterr().err
