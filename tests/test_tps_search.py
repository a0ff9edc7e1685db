"""TPS as an in-training strategy on digits: warm-up, search steps that commit candidates, exact resume, and the
temporal architecture written into a fresh network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasflow.data import make_loaders
from nasflow.data.loaders import first_samples
from nasflow.snn.neurons import LIF
from nasflow.snn.tps import TPSNeuron, apply_temporal, decay_to_tau, neuron_layers, parse_temporal, read_temporal
from nasflow.spaces.temporal import TemporalSpace
from nasflow.strategies.intraining import run_in_training
from nasflow.strategies.tps import TPSStrategy

SPACE = TemporalSpace("spikedhs", None, ("decay",), {"decay": (0.2, 0.5, 0.8)}, {"layers": 3})


def _run(tmp_path, name: str, epochs: int) -> tuple[dict, TPSStrategy]:
    loaders = make_loaders("digits", 16, seed=0, val_split=0.5)
    loaders = loaders._replace(train=first_samples(loaders.train, 48, True, 0),
                               val=first_samples(loaders.val, 32, False, 0))
    strategy = TPSStrategy((1, 8, 8), 10, channels=4, steps=2, epochs=3, warmup=1, every=2)
    out = run_in_training(strategy, SPACE, loaders, tmp_path / name, epochs, seed=0, progress=False)
    return out, strategy


def test_tps_warms_up_then_commits_candidates_and_resumes_exactly(tmp_path):
    full, strategy = _run(tmp_path, "a", 3)
    arch = parse_temporal(full["best"]["arch"])
    assert {layer for layer, _, _ in arch.values} == set(strategy.layers)
    assert all(p == "decay" and v in (0.2, 0.5, 0.8) for _, p, v in arch.values)
    history = strategy.history()
    # 3 batches per epoch, search in epochs 2 and 3: 6 searching batches, a search step every 2
    assert [h["search_step"] for h in history] == [0, 1, 2, 3]
    start = parse_temporal(history[0]["values"])
    assert all(v == pytest.approx(0.2) for _, _, v in start.values)  # the SpikeDHS neuron's λ before the search
    assert all(torch.equal(w.gamma, torch.zeros(3)) for w in strategy.layers.values())  # reset after the last step
    assert len(full["trajectory"]) == 3 and full["best"]["accuracy"] >= 0.0
    _run(tmp_path, "b", 2)
    resumed, again = _run(tmp_path, "b", 3)
    assert resumed["best"]["arch"] == full["best"]["arch"] and again.history() == history
    for name, w in strategy.layers.items():
        torch.testing.assert_close(again.layers[name].neuron.tau, w.neuron.tau)


def test_a_temporal_architecture_round_trips_into_a_fresh_network():
    net = SPACE.build(in_shape=(1, 8, 8), num_classes=10, channels=4, steps=2)
    layers = neuron_layers(net, "decay")
    assert layers and all(isinstance(net.get_submodule(n), LIF) for n in layers)
    text = ";".join(f"{n}:decay={0.35 if i % 2 else 0.65}" for i, n in enumerate(layers))
    apply_temporal(net, text)
    assert str(read_temporal(net, ("decay",))) == text
    assert net.get_submodule(layers[0]).tau == pytest.approx(decay_to_tau(0.65))
    with pytest.raises(ValueError, match="no neuron layer 'nope'"):
        apply_temporal(net, "nope:decay=0.2")
    with pytest.raises(ValueError, match="unknown parameter 'tau'"):
        parse_temporal(f"{layers[0]}:tau=2")
    with pytest.raises(ValueError, match="'x' is not a number"):
        parse_temporal(f"{layers[0]}:decay=x")


def test_tps_space_and_strategy_refuse_bad_settings():
    with pytest.raises(ValueError, match="unknown TPS parameter"):
        TemporalSpace(params=("tau",))
    with pytest.raises(ValueError, match="candidate set of 'decay' is empty"):
        TemporalSpace(candidates={"decay": ()})
    with pytest.raises(ValueError, match="every"):
        TPSStrategy((1, 8, 8), 10, every=0)
    strategy = TPSStrategy((1, 8, 8), 10, channels=4, steps=2)
    with pytest.raises(ValueError, match="no neuron layer with alif.beta"):
        strategy.relax(TemporalSpace("spikedhs", None, ("alif.beta",), {}, {"layers": 3}))
    assert isinstance(TPSNeuron(LIF(), "decay", (0.5,)), torch.nn.Module)


def test_cli_tps_search_retrains_the_found_dynamics_and_refuses_bad_input(tmp_path, capsys):
    import json

    from nasflow.cli import main
    from nasflow.models import load_model

    out = tmp_path / "tps"
    assert main(["search", "tps", "--dataset", "digits", "--channels", "4", "--steps", "2", "--epochs", "2",
                 "--warmup", "1", "--every", "10", "--candidates", "decay=0.2,0.8", "--retrain-epochs", "1",
                 "--no-progress", "--out", str(out)]) == 0
    res = json.loads((out / "search.json").read_text())
    assert res["strategy"] == "tps" and len(res["history"]) >= 2 and (out / "history.png").stat().st_size > 0
    found = parse_temporal(res["best"]["arch"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["search_step"] for r in rows] == [h["search_step"] for h in res["history"]]
    assert rows[-1]["values"] == found.as_dict()
    model, _ = load_model(out / "retrain" / "model.pt")
    assert str(read_temporal(model, ("decay",))) == str(found)  # the retrained network has the searched dynamics
    assert res["retrain"]["epochs"] == 1
    from nasflow.cli.export import export_graph

    graph = export_graph(out / "retrain" / "model.pt", dt=1e-3)
    for layer, _, decay in found.values:  # NIR's τ is τ_steps·dt with τ_steps = 1 / (1 - λ)
        assert float(np.unique(np.asarray(graph.nodes[layer].tau))[0]) == pytest.approx(1e-3 * decay_to_tau(decay))
    capsys.readouterr()
    cases = {("--params", "tau"): "unknown TPS parameter",
             ("--candidates", "decay="): "candidate set of 'decay' is empty",
             ("--candidates", "decay=0.5,1.5"): "must lie in [0, 1)",
             ("--epochs", "2", "--warmup", "2"): "warmup must leave at least one search epoch",
             ("--model", "autosnn"): "needs an architecture"}
    for args, match in cases.items():
        assert main(["search", "tps", "--dataset", "digits", *args, "--out", str(tmp_path / "x")]) == 2, args
        assert match in capsys.readouterr().err, args


def test_tps_on_plif_layers_freezes_their_decay_and_sets_it_to_the_committed_value(tmp_path):
    from nasflow.snn.neurons import PLIF

    loaders = make_loaders("digits", 16, seed=0, val_split=0.5)
    loaders = loaders._replace(train=first_samples(loaders.train, 32, True, 0),
                               val=first_samples(loaders.val, 16, False, 0))
    space = TemporalSpace("autosnn", "all-SCB_k3", ("decay",), {"decay": (0.3, 0.7)})
    strategy = TPSStrategy((1, 8, 8), 10, channels=4, steps=2, epochs=2, warmup=1, every=2)
    out = run_in_training(strategy, space, loaders, tmp_path / "plif", 2, seed=0, progress=False)
    assert len(strategy.history()) == 2  # two searching batches, one search step
    for name, w in strategy.layers.items():
        assert isinstance(w.neuron, PLIF) and not w.neuron.w.requires_grad, name
        assert min(abs(w.value() - c) for c in (0.3, 0.7)) < 1e-6  # PLIF's sigmoid(w) = 1 - λ, in float32
    assert parse_temporal(out["best"]["arch"]).as_dict().keys() == strategy.layers.keys()
