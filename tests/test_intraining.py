"""In-training strategies at tiny size: the interface contract, exact resume, and DARTS' decoded architecture
through retraining, NIR export, Lava and the hardware model (the same path an evolutionary search's winner takes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from exporters import lava
from exporters.equivalence import compare_activity
from exporters.nir_export import to_nir
from exporters.nir_torch import simulate
from hwmodels import hw_report
from nasflow.models import create_model
from nasflow.spaces.autosnn import BLOCK_CHOICES, get_macro, num_blocks, parse_arch
from nasflow.strategies.darts import DartsAutoSNN, DartsConfig, darts_loaders, run_darts_autosnn
from nasflow.strategies.intraining import CHECKPOINT_NAME, BlockSpace, autosnn_space, run_in_training
from nasflow.train.checkpoint import load_checkpoint
from nasflow.train.trainer import TrainConfig, Trainer, seed_everything

T = 2
TINY = DartsConfig(channels=4, steps=T, epochs=2, batch_size=16, max_samples=64, device="cpu", progress=False)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("darts2")
    return run_darts_autosnn(TINY, out), out


def _strategy() -> tuple[DartsAutoSNN, object]:
    loaders = darts_loaders(TINY)
    strategy = DartsAutoSNN(loaders.spec.image_shape, loaders.spec.num_classes, channels=4, steps=T)
    return strategy, loaders


def test_space_factory_has_the_attributes_strategies_read() -> None:
    space = autosnn_space("snn3")
    assert (space.macro, space.choices, space.num_blocks) == ("snn3", BLOCK_CHOICES, num_blocks("snn3"))
    with pytest.raises(ValueError, match="unknown macro"):
        autosnn_space("snn9")


def test_a_space_holding_a_macro_object_is_accepted(tmp_path: Path) -> None:
    """Spaces may carry the ``Macro`` itself rather than its name; results still record the name."""
    loaders = darts_loaders(DartsConfig(**{**TINY.__dict__, "max_samples": 16}))
    strategy = DartsAutoSNN(loaders.spec.image_shape, loaders.spec.num_classes, channels=4, steps=T)
    space = BlockSpace(macro=get_macro("snn1"), choices=BLOCK_CHOICES, num_blocks=5)
    out = run_in_training(strategy, space, loaders, tmp_path, epochs=1, progress=False)
    assert out["space"]["macro"] == "snn1" and json.loads((tmp_path / "search.json").read_text())["best"]["arch"]


def test_relaxed_network_splits_parameters_and_alpha_moves_after_steps() -> None:
    seed_everything(0)
    strategy, loaders = _strategy()
    net = strategy.relax(autosnn_space())
    arch_ids = {id(p) for p in net.arch_parameters()}
    assert arch_ids and not arch_ids & {id(p) for p in net.weight_parameters()}
    assert len(arch_ids) + len(net.weight_parameters()) == len(list(net.parameters()))
    before = net.alpha.detach().clone()
    weights_before = [p.detach().clone() for p in net.weight_parameters()]
    bv = next(iter(loaders.val))
    logs = [strategy.step(bt, bv) for bt, _ in zip(loaders.train, range(2))]
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "spikes"} <= set(logs[-1])
    assert not torch.equal(net.alpha.detach(), before), "α must move on validation batches"
    assert any(not torch.equal(p.detach(), q) for p, q in zip(net.weight_parameters(), weights_before))
    arch = strategy.decode()
    assert parse_arch(arch, num_blocks=num_blocks("snn1")) == arch
    probs = np.array(strategy.arch_weights())
    assert probs.shape == (5, len(BLOCK_CHOICES)) and np.allclose(probs.sum(1), 1.0)


def test_spike_cost_pushes_alpha_towards_silent_blocks() -> None:
    """With a large λ the only force on α is the expected spike count: every position's skip (identity, no
    neurons of its own where widths agree, or one conv-neuron layer) gains on the two-layer blocks."""
    seed_everything(0)
    strategy, loaders = _strategy()
    strategy.lam, strategy.lr_alpha = 100.0, 0.05
    net = strategy.relax(autosnn_space())
    with torch.no_grad():  # make every block fire so that spike counts differ between choices
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.fill_(2.0)
    bv = next(iter(loaders.val))
    for bt, _ in zip(loaders.train, range(3)):
        strategy.step(bt, bv)
    probs = np.array(strategy.arch_weights())
    skip, scb = BLOCK_CHOICES.index("skip"), BLOCK_CHOICES.index("SCB_k3")
    assert (probs[:, skip] > probs[:, scb]).all(), probs


def test_search_json_has_the_autosnn_layout(two_epochs: tuple[dict, Path]) -> None:
    result, out = two_epochs
    saved = json.loads((out / "search.json").read_text())
    assert saved["best"]["arch"] == result["best"]["arch"]
    assert {"schema_version", "strategy", "best", "trajectory", "search_seconds"} <= set(saved)
    assert saved["strategy"] == "darts" and saved["search_seconds"] > 0
    arch = parse_arch(saved["best"]["arch"], num_blocks=5)
    assert all(name in BLOCK_CHOICES for name in arch)
    assert {"accuracy", "spikes", "synops", "costs"} <= set(saved["best"])
    assert [row["epoch"] for row in saved["trajectory"]] == [1, 2]
    row = saved["trajectory"][-1]
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "spikes", "arch_weights", "arch"} <= set(row)
    assert np.array(row["arch_weights"]).shape == (5, 5)


def test_killed_run_resumes_to_identical_results(two_epochs: tuple[dict, Path], tmp_path: Path) -> None:
    full, full_dir = two_epochs
    first = run_darts_autosnn(DartsConfig(**{**TINY.__dict__, "epochs": 1}), tmp_path)
    assert len(first["trajectory"]) == 1
    resumed = run_darts_autosnn(TINY, tmp_path)
    assert resumed["best"]["arch"] == full["best"]["arch"]
    assert resumed["best"]["arch_weights"] == full["best"]["arch_weights"]
    assert resumed["best"]["accuracy"] == full["best"]["accuracy"]
    for a, b in zip(resumed["trajectory"], full["trajectory"]):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    ours = load_checkpoint(tmp_path / CHECKPOINT_NAME)["strategy"]
    theirs = load_checkpoint(full_dir / CHECKPOINT_NAME)["strategy"]
    for key, value in theirs["network"].items():
        assert torch.equal(ours["network"][key], value), key
    assert ours["opt_alpha"]["state"][0]["exp_avg"].equal(theirs["opt_alpha"]["state"][0]["exp_avg"])


def test_resume_refuses_a_checkpoint_of_other_settings(two_epochs: tuple[dict, Path]) -> None:
    _, out = two_epochs
    with pytest.raises(ValueError, match="different search"):
        run_darts_autosnn(DartsConfig(**{**TINY.__dict__, "lr_alpha": 1e-2}), out)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="lr_alpha"):
        DartsConfig(lr_alpha=0)
    with pytest.raises(ValueError, match="unknown macro"):
        DartsConfig(macro="nope")


def test_decoded_arch_retrains_exports_and_runs_on_lava(two_epochs: tuple[dict, Path]) -> None:
    result, _ = two_epochs
    loaders = darts_loaders(DartsConfig(**{**TINY.__dict__, "max_samples": 256}))
    seed_everything(0)
    model = create_model("autosnn", arch=result["best"]["arch"], in_shape=loaders.spec.image_shape,
                         num_classes=loaders.spec.num_classes, channels=4, steps=T)
    Trainer(model, TrainConfig(epochs=1, batch_size=16, lr=1e-2, device="cpu", progress=False), loaders.train).fit()
    model.eval()
    graph = to_nir(model)
    x, _ = next(iter(loaders.test))
    xs = np.broadcast_to(x[:2].numpy().astype(np.float32), (T, 2, *x.shape[1:])).copy()  # direct coding
    ref = simulate(graph, xs)
    act = lava.simulate(graph, xs)
    report = compare_activity(ref, act, graph)
    assert report["min_precision"] == 1.0 and report["min_recall"] == 1.0, report["nodes"]
    assert report["total"]["reference_spikes"] > 0, "the retrained network must spike for the comparison to mean much"
    hw = hw_report(graph, "loihi", activity=ref)
    assert hw.energy_per_sample_j is not None and hw.energy_per_sample_j > 0
