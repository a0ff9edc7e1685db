"""Producer dialects against the producing frameworks themselves: snnTorch and Norse (installed) build a network,
export it with their own NIR exporter and simulate it; nasflow reads the file, applies the dialect and must give
the same spikes on every neuron layer. The plain NIR reading is measured beside (it must differ, or the dialect
would not be needed). Errors: an unknown dialect, a dialect without the step it needs, a graph it does not fit."""

from __future__ import annotations

import importlib.util
import sys
import warnings

import nir
import numpy as np
import pytest
from _paths import ROOT

from exporters.core.errors import NIRFormatError
from exporters.dialects import apply_dialect, producer_hint
from exporters.lava import LavaBackendError, build_plan
from exporters.nir_io import LegacyResetWarning, read_nir

_spec = importlib.util.spec_from_file_location("peer_dialects", ROOT / "examples" / "peer_dialects.py")
peers = sys.modules.setdefault("peer_dialects", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(peers)


def _check(case) -> int | str:
    """The dialect reading gives the framework's spikes exactly; returns what the plain NIR reading gets wrong."""
    assert min(v.mean() for v in case.spikes.values()) > 0.02, f"{case.name}: every layer must fire"
    assert peers.wrong_spikes(case, case.dialect) == 0, case.name
    return peers.wrong_spikes(case, "nir")


def test_snntorch_live_round_trips(tmp_path):
    pytest.importorskip("snntorch")
    ff, rec, integrator = peers.snntorch_cases(tmp_path)  # Leaky + Synaptic; RLeaky with bias; β = 1
    assert _check(ff) > 0 and _check(rec) > 0  # NIR's own reading resets in-step, to 0
    assert "infinite" in _check(integrator)  # plain NIR refuses τ = ∞; the dialect reads it as the IF it is
    graph = read_nir(rec.path, dialect="snntorch")
    assert graph.metadata["conventions"]["reset_timing"] == "next_step" and graph.metadata["dt"] == 1e-4


def test_norse_live_round_trips(tmp_path):
    pytest.importorskip("norse")
    ff, conv = peers.norse_cases(tmp_path)  # LIFBox (v_leak 0.4) + LIFCell; a conv network
    assert _check(ff) > 0 and _check(conv) > 0


@pytest.mark.parametrize("case", peers.fixture_cases(), ids=lambda c: c.name)
def test_peer_fixtures_reproduce_the_framework(case):
    """Files written by Sinabs 3.1.3 / Rockpool 3.1.0 (nir 1.0.4) and their own simulations, made by
    examples/interop/dialects/regenerate_peers.py in a separate environment."""
    plain = _check(case)
    if case.dialect == "rockpool":  # its exporter keeps the sample's batch dimension in the Input
        assert "declared input shape (16,), but receives (1, 16)" in plain
    else:
        assert plain > 0
    graph = read_nir(case.path, dialect=case.dialect)
    assert graph.metadata["conventions"]["reset"] == "subtract" and graph.metadata["dialect"] == case.dialect


def test_legacy_files_warn_and_name_the_dialects():
    with pytest.warns(LegacyResetWarning, match=r"sinabs_ff.nir: written by nir 1.0.4 .*1, 3 meant reset by "
                                                r"subtraction.*--dialect sinabs"):
        graph = read_nir(peers.FIXTURES / "sinabs_ff.nir")
    assert graph.metadata["legacy_reset"] == "1,3"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with a dialect nothing is assumed, so nothing is warned
        read_nir(peers.FIXTURES / "sinabs_ff.nir", dialect="sinabs")


def test_rockpool_dt_is_solved_from_r():
    graph = read_nir(peers.FIXTURES / "rockpool_ff.nir", dialect="rockpool")
    assert graph.metadata["dt"] == pytest.approx(1e-3, rel=1e-6)


# ----------------------------------------------------------------------------------------------------- refusals


def _lif_graph(**meta: object) -> nir.NIRGraph:
    n = np.ones(3)
    return nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([3])}),
                               "lif": nir.LIF(tau=n * 1e-3, r=n, v_leak=n * 0, v_threshold=n, v_reset=n * 0),
                               "out": nir.Output(output_type={"output": np.array([3])})},
                        edges=[("in", "lif"), ("lif", "out")], metadata=dict(meta))


def test_bad_dialects_fail_by_name():
    with pytest.raises(NIRFormatError, match="unknown dialect 'snn'; choose one of nir, snntorch, norse"):
        apply_dialect(_lif_graph(), "snn")
    with pytest.raises(NIRFormatError, match="norse dialect needs the time step: pass --dt .*norse#411"):
        apply_dialect(_lif_graph(), "norse")
    g = _lif_graph()
    g.nodes["lif"] = nir.LIF(tau=np.array([1e-3, 2e-3, np.inf]), r=np.ones(3), v_leak=np.zeros(3),
                             v_threshold=np.ones(3), v_reset=np.zeros(3))
    with pytest.raises(NIRFormatError, match=r"node 'lif': some neurons have β = 1"):
        apply_dialect(g, "snntorch")
    with pytest.raises(NIRFormatError, match=r"rockpool_ff.nir: node '1_LIFTorch': Sinabs writes no CubaLIF; this "
                                             r"graph does not fit the sinabs dialect"):
        read_nir(peers.FIXTURES / "rockpool_ff.nir", dialect="sinabs")
    with pytest.raises(NIRFormatError, match=r"node '1': Rockpool's exporter writes its LIF neurons as CubaLIF"):
        read_nir(peers.FIXTURES / "sinabs_ff.nir", dialect="rockpool")


def test_lava_refuses_snntorch_reset_by_name():
    with pytest.raises(LavaBackendError, match=r"node 'lif': reset convention 'subtract'"):
        build_plan(apply_dialect(_lif_graph(), "snntorch"))


def test_producer_in_metadata_is_named_not_applied():
    g = _lif_graph(producer="snnTorch 0.9.1")
    assert producer_hint(g) == "snntorch"
    assert producer_hint(_lif_graph()) is None
    assert apply_dialect(g, "nir") is g
    assert producer_hint(apply_dialect(g, "snntorch")) is None  # once applied, nothing more to say


# ------------------------------------------------------------------------------------------------------------ CLI


def test_cli_simulate_import_and_hw_take_the_dialect(tmp_path, capsys):
    from nasflow.cli import main

    case = next(c for c in peers.fixture_cases() if c.name == "sinabs_conv")
    np.save(tmp_path / "x.npy", case.x.astype(np.float32))
    assert main(["simulate", str(case.path), "--dialect", "sinabs", "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "sim")]) == 0
    act = np.load(tmp_path / "sim" / "activity.npz")
    for k, v in case.spikes.items():
        np.testing.assert_array_equal(act[k], v)
    # import writes the rewritten graph: read back as plain NIR it runs the same (the conventions travel along)
    assert main(["import", str(case.path), "--dialect", "sinabs", "--output", str(tmp_path / "s.nir")]) == 0
    assert main(["simulate", str(tmp_path / "s.nir"), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "sim2")]) == 0
    act2 = np.load(tmp_path / "sim2" / "activity.npz")
    for k, v in case.spikes.items():
        np.testing.assert_array_equal(act2[k], v)
    rock = next(c for c in peers.fixture_cases() if c.name == "rockpool_ff")
    assert main(["hw", str(rock.path), "--dialect", "rockpool", "--chip", "loihi", "--out", str(tmp_path / "hw")]) == 0
    capsys.readouterr()
    assert main(["import", str(case.path), "--output", str(tmp_path / "t.nir")]) == 2
    assert "a .nir needs --dialect" in capsys.readouterr().err
    assert main(["simulate", str(case.path), "--dialect", "sinabs", "--backend", "lava", "--input",
                 str(tmp_path / "x.npy"), "--out", str(tmp_path / "lava")]) == 2
    assert "reset convention 'subtract', but Lava's LIF resets to 0 only" in capsys.readouterr().err


def test_cli_names_the_producer_without_applying_it(tmp_path, capsys):
    from nasflow.cli import main

    g = _lif_graph(producer="snntorch")
    nir.write(tmp_path / "p.nir", g)
    np.save(tmp_path / "x.npy", np.ones((4, 1, 3), np.float32))
    assert main(["simulate", str(tmp_path / "p.nir"), "--dt", "1e-3", "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "o")]) == 0
    assert "names snntorch as the producer; read with NIR's own semantics (pass --dialect snntorch" in (
        capsys.readouterr().err)
