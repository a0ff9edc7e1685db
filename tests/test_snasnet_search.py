"""SNASNet search runs on digits (tiny sizes): search.json, journal resume, cost-aware ranking, CLI, bad input."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nasflow.cli.snasnet import add_snasnet_parser
from nasflow.config import ConfigError
from nasflow.models import load_model
from nasflow.snasnet_search import (
    SNASNetSearchConfig,
    discounted_score,
    run_snasnet_search,
    sample_candidates,
    take_batches,
)
from nasflow.spaces.snasnet import canonical_cell, format_cell
from nasflow.strategies.journal import JournalError

TINY = dict(candidates=5, channels=3, steps=2, score_batch=32, progress=False, epochs=0)


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("snas") / "s"
    return out, run_snasnet_search(SNASNetSearchConfig(**{**TINY, "epochs": 1}), out)


def test_search_json_lists_every_candidate_and_the_best(first) -> None:
    out, result = first
    data = json.loads((out / "search.json").read_text())
    assert data["schema_version"] == 1 and data["score"] == "sahd-paper-sum"
    cells = [r["cell"] for r in data["candidates"]]
    assert len(cells) == len(set(cells)) == 5
    assert all(format_cell(canonical_cell(c)) == c for c in cells)
    assert data["best"]["score"] == max(r["score"] for r in data["candidates"])
    assert all(r["spikes_per_sample"] > 0 for r in data["candidates"])
    retrain = data["retrain"]
    assert retrain["cell"] == data["best"]["cell"] and 0.0 <= retrain["test_accuracy"] <= 1.0
    assert retrain["spikes_per_sample"] > 0 and retrain["neuron_updates_per_sample"] > 0
    model, meta = load_model(retrain["model"])
    assert meta["cell"] == data["best"]["cell"] and model.config["cell"] == data["best"]["cell"]
    assert (out / "config.yaml").exists() and (out / "retrain" / "metrics.jsonl").exists()


def test_resume_scores_only_new_candidates_and_gives_the_same_scores(first, tmp_path: Path) -> None:
    out, result = first
    lines = (out / "journal.jsonl").read_text().splitlines(keepends=True)
    resumed = tmp_path / "r"
    resumed.mkdir()
    # Header + 3 candidates, then a line cut off mid-write.
    (resumed / "journal.jsonl").write_text("".join(lines[:4]) + lines[4][:10])
    with pytest.warns(UserWarning, match="cut off"):
        again = run_snasnet_search(SNASNetSearchConfig(**TINY), resumed)
    assert again["journal_hits"] == 3
    assert [r["score"] for r in again["candidates"]] == [r["score"] for r in result["candidates"]]
    with pytest.raises(JournalError, match="different search"):
        run_snasnet_search(SNASNetSearchConfig(**{**TINY, "channels": 4}), resumed)


def test_cost_aware_ranking_uses_the_cost_function(tmp_path: Path) -> None:
    calls = []

    def synops(model, summary) -> float:
        calls.append(summary["synops_per_sample"])
        return summary["synops_per_sample"] + 1.0

    data = run_snasnet_search(SNASNetSearchConfig(**{**TINY, "lam": -50.0}), tmp_path / "c", cost_fn=synops)
    rows = data["candidates"]
    assert len(calls) == 5 and all(r["cost"] == pytest.approx(c + 1.0) for r, c in zip(rows, calls))
    avg = sum(r["cost"] for r in rows) / 5
    for r in rows:
        assert r["discounted_score"] == pytest.approx(r["score"] - 50.0 * 32 * math.log(r["cost"] / avg))
    assert data["best"]["discounted_score"] == max(r["discounted_score"] for r in rows)
    # With so strong a discount the cheapest candidate wins.
    assert data["best"]["cost"] == min(r["cost"] for r in rows)


def test_discount_by_hand() -> None:
    assert discounted_score(100.0, 2.0, 1.0, -0.5, 4) == pytest.approx(100.0 - 0.5 * 4 * math.log(2.0))
    assert discounted_score(100.0, 2.0, 1.0, 0.0, 4) == 100.0
    assert discounted_score(-math.inf, 2.0, 1.0, -0.5, 4) == -math.inf


def test_candidates_are_distinct_and_reproducible() -> None:
    a = sample_candidates(50, "forward", 7)
    assert a == sample_candidates(50, "forward", 7) and len(set(a)) == 50
    assert a != sample_candidates(50, "forward", 8)
    with pytest.raises(ConfigError, match="exceeds the 12500"):
        sample_candidates(12_501, "forward", 0)


def test_bad_input_gets_clear_errors() -> None:
    empty = DataLoader(TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), batch_size=4)
    with pytest.raises(ValueError, match=r"'tiny'.* 0 sample"):
        take_batches(empty, 2, "tiny")
    one = DataLoader(TensorDataset(torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long)), batch_size=4)
    with pytest.raises(ValueError, match="1 sample"):
        take_batches(one, 2, "tiny")
    with pytest.raises(ConfigError, match="candidates must be >= 1"):
        SNASNetSearchConfig(candidates=0)
    with pytest.raises(ConfigError, match="cell must be one of"):
        SNASNetSearchConfig(cell="sideways")


def test_cli_handler_writes_search_json(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_snasnet_parser(parser.add_subparsers(dest="space"))
    args = parser.parse_args(["snasnet", "--dataset", "digits", "--cell", "forward", "--candidates", "3",
                              "--channels", "3", "--steps", "2", "--score-batch", "16", "--epochs", "0",
                              "--seed", "1", "--no-progress", "--out", str(tmp_path / "cli")])
    assert args.handler(args) == 0
    data = json.loads((tmp_path / "cli" / "search.json").read_text())
    assert data["space"] == "snasnet-forward" and len(data["candidates"]) == 3 and data["retrain"] is None
    assert data["best"]["cell"] in capsys.readouterr().out


def test_deployable_only_samples_cells_that_export_and_run_on_lava():
    from nasflow.snasnet_search import sample_candidates
    from nasflow.spaces.snasnet import deployment_problem

    cells = sample_candidates(6, "backward", 0, deployable_only=True)
    assert len(cells) == 6 and all(deployment_problem(c) is None for c in cells)
    everything = sample_candidates(20, "backward", 0)
    problems = [deployment_problem(c) for c in everything]
    assert any(problems), "the filter should matter: some random backward cells have no NIR form"
    assert all(isinstance(p, str) and p for p in problems if p is not None)  # a reason, naming the node
