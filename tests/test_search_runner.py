"""Spaces as objects and the one search runner: protocol, round trips, journal resume, old journals."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest

from nasflow.snasnet_search import sample_candidates
from nasflow.spaces.autosnn_space import AutoSNNSpace
from nasflow.spaces.base import SearchSpace
from nasflow.spaces.snasnet import CellError, SNASNetSpace, cell_kind
from nasflow.strategies import EvolutionConfig, evolutionary_search, random_search
from nasflow.strategies.journal import JournalError
from nasflow.strategies.runner import run_search

# Produced with the pre-space code: ``sample_candidates(6, "forward", 7)`` and ``(6, "backward", 3)`` as
# they were when candidates were drawn inline in nasflow/snasnet_search.py.
GOLDEN_CELLS = {
    ("forward", 7): ['0013 0000 0004 0000', '0024 0000 0001 0000', '0003 0000 0000 0000', '0314 0004 0002 0000',
                     '0204 0004 0000 0000', '0413 0043 0002 0000'],
    ("backward", 3): ['0001 3000 0000 0300', '0034 2002 0400 0000', '0402 0001 0000 0000', '0002 0000 0000 0000',
                      '0012 4010 0001 0200', '0004 3000 0000 0400'],
}


@pytest.mark.parametrize("space", [AutoSNNSpace("snn1"), SNASNetSpace("backward"), SNASNetSpace("forward")])
def test_spaces_follow_the_protocol_and_round_trip(space) -> None:
    assert isinstance(space, SearchSpace) and space.size() > 0 and json.dumps(space.fingerprint())
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(20)]
    for a in archs:
        hash(a)
        assert space.key(a) == space.format(a) and space.parse(space.format(a)) == a
    for a, b in zip(archs, archs[1:]):
        child = space.crossover(a, b, rng)
        assert space.parse(space.format(child)) == child
        mutant = space.mutate(a, rng, 0.3)
        assert space.parse(space.format(mutant)) == mutant
    assert any(space.mutate(a, rng, 1.0) != a for a in archs)


def test_parse_errors_name_the_bad_part() -> None:
    with pytest.raises(ValueError, match="bogus"):
        AutoSNNSpace().parse("skip,bogus,skip,skip,skip")
    with pytest.raises(ValueError, match="3 blocks"):
        AutoSNNSpace().parse("skip,skip,skip")
    with pytest.raises(CellError, match=r"\['9'\]"):
        SNASNetSpace().parse("0903 0030 2002 0200")
    with pytest.raises(CellError, match="backward edge"):
        SNASNetSpace("forward").parse("0303 0030 2002 0200")


def test_snasnet_mutation_changes_pairs_within_the_kind() -> None:
    space, rng = SNASNetSpace("forward"), random.Random(1)
    cell = space.parse("0303 0030 0002 0000")
    for _ in range(50):
        child = space.mutate(cell, rng, 0.0)  # still one pair changes
        assert child == space.parse(child) and cell_kind(child) == "forward"


@pytest.mark.parametrize("kind, seed", list(GOLDEN_CELLS))
def test_snasnet_candidates_are_the_samplers_first_distinct_cells(kind: str, seed: int) -> None:
    assert sample_candidates(6, kind, seed) == GOLDEN_CELLS[(kind, seed)]
    found = random_search(SNASNetSpace(kind), lambda archs: [(0.0, {})] * len(archs), lambda v, c: v,
                          budget=6, seed=seed, batch=4)
    assert [c.arch for c in found.evaluated] == GOLDEN_CELLS[(kind, seed)]


class _Objective:
    value_name = "accuracy"

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], int]] = []

    def evaluate(self, arch, index):
        self.calls.append((arch, index))
        return 0.5 + 0.1 * sum(b.startswith("SRB") for b in arch), {"spikes": float(len(set(arch)))}


def test_runner_journals_resumes_and_indexes_proposals(tmp_path: Path) -> None:
    space = AutoSNNSpace()
    strategy = functools.partial(evolutionary_search, config=EvolutionConfig(rounds=3, pool_size=5))
    first = _Objective()
    run = run_search(space, strategy, first, lambda v, c: v, tmp_path, {"seed": 0}, budget=12, seed=0,
                     progress=False)
    assert len(run.evaluated) == 12 and run.journal_hits == 0 and [i for _, i in first.calls] == list(range(12))
    assert run.best.fitness == max(c.fitness for c in run.evaluated)
    row = run.row(run.evaluated[0])
    assert row["arch"] == space.format(run.evaluated[0].arch) and "accuracy" in row
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["value_name"] == "accuracy" and header["space"] == "autosnn-snn1" and header["journal_format"] == 2
    assert json.loads(lines[1])["value"] == run.evaluated[0].value and json.loads(lines[1])["index"] == 0
    (tmp_path / "journal.jsonl").write_text("\n".join(lines[:6]) + "\n")
    again = _Objective()
    resumed = run_search(space, strategy, again, lambda v, c: v, tmp_path, {"seed": 0}, budget=12, seed=0,
                         progress=False)
    assert resumed.journal_hits == 5 and [i for _, i in again.calls] == list(range(5, 12))
    assert [c.arch for c in resumed.evaluated] == [c.arch for c in run.evaluated]


def test_runner_refuses_an_old_format_journal_naming_the_directory(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").write_text('{"type": "header", "space": "autosnn-snn1"}\n'
                                            '{"type": "candidate", "arch": "a", "accuracy": 1, "costs": {}}\n')
    with pytest.raises(JournalError, match=f"{tmp_path}.*journal format 1"):
        run_search(AutoSNNSpace(), random_search, _Objective(), lambda v, c: v, tmp_path, {}, budget=2, seed=0,
                   progress=False)
