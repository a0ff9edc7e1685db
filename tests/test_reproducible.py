"""A seed is reproducible: two fresh runs of each seeded command write the same results (timing aside).

Resuming a killed search or run is only meaningful when an uninterrupted one is reproducible, so every
command that takes a seed runs twice here into fresh directories, on one thread, and the JSON it writes is
compared after the wall-clock fields are removed and the run directory is replaced by a placeholder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from nasflow.cli import main
from nasflow.train.checkpoint import load_checkpoint

TIMING_SUFFIXES = ("seconds", "_s")
TIMING_WORDS = ("time", "date", "wall", "timestamp")
# Named like timings but modelled or configured, not measured: they must match like any other result.
NOT_TIMING = {"latency_per_step_s", "timeout_s"}


def _is_timing(key: str) -> bool:
    low = key.lower()
    if low in NOT_TIMING:
        return False
    return "seconds" in low or low.endswith(TIMING_SUFFIXES) or any(word in low.split("_") for word in TIMING_WORDS)


def strip_timing(obj: Any, out_dir: Path, stripped: set[str] | None = None) -> tuple[Any, set[str]]:
    """``obj`` without wall-clock keys (recursively) and with ``out_dir`` spelled ``<out>``; also the keys removed."""
    stripped = set() if stripped is None else stripped
    if isinstance(obj, dict):
        kept = {}
        for key, value in obj.items():
            if _is_timing(str(key)):
                stripped.add(str(key))
            else:
                kept[key] = strip_timing(value, out_dir, stripped)[0]
        return kept, stripped
    if isinstance(obj, list):
        return [strip_timing(v, out_dir, stripped)[0] for v in obj], stripped
    if isinstance(obj, str):
        return obj.replace(str(out_dir), "<out>"), stripped
    return obj, stripped


def _same_json(name: str, first: Path, second: Path, expected_stripped: set[str]) -> None:
    a, stripped_a = strip_timing(json.loads((first / name).read_text()), first)
    b, stripped_b = strip_timing(json.loads((second / name).read_text()), second)
    assert stripped_a == stripped_b == expected_stripped
    assert a == b


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread (the README's reproducibility promise is per machine and thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


AUTOSNN = ["search", "autosnn", "--dataset", "digits", "--supernet-epochs", "1", "--evaluations", "2",
           "--channels", "4", "--steps", "2", "--seed", "5", "--threads", "1", "--no-progress"]


def test_search_autosnn_same_seed_same_search(tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        assert main([*AUTOSNN, "--out", str(out)]) == 0
    first, second = (load_checkpoint(out / "supernet.pt")["state_dict"] for out in runs)
    assert first.keys() == second.keys()
    differ = [k for k in first if not torch.equal(first[k], second[k])]
    assert not differ, f"{len(differ)} of {len(first)} supernet tensors differ, e.g. {differ[:3]}"
    _same_json("search.json", *runs, expected_stripped={"supernet_seconds", "search_seconds"})


SNASNET = ["search", "snasnet", "--dataset", "digits", "--candidates", "3", "--channels", "4", "--steps", "2",
           "--score-batch", "16", "--epochs", "1", "--seed", "5", "--threads", "1", "--no-progress"]


def test_search_snasnet_same_seed_same_search(tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        assert main([*SNASNET, "--out", str(out)]) == 0
    _same_json("search.json", *runs,
               expected_stripped={"search_seconds", "seconds_per_candidate", "train_seconds"})


TINY_RUN = {
    "seed": 5,
    "progress": False,
    "model": {"channels": 4, "steps": 2},
    "autosnn": {"supernet_epochs": 1, "evaluations": 2, "rounds": 1},
    "retrain": {"epochs": 1, "progress": False},
    "lava": {"samples": 1, "fixed_point": False, "timeout_s": 300},
}


@pytest.mark.slow
def test_run_same_seed_same_report(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        assert main(["run", "--config", str(config), "--out", str(out), "--threads", "1", "--no-progress"]) == 0
    _same_json("report.json", *runs,
               expected_stripped={"supernet_seconds", "search_seconds", "search_cost_seconds", "step_seconds"})
    _same_json("search/search.json", *runs, expected_stripped={"supernet_seconds", "search_seconds"})
