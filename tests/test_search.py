"""AutoSNN search runs on digits (tiny sizes): journal, resume, supernet reuse and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasflow.cli import main
from nasflow.search import AutoSNNSearchConfig, run_autosnn_search
from nasflow.strategies.journal import Journal, JournalError, read_journal
from nasflow.train.checkpoint import CheckpointError

TINY = dict(channels=4, steps=2, supernet_epochs=1, evaluations=24, rounds=4, progress=False, batch_size=128)


@pytest.fixture(scope="module")
def first_search(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search") / "s"
    run_autosnn_search(AutoSNNSearchConfig(**TINY), out)
    return out


def test_search_json_lists_every_candidate(first_search: Path) -> None:
    data = json.loads((first_search / "search.json").read_text())
    assert data["schema_version"] == 1 and len(data["evaluated"]) == 24
    archs = [row["arch"] for row in data["evaluated"]]
    assert len(set(archs)) == 24
    for row in data["evaluated"]:
        assert {"accuracy", "spikes", "fitness", "arch"} <= set(row)
    assert data["best"]["fitness"] == max(r["fitness"] for r in data["evaluated"])
    assert data["cost_avg"]["spikes"] >= 0


def test_resume_replays_the_journal_without_re_evaluating(first_search: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    out.mkdir()
    lines = (first_search / "journal.jsonl").read_text().splitlines(keepends=True)
    # A search killed after 10 candidates, in the middle of writing the 11th line.
    (out / "journal.jsonl").write_text("".join(lines[:11]) + lines[11][: len(lines[11]) // 2])
    (out / "supernet.pt").write_bytes((first_search / "supernet.pt").read_bytes())
    with pytest.warns(UserWarning, match="cut off"):
        data = run_autosnn_search(AutoSNNSearchConfig(**TINY), out)
    assert data["journal_hits"] == 10
    first = json.loads((first_search / "search.json").read_text())
    assert [r["arch"] for r in data["evaluated"]] == [r["arch"] for r in first["evaluated"]]
    assert len(read_journal(out / "journal.jsonl")) == 24


def test_supernet_reuse_for_a_new_lambda(first_search: Path, tmp_path: Path) -> None:
    cfg = AutoSNNSearchConfig(**{**TINY, "lam": -0.24})
    data = run_autosnn_search(cfg, tmp_path / "l024", supernet_dir=first_search)
    assert data["supernet_seconds"] < 5 and data["lambda"] == -0.24
    other = AutoSNNSearchConfig(**{**TINY, "channels": 8})
    with pytest.raises(CheckpointError, match="different search space"):
        run_autosnn_search(other, tmp_path / "c8", supernet_dir=first_search)


def test_corrupt_journal_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"type": "header", "space": "x"}\nnot json\n{"arch": "a", "accuracy": 1, "costs": {}}\n')
    with pytest.raises(JournalError, match="line 2"):
        read_journal(path)
    path.write_text('{"type": "header", "space": "x"}\n')
    with pytest.raises(JournalError, match="different search"):
        Journal(path, header={"space": "y"})


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--budget", "spikes"], "NAME=NUMBER"),
        (["--budget", "cores=-3"], "impossible"),
        (["--lambda", "0.5"], "λ"),
        (["--cost", "joules"], "joules"),
        (["--supernet", "/nonexistent-nasflow"], "no supernet.pt"),
    ],
)
def test_bad_search_input(tmp_path: Path, capsys, argv, needle) -> None:
    args = ["search", "autosnn", "--out", str(tmp_path / "o"), "--channels", "4", "--steps", "2",
            "--supernet-epochs", "0", "--evaluations", "2", "--no-progress", *argv]
    assert main(args) == 2
    assert needle in capsys.readouterr().err


def test_paper_cifar10_config_runs_on_a_tiny_synthetic_cifar(tmp_path: Path) -> None:
    from test_data import _write_cifar10  # tests/ is on sys.path under pytest

    _write_cifar10(tmp_path / "data", per_batch=10)
    config = Path(__file__).resolve().parents[1] / "examples" / "configs" / "autosnn_cifar10_paper.yaml"
    args = ["search", "autosnn", "--config", str(config), "--data-dir", str(tmp_path / "data"),
            "--supernet-epochs", "1", "--evaluations", "3", "--threads", "1", "--no-progress",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0
    resolved = (tmp_path / "run" / "config.yaml").read_text()
    assert "batch_size: 96" in resolved and "supernet_lr: 0.001" in resolved and "augment: cutout" in resolved
    assert len(json.loads((tmp_path / "run" / "search.json").read_text())["evaluated"]) == 3


def test_search_on_the_enlarged_8_block_space(tmp_path: Path) -> None:
    cfg = AutoSNNSearchConfig(**{**TINY, "macro": "snn1-8tbd", "evaluations": 6, "rounds": 2})
    data = run_autosnn_search(cfg, tmp_path / "big")
    assert all(len(row["arch"].split(",")) == 8 for row in data["evaluated"]) and len(data["evaluated"]) == 6
    with pytest.raises(ValueError, match="unknown macro"):
        AutoSNNSearchConfig(macro="snn9")


def test_unrecorded_cost_is_calibrated_on_random_paths(first_search: Path, tmp_path: Path) -> None:
    import torch

    from nasflow.train.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(first_search / "supernet.pt")
    del state["cost_avg"]["neuron_updates"]
    state = {k: v for k, v in state.items() if k not in ("format", "version")}
    sdir = tmp_path / "old-supernet"
    save_checkpoint(sdir / "supernet.pt", state)
    cfg = AutoSNNSearchConfig(**{**TINY, "cost": "neuron_updates"})
    data = run_autosnn_search(cfg, tmp_path / "cal", supernet_dir=sdir)
    assert data["cost_avg_calibrated"] == ["neuron_updates"] and data["cost_avg"]["neuron_updates"] > 0
    assert torch.isfinite(torch.tensor(data["best"]["fitness"]))


def test_hardware_cost_reuses_the_supernet_and_matches_a_fresh_costing(first_search: Path, tmp_path: Path) -> None:
    from exporters.nir_export import to_nir
    from hwmodels import HardwareCost
    from nasflow.data import make_loaders
    from nasflow.evaluators.supernet_eval import SupernetEvaluator
    from nasflow.search import _supernet

    cfg = AutoSNNSearchConfig(**{**TINY, "cost": "energy:loihi", "budgets": {"cores": 1000}})
    assert cfg.budgets == {"cores:loihi": 1000.0}  # a hardware budget is measured on the cost's chip
    data = run_autosnn_search(cfg, tmp_path / "hw", supernet_dir=first_search)
    assert data["cost_avg_calibrated"] and "energy:loihi" in data["cost_avg"]
    row = data["evaluated"][0]
    assert row["costs"]["energy:loihi"] > 0 and row["costs"]["cores:loihi"] >= 1
    # The journaled energy equals costing the exported candidate from scratch with the same measured counts.
    loaders = make_loaders("digits", 128, seed=0, val_split=0.2, eval_batch_size=512)
    net, _ = _supernet(cfg, loaders.spec, loaders, tmp_path, first_search, "cpu")
    arch = tuple(row["arch"].split(","))
    _, costs = SupernetEvaluator(net, loaders.val).evaluate_one(arch)
    from nasflow.snn.activity import ActivityMonitor

    net.set_path(arch)
    with ActivityMonitor(net) as mon:
        for x, _ in loaders.val:
            net(x)
    from nasflow.evaluators.hw_cost import measured_totals

    hc = HardwareCost(to_nir(net), "loihi", steps=TINY["steps"], estimate_unmeasured=True)
    fresh = hc.evaluate(measured_totals(hc.table, mon.summary()))
    assert row["costs"]["energy:loihi"] == pytest.approx(fresh["energy_per_sample_j"], rel=1e-9)
    assert costs["spikes"] == pytest.approx(row["costs"]["spikes"])


def test_impossible_hardware_budget_rejects_every_candidate(first_search: Path, tmp_path: Path) -> None:
    cfg = AutoSNNSearchConfig(**{**TINY, "cost": "spikes", "budgets": {"cores": 1}, "evaluations": 4, "rounds": 1})
    data = run_autosnn_search(cfg, tmp_path / "hw1", supernet_dir=first_search)
    assert all(r["fitness"] == float("-inf") for r in data["evaluated"])


@pytest.mark.parametrize("cost, needle", [("energy", "energy|cores"), ("energy:nochip", "nochip"),
                                          ("watts:loihi", "watts")])
def test_bad_hardware_cost_names(cost: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        AutoSNNSearchConfig(**{**TINY, "cost": cost})
