"""``nasflow export`` / ``nasflow simulate`` handlers on a tiny digits model trained for a few steps."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from exporters.nir_io import read_nir
from nasflow.cli.export import add_export_parser, cmd_export
from nasflow.cli.simulate import add_simulate_parser, cmd_simulate
from nasflow.data import make_loaders
from nasflow.models import AutoSNNNet, save_model
from nasflow.train.trainer import spike_loss


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nasflow")
    sub = parser.add_subparsers(dest="command", required=True)
    add_export_parser(sub)
    add_simulate_parser(sub)
    return parser.parse_args(list(argv))


def _run(*argv: str) -> int:
    args = _parse(*argv)
    assert args.handler is {"export": cmd_export, "simulate": cmd_simulate}[args.command]
    return args.handler(args)


def _train(arch: str, channels: int = 8, seed: int = 0) -> AutoSNNNet:
    """A digits model trained for 40 Adam steps (enough for every layer to spike)."""
    torch.manual_seed(seed)
    model = AutoSNNNet(arch=arch, in_shape=(1, 8, 8), channels=channels, steps=4)
    loaders = make_loaders("digits", batch_size=64, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    batches = iter(loaders.train)
    for _ in range(40):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loaders.train)
            x, y = next(batches)
        loss = spike_loss("mse", model(x), y, 10)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A residual digits model (SRB blocks) trained for 40 Adam steps, saved as model.pt."""
    model = _train("SRB_k3,SCB_k3,skip,SRB_k3,SCB_k3")
    path = tmp_path_factory.mktemp("run") / "model.pt"
    save_model(path, model, "autosnn")
    x, y = next(iter(make_loaders("digits", batch_size=32, seed=0).test))
    with torch.no_grad():
        acc = float((model(x).argmax(-1) == y).float().mean())
    return path, acc


def test_export_then_simulate_digits_with_compare(trained, tmp_path, capsys):
    model_pt, torch_acc = trained
    nir_path = tmp_path / "model.nir"
    assert _run("export", str(model_pt), "--to", "nir", "--output", str(nir_path)) == 0
    graph = read_nir(nir_path)
    assert float(graph.metadata["dt"]) == 1e-3 and int(graph.metadata["steps"]) == 4
    out = tmp_path / "sim"
    assert _run("simulate", str(nir_path), "--backend", "torch", "--dataset", "digits", "--samples", "32",
                "--compare", "torch", "--out", str(out)) == 0
    res = json.loads((out / "simulate.json").read_text())
    assert res["schema_version"] == 1 and res["backend"] == "torch"
    assert (res["steps"], res["samples"], res["dt"]) == (4, 32, 1e-3)
    assert res["accuracy"] == pytest.approx(torch_acc, abs=1 / 32 + 1e-9)  # the model's own accuracy
    assert res["accuracy"] > 0.2  # trained a little: better than chance (0.1)
    neurons = {k: v for k, v in res["nodes"].items() if v["type"] in ("LIF", "IF")}
    assert "features.0.sn2" in neurons and res["nodes"]["stem"]["type"] == "Conv2d"
    assert res["spikes_per_sample"] == pytest.approx(sum(v["spikes_per_sample"] for v in neurons.values()))
    assert res["spikes_per_sample"] > 0 and res["nodes"]["stem"]["spikes_per_sample"] is None
    # measured synaptic ops: the stem sees the analog image (MACs), later layers see spikes (ACs)
    assert "synops_note" not in res and res["macs_per_sample"] > 0 and res["synops_per_sample"] > 0
    stem_ops = res["nodes"]["stem"]["synops"]
    assert [r["source"] for r in stem_ops.values()] == ["input"] and res["nodes"]["input"]["spikes_per_sample"] is None
    assert res["compare"]["min_precision"] == res["compare"]["min_recall"] == 1.0
    act = np.load(out / "activity.npz")
    assert set(act.files) == set(graph.nodes)
    assert act["features.0.sn2"].shape == (4, 32, 8, 8, 8)
    assert act["stem_sn"].sum() / 32 == pytest.approx(res["nodes"]["stem_sn"]["spikes_per_sample"])
    assert '"accuracy"' in capsys.readouterr().out


def test_simulate_model_pt_and_input_npy(trained, tmp_path):
    model_pt, _ = trained
    x = np.random.default_rng(0).random((3, 2, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "sim"
    assert _run("simulate", str(model_pt), "--input", str(tmp_path / "x.npy"), "--dt", "1e-3", "--out", str(out)) == 0
    res = json.loads((out / "simulate.json").read_text())
    assert (res["steps"], res["samples"], res["accuracy"], res["compare"]) == (3, 2, None, None)
    assert np.load(out / "activity.npz")["input"].shape == (3, 2, 1, 8, 8)


def test_simulate_errors_are_clear(trained, tmp_path):
    model_pt, _ = trained
    with pytest.raises(ValueError, match="give the input: --dataset NAME"):
        _run("simulate", str(model_pt), "--out", str(tmp_path))
    with pytest.raises(ValueError, match=r"m\.net: no such netx file"):
        _run("simulate", str(tmp_path / "m.net"), "--backend", "torch", "--input", "x.npy", "--out", str(tmp_path))
    np.save(tmp_path / "bad.npy", np.zeros((3, 2, 1, 7, 7), np.float32))
    with pytest.raises(ValueError, match=r"input 'input': expected an array \[T, B, 1, 8, 8\]"):
        _run("simulate", str(model_pt), "--input", str(tmp_path / "bad.npy"), "--out", str(tmp_path))
    with pytest.raises(ValueError, match=r"no such NIR file"):
        _run("simulate", str(tmp_path / "none.nir"), "--input", str(tmp_path / "bad.npy"), "--out", str(tmp_path))


def test_simulate_on_lava_float_and_fixed_compares_with_torch(trained, tmp_path):
    """The issue's criterion on a residual digits model: Lava float equals torch, fixed point stays close."""
    model_pt, _ = trained
    nir_path = tmp_path / "model.nir"
    assert _run("export", str(model_pt), "--to", "nir", "--output", str(nir_path)) == 0
    results = {}
    for backend in ("torch", "lava", "lava-fixed", "lava-emu"):
        out = tmp_path / backend
        assert _run("simulate", str(nir_path), "--backend", backend, "--dataset", "digits", "--samples", "24",
                    "--compare", "torch", "--out", str(out)) == 0
        results[backend] = json.loads((out / "simulate.json").read_text())
    lava = results["lava"]
    assert lava["compare"]["min_precision"] >= 0.999 and lava["compare"]["min_recall"] >= 0.999
    assert abs(lava["accuracy"] - results["torch"]["accuracy"]) <= 0.005
    assert abs(results["lava-fixed"]["accuracy"] - results["torch"]["accuracy"]) <= 2 / 24 + 1e-9
    act = np.load(tmp_path / "lava" / "activity.npz")
    assert act["features.0.sn2"].shape == (4, 24, 8, 8, 8)  # the reference time axis, whatever the backend
    fixed, emu = (np.load(tmp_path / b / "activity.npz") for b in ("lava-fixed", "lava-emu"))
    assert sorted(emu.files) == sorted(fixed.files)
    for nid in fixed.files:  # the emulator's rasters are Lava's fixed-point rasters
        np.testing.assert_array_equal(emu[nid], fixed[nid], err_msg=nid)
    assert results["lava-emu"]["accuracy"] == results["lava-fixed"]["accuracy"]


def test_netx_export_refuses_a_residual_model_and_runs_a_plain_one(trained, tmp_path):
    model_pt, _ = trained
    with pytest.raises(ValueError, match="features.0"):
        _run("export", str(model_pt), "--to", "netx", "--output", str(tmp_path / "res.net"))
    plain = _train("SCB_k3,skip,skip,skip,skip", channels=4, seed=1)
    save_model(tmp_path / "plain.pt", plain, "autosnn")
    assert _run("export", str(tmp_path / "plain.pt"), "--to", "netx", "--output", str(tmp_path / "plain.net")) == 0
    out = tmp_path / "netx"
    assert _run("simulate", str(tmp_path / "plain.net"), "--backend", "netx", "--dataset", "digits", "--samples", "8",
                "--steps", "4", "--out", str(out)) == 0
    res = json.loads((out / "simulate.json").read_text())
    assert res["backend"] == "netx" and res["spikes_per_sample"] > 0
    # From the NIR graph, netx reports the same metrics as the other backends: accuracy and per-layer agreement.
    assert _run("export", str(tmp_path / "plain.pt"), "--to", "nir", "--output", str(tmp_path / "plain.nir")) == 0
    for backend in ("torch", "netx"):
        assert _run("simulate", str(tmp_path / "plain.nir"), "--backend", backend, "--dataset", "digits",
                    "--samples", "8", "--compare", "torch", "--out", str(tmp_path / f"n-{backend}")) == 0
    ref, got = (json.loads((tmp_path / f"n-{b}" / "simulate.json").read_text()) for b in ("torch", "netx"))
    assert got["accuracy"] is not None and got["compare"]["min_recall"] is not None
    assert abs(got["accuracy"] - ref["accuracy"]) <= 2 / 8 + 1e-9  # fixed point, like lava-fixed


def test_train_with_qat_deploys_its_own_integers_on_lava(tmp_path):
    """``nasflow train --qat lava`` writes the integers it fine-tuned; Lava fixed point and lava-emu run exactly
    those (``--fixed-point``) and agree spike for spike."""
    from nasflow.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--arch", "SCB_k3,skip,skip,skip,skip", "--channels", "4",
                 "--steps", "4", "--epochs", "1", "--train-samples", "96", "--test-samples", "48", "--no-progress",
                 "--qat", "lava", "--qat-epochs", "1", "--qat-distill", "0.75", "--out", str(out)]) == 0
    qat = json.loads((out / "qat.json").read_text())
    assert qat["schema_version"] == 1 and len(qat["history"]) == 1 and qat["config"]["distill"] == 0.75
    assert 0.0 <= qat["fixed_accuracy_before"] <= 1.0 and 0.0 <= qat["fixed_accuracy_after"] <= 1.0
    acts = {}
    for backend in ("lava-fixed", "lava-emu"):
        assert _run("simulate", str(out / "model.pt"), "--backend", backend, "--fixed-point",
                    str(out / "fixed_point.npz"), "--dataset", "digits", "--samples", "6", "--steps", "4",
                    "--out", str(tmp_path / backend)) == 0
        acts[backend] = np.load(tmp_path / backend / "activity.npz")
    for nid in acts["lava-fixed"].files:
        np.testing.assert_array_equal(acts["lava-emu"][nid], acts["lava-fixed"][nid], err_msg=nid)
    with pytest.raises(ValueError, match="--fixed-point"):
        _run("simulate", str(out / "model.pt"), "--backend", "lava", "--fixed-point", str(out / "fixed_point.npz"),
             "--dataset", "digits", "--samples", "2", "--steps", "4", "--out", str(tmp_path / "bad"))
