"""The bounded fuzzing run of every file reader (``make fuzz`` runs a longer one), and the cases it found, kept as
regression tests: non-UTF-8 text in configs, chip profiles, journals and checkpoints; a NIR node whose parameters
disagree in shape (nir's constructors assert); a journal entry of the wrong types."""

from __future__ import annotations

import json

import h5py
import nir
import numpy as np
import pytest
from fuzz_readers import READERS, fuzz

from exporters.core.errors import NIRFormatError
from exporters.nir_io import read_nir, write_nir
from hwmodels.profiles import ProfileError, load_profile
from nasflow.config import ConfigError, load_yaml_mapping
from nasflow.models import load_model
from nasflow.pipeline import load_pipeline_config
from nasflow.strategies.journal import JournalError, read_journal
from nasflow.train.checkpoint import CheckpointError


def test_bounded_fuzz_run_finds_nothing():
    stats = fuzz(list(READERS), examples=40, seed=0, log=lambda _m: None)
    assert sorted(stats) == sorted(READERS)
    for kind, row in stats.items():
        assert row["tried"] == 40 and not row["failures"], (kind, row["failures"][:3])
        assert row["outcomes"].get("named", 0) > 0, kind  # the examples do reach the error paths


BAD_UTF8 = b"autosnn:\n  evaluations: \xe6\xff\n"


def test_non_utf8_text_is_a_named_error(tmp_path):
    (tmp_path / "run.yaml").write_bytes(BAD_UTF8)
    with pytest.raises(ConfigError, match="cannot read config .*run.yaml"):
        load_pipeline_config(tmp_path / "run.yaml")
    with pytest.raises(ConfigError, match="run.yaml"):
        load_yaml_mapping(tmp_path / "run.yaml")
    (tmp_path / "chip.json").write_bytes(b'{"name": "\xe6\xff"}')
    with pytest.raises(ProfileError, match="chip.json: not valid JSON"):
        load_profile(tmp_path / "chip.json")
    (tmp_path / "journal.jsonl").write_bytes(b'{"type": "header"}\n{"arch": "\xe6\xff"}\n{"x": 1}\n')
    with pytest.raises(JournalError, match="journal.jsonl, line 2: not valid JSON"):
        read_journal(tmp_path / "journal.jsonl")
    # a checkpoint whose pickled string is not UTF-8 (found by the fuzzer in a damaged model.pt)
    import torch

    torch.save({"kind": "model", "name": "abcdef"}, tmp_path / "m.pt")
    raw = bytearray((tmp_path / "m.pt").read_bytes())
    i = raw.find(b"abcdef")
    raw[i:i + 2] = b"\xe6\xff"
    (tmp_path / "m.pt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="m.pt"):
        load_model(tmp_path / "m.pt")


def test_parameters_of_disagreeing_shapes_are_a_named_error(tmp_path):
    g = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([3])}),
                            "n": nir.LIF(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)),
                            "out": nir.Output(output_type={"output": np.array([3])})},
                     edges=[("in", "n"), ("n", "out")])
    path = write_nir(tmp_path / "g.nir", g)
    with h5py.File(path, "r+") as f:
        del f["node/nodes/n/r"]
        f["node/nodes/n/r"] = np.ones(5)
    with pytest.raises(NIRFormatError, match="g.nir: cannot build the NIR graph"):
        read_nir(path)


def test_journal_entries_of_the_wrong_types_are_refused(tmp_path):
    path = tmp_path / "journal.jsonl"
    rows = [{"type": "header"}, {"type": "candidate", "index": 0, "arch": "a", "value": "high", "costs": {}}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(JournalError, match="line 2: an entry needs a string arch, a numeric value"):
        read_journal(path)


def test_config_keys_that_are_not_strings_are_named(tmp_path):
    (tmp_path / "run.yaml").write_text("autosnn:\n  &a: {cores: 64}\n  7: 1\n")  # keys None and 7 (found by fuzzing)
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) autosnn.7, autosnn.None"):
        load_pipeline_config(tmp_path / "run.yaml")


def test_unreadable_metadata_is_named(tmp_path):
    g = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([3])}),
                            "out": nir.Output(output_type={"output": np.array([3])})},
                     edges=[("in", "out")], metadata={"dt": ""})  # found by fuzzing: an empty dt string
    path = tmp_path / "g.nir"
    nir.write(path, g)
    with pytest.raises(NIRFormatError, match="g.nir: metadata 'dt'/'conventions' cannot be read"):
        read_nir(path)


def test_empty_and_mistyped_netx_values_are_named(tmp_path):
    import shutil
    import sysconfig
    from pathlib import Path

    from exporters.netx import NetxFormatError
    from exporters.netx_import import read_netx

    path = tmp_path / "t.net"
    shutil.copy(Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx/tiny.net", path)
    with h5py.File(path, "r+") as f:  # found by fuzzing: empty arrays where netx stores one number
        del f["layer/1/neuron/vThMant"]
        f["layer/1/neuron/vThMant"] = np.zeros(0)
    with pytest.raises(NetxFormatError, match="t.net: malformed netx network"):
        read_netx(path)
