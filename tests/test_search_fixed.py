"""Fixed-point costs inside the AutoSNN search: journaled costs equal an independent ``lava-emu`` run of the
extracted candidate, drop budgets reject, refusals are recorded, bad names are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nasflow.cli import main
from nasflow.config import ConfigError
from nasflow.evaluators.fitness import parse_budgets
from nasflow.search import AutoSNNSearchConfig, run_autosnn_search
from nasflow.strategies.journal import JournalError

SMALL = dict(channels=4, steps=4, supernet_epochs=3, evaluations=6, rounds=2, progress=False, batch_size=64)


@pytest.fixture(scope="module")
def fixed_search(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fixed") / "s"
    run_autosnn_search(AutoSNNSearchConfig(**SMALL, budgets={"fixed_acc_drop": 0.02}), out)
    return out


def _val_inputs(steps: int) -> tuple[np.ndarray, np.ndarray]:
    from nasflow.data import make_loaders

    loaders = make_loaders("digits", SMALL["batch_size"], seed=0, val_split=0.2, eval_batch_size=512)
    xs, ys = zip(*loaders.val)
    x = torch.cat(xs)
    return x.unsqueeze(0).expand(steps, *x.shape).contiguous().numpy(), torch.cat(ys).numpy()


def test_journaled_fixed_costs_equal_an_independent_emulation(fixed_search: Path) -> None:
    from exporters import lava
    from exporters.equivalence import accuracy_from_output, neuron_nodes, readout_node
    from exporters.nir_export import to_nir
    from nasflow.train.checkpoint import load_checkpoint
    from nasflow.train.supernet import AutoSNNSupernet

    data = json.loads((fixed_search / "search.json").read_text())
    header = json.loads((fixed_search / "journal.jsonl").read_text().splitlines()[0])
    assert header["fixed_point"] == "lava-emu" and header["dt"] == 1e-3
    rows = data["evaluated"]
    assert len(rows) == 6
    for row in rows:
        c = row["costs"]
        assert c["fixed_acc_drop"] == pytest.approx(row["accuracy"] - c["fixed_accuracy"], abs=1e-12)
        assert (row["fitness"] == float("-inf")) == (c["fixed_acc_drop"] > 0.02)
        assert c["fixed_refused"] == 0.0
    assert any(r["costs"]["fixed_spikes"] > 0 for r in rows)
    # The standalone candidate (extracted, not the supernet's path), exported and emulated from scratch.
    state = load_checkpoint(fixed_search / "supernet.pt")
    net = AutoSNNSupernet(in_shape=(1, 8, 8), channels=SMALL["channels"], steps=SMALL["steps"])
    net.load_state_dict(state["state_dict"])
    row = max(rows, key=lambda r: r["costs"]["fixed_spikes"])
    graph = to_nir(net.extract(tuple(row["arch"].split(","))).eval(), dt=1e-3)
    x, y = _val_inputs(SMALL["steps"])
    act = lava.emulate(graph, x, input_scale=lava.input_scale_of(x[0]))
    head = readout_node(graph)
    assert accuracy_from_output(act, y, head) == pytest.approx(row["costs"]["fixed_accuracy"], abs=1e-12)
    spikes = sum(float(act[k].sum()) for k in neuron_nodes(graph)) / len(y)
    assert spikes == pytest.approx(row["costs"]["fixed_spikes"], rel=1e-12)


def test_a_candidate_lava_cannot_represent_is_refused_with_the_reason() -> None:
    from nasflow.data import make_loaders
    from nasflow.evaluators.fixed_point import FixedPointSearchCost
    from nasflow.evaluators.supernet_eval import SupernetEvaluator
    from nasflow.train.supernet import AutoSNNSupernet

    torch.manual_seed(0)
    net = AutoSNNSupernet(in_shape=(1, 8, 8), channels=4, steps=2)
    with torch.no_grad():  # a stem whose weights dwarf the threshold: no 8-bit weight with exponent <= 7 fits
        net.stem.module[0].weight.mul_(1e9)
    loaders = make_loaders("digits", 128, seed=0, val_split=0.2, eval_batch_size=512)
    fixed = FixedPointSearchCost(loaders.val, steps=2)
    arch = ("skip",) * len(net.choice_blocks)
    acc, costs = SupernetEvaluator(net, loaders.val, cost_fns=[fixed]).evaluate_one(arch)
    assert costs["fixed_refused"] == 1.0 and costs["fixed_accuracy"] == 0.0 and costs["fixed_acc_drop"] == acc
    (reason,) = fixed.refusals.values()
    assert "overflow Loihi fixed point" in reason


def test_a_plain_journal_is_not_reused_for_a_fixed_point_search(fixed_search: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    run_autosnn_search(AutoSNNSearchConfig(**{**SMALL, "evaluations": 2, "rounds": 1}), plain,
                       supernet_dir=fixed_search)
    with pytest.raises(JournalError, match="fixed_point"):
        run_autosnn_search(AutoSNNSearchConfig(**{**SMALL, "evaluations": 2, "rounds": 1, "fixed_point": True}),
                           plain, supernet_dir=fixed_search)


def test_fixed_budget_and_cost_names() -> None:
    assert parse_budgets(["fixed_acc_drop<=0.01", "spikes=5"]) == {"fixed_acc_drop": 0.01, "spikes": 5.0}
    assert parse_budgets(["fixed_acc_drop=0"]) == {"fixed_acc_drop": 0.0}
    with pytest.raises(ValueError, match="impossible"):
        parse_budgets(["spikes<=0"])
    with pytest.raises(ValueError, match="impossible"):
        parse_budgets(["fixed_acc_drop=-0.1"])
    assert AutoSNNSearchConfig(cost="fixed_spikes").fixed_point
    assert not AutoSNNSearchConfig().fixed_point
    with pytest.raises(ConfigError, match="budget"):
        AutoSNNSearchConfig(cost="fixed_acc_drop")
    with pytest.raises(ConfigError, match="fixed_acc_drop=N"):
        AutoSNNSearchConfig(budgets={"fixed_accuracy": 0.9})
    with pytest.raises(ConfigError, match="darts"):
        AutoSNNSearchConfig(strategy="darts", fixed_point=True)


def test_cli_budget_on_the_fixed_point_drop(tmp_path: Path, capsys) -> None:
    args = ["search", "autosnn", "--out", str(tmp_path / "o"), "--channels", "4", "--steps", "2",
            "--supernet-epochs", "1", "--evaluations", "2", "--no-progress", "--budget", "fixed_acc_drop<=0.5"]
    assert main(args) == 0
    data = json.loads((tmp_path / "o" / "search.json").read_text())
    assert data["budgets"] == {"fixed_acc_drop": 0.5}
    assert all("fixed_accuracy" in r["costs"] for r in data["evaluated"])
