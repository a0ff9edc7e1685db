"""The command line as a user meets it: version, plain-prose help, a quiet terminal, the run summary."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from importlib.metadata import version

import numpy as np
import pytest
from _paths import INTEROP

import nasflow
from exporters.quiet import quiet_import
from nasflow.cli import build_parser, main, summary_screen


def _all_parsers(parser: argparse.ArgumentParser, name: str = "nasflow"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _all_parsers(sub, f"{name} {sub_name}")


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    first, loop = capsys.readouterr().out.splitlines()
    assert first == f"nasflow {version('nasflow')}"
    assert nasflow.__version__ == version("nasflow")
    from nasflow import kernels

    assert loop == kernels.describe() and loop.startswith("neuron loop: ")  # which loop runs, and why if not compiled


def test_help_is_plain_prose():
    parsers = dict(_all_parsers(build_parser()))
    expected = {"nasflow", "nasflow train", "nasflow search", "nasflow search autosnn", "nasflow search snasnet",
                "nasflow run", "nasflow export", "nasflow simulate", "nasflow hw"}
    assert expected <= set(parsers)
    for name, parser in parsers.items():
        text = parser.format_help()
        # reStructuredText literals (``x``), roles (:func:`x`) and references (`x`_) all need a backtick.
        assert "`" not in text, f"{name} --help shows markup:\n{text}"
        assert parser.description and len(parser.description.split()) >= 5, f"{name} --help has no description"
        undocumented = [a.option_strings or a.dest for a in parser._actions
                        if not a.help and not isinstance(a, argparse._SubParsersAction)]
        assert not undocumented, f"{name}: options without help: {undocumented}"


NOISY = "import os, sys\nprint('PRINTED NOISE')\nos.write(2, b'C-LEVEL NOISE\\n')\n"


def test_quiet_import_hides_output_unless_the_import_fails(tmp_path, monkeypatch, capfd):
    (tmp_path / "nasflow_test_noisy_ok.py").write_text(NOISY)
    (tmp_path / "nasflow_test_noisy_bad.py").write_text(NOISY + "raise ImportError('no backend here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert quiet_import("nasflow_test_noisy_ok")
    out, err = capfd.readouterr()
    assert "NOISE" not in out + err
    assert not quiet_import("nasflow_test_noisy_bad")
    out, err = capfd.readouterr()
    assert "PRINTED NOISE" in err and "C-LEVEL NOISE" in err  # a failure shows what the import said


# A real process, so the import-time prints are real; it also reports whether lava-dl was imported at all.
_CLI = textwrap.dedent("""
    import sys
    from nasflow.cli import main
    rc = main(sys.argv[1:])
    print("lava-dl imported:", "lava.lib.dl.netx" in sys.modules, file=sys.stderr)
    sys.exit(rc)
""")


@pytest.mark.slow
def test_third_party_noise_stays_off_the_terminal_but_nasflow_warnings_do_not(tmp_path):
    # A legacy NIR file (nasflow warns about its reset semantics) simulated on netx (which imports lava-dl, whose
    # import prints a dataset notice): the notice stays off both streams, nasflow's warning and result do not.
    graph = INTEROP / "lif_norse.nir"
    x = np.zeros((20, 1, 1), dtype=np.float32)
    x[::3] = 1.0
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", _CLI, "simulate", str(graph), "--backend", "netx", "--input",
                           str(tmp_path / "x.npy"), "--dt", "1e-4", "--out", str(tmp_path / "sim")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "lava-dl imported: True", proc.stderr
    assert proc.returncode == 0, proc.stderr
    for noise in ("Prophesee", "No CUDA runtime"):
        assert noise not in proc.stdout + proc.stderr
    assert "LegacyResetWarning" in proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["backend"] == "netx"  # stdout is the command's own output
    # A failing command ends on its own one-line error, not on third-party text.
    bad = subprocess.run([sys.executable, "-c", _CLI, "simulate", str(graph), "--backend", "netx", "--out",
                          str(tmp_path / "bad")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-2].startswith(
        "nasflow simulate: error: give the input"), bad.stderr


def _row(arch: str) -> dict:
    return {"arch": arch, "torch_accuracy": 0.9, "lava_accuracy": 0.875, "lava_fixed_accuracy": 0.75,
            "spikes_per_sample": 123.4, "energy_per_sample_j": 2.5e-7, "cores_used": 7, "lava_samples": 8,
            "torch_accuracy_on_lava_samples": 0.875}


def test_summary_prints_every_step_and_the_total(tmp_path):
    steps = {"search": 61.25, "train_winner": 30.0, "train_baseline": 28.5, "export": 0.5, "simulate": 40.0,
             "hardware": 1.25}
    report = {"winner": _row("SCB_k3,skip,SRB_k3,skip,skip"), "baseline": _row("all-SCB_k3"),
              "step_seconds": steps, "total_seconds_this_session": 170.0}
    text = summary_screen(report, str(tmp_path))
    line = next(ln for ln in text.splitlines() if ln.startswith("seconds:"))
    for name, seconds in steps.items():
        assert f"{name} {seconds:.1f}" in line
    assert f"total {sum(steps.values()):.1f}" in line and "this session 170.0" in line
    # The report step finishes after report.json is written; its time comes from its step file.
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "report.json").write_text('{"seconds": 2.5, "result": {}}')
    line = next(ln for ln in summary_screen(report, str(tmp_path)).splitlines() if ln.startswith("seconds:"))
    assert "report 2.5" in line and f"total {sum(steps.values()) + 2.5:.1f}" in line


def test_train_keeps_the_models_own_neuron_unless_one_is_named(tmp_path):
    from nasflow.cli.train import train_config
    from nasflow.models import create_model
    from nasflow.snn.dhs import SPIKEDHS_NEURON

    parser = build_parser()
    arch = ("paper:normal=conv3x3@1+skip@0,conv3x3@2+skip@1,conv3x3@3+skip@2;"
            "reduce=conv3x3@0+skip@1,conv3x3@0+skip@1,conv3x3@0+skip@1")
    cfg = train_config(parser.parse_args(["train", "--set", "model.name=spikedhs", "--arch", arch, "--out", "x"]))
    assert cfg.model.neuron is None
    model = create_model("spikedhs", arch=arch, in_shape=(1, 8, 8), num_classes=10, channels=2, steps=2,
                         neuron=cfg.model.neuron)
    assert model.config["neuron"] == SPIKEDHS_NEURON.to_dict()
    named = train_config(parser.parse_args(["train", "--set", "model.name=spikedhs", "--set", "model.neuron.tau=3",
                                            "--out", "x"]))
    assert named.model.neuron is not None and named.model.neuron.tau == 3.0
    yml = tmp_path / "run.yaml"
    yml.write_text("model:\n  name: spikedhs\n  neuron:\n    kind: if\n")
    from_yaml = train_config(parser.parse_args(["train", "--config", str(yml), "--out", "x"]))
    assert from_yaml.model.neuron is not None and from_yaml.model.neuron.kind == "if"
