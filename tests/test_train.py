"""Trainer, checkpoints, config and the `nasflow train` CLI on the real digits data (tiny models)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasflow.cli import main
from nasflow.config import ConfigError, TrainRunConfig, apply_overrides, from_dict
from nasflow.data import make_loaders
from nasflow.models import create_model, load_model, save_model
from nasflow.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nasflow.train.trainer import TrainConfig, Trainer

TINY = ["--epochs", "1", "--channels", "4", "--steps", "2", "--batch-size", "128", "--no-progress",
        "--arch", "SCB_k3,skip,skip,skip,skip"]


def _tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("autosnn", arch="SCB_k3,skip,skip,skip,skip", in_shape=(1, 8, 8), channels=4, steps=2)


def _trainer(out_dir: Path | None, epochs: int, on_epoch=None) -> Trainer:
    loaders = make_loaders("digits", 256, seed=3, augment="standard")
    cfg = TrainConfig(epochs=epochs, lr=5e-3, seed=3, progress=False)
    return Trainer(_tiny_model(), cfg, loaders.train, loaders.test, out_dir=out_dir, on_epoch=on_epoch)


def test_cli_train_writes_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--out", str(out), *TINY]) == 0
    for name in ("config.yaml", "metrics.jsonl", "model.pt", "result.json", "checkpoint.pt"):
        assert (out / name).is_file(), name
    result = json.loads((out / "result.json").read_text())
    assert result["schema_version"] == 1
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["test_samples"] == 360
    # Neurons by hand (C=4, 8x8, T=2): stem 4·64 + SCB 2·4·64 + skip(4→8) 8·16 + skip(8→16) 16·4 + FC 100.
    assert result["neuron_updates_per_sample"] == (256 + 512 + 128 + 64 + 100) * 2
    layers = result["layers"]
    assert result["spikes_per_sample"] == pytest.approx(
        sum(r["spikes_per_sample"] for r in layers.values() if r["kind"] == "neuron")
    )
    # The stem sees analog pixels every step: 2 steps × its effective MACs on the zero-padded 8x8 image.
    assert result["macs_per_sample"] > 0 and layers["stem"]["macs_per_sample"] == result["macs_per_sample"]
    assert set(result["firing_rates"]) and all(0.0 <= r <= 1.0 for r in result["firing_rates"].values())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    model, meta = load_model(out / "model.pt")
    assert meta["dataset"]["name"] == "digits"
    assert model.config["channels"] == 4


def test_resumed_training_equals_uninterrupted(tmp_path: Path) -> None:
    straight = _trainer(tmp_path / "a", epochs=3)
    straight.fit()

    class Stop(Exception):
        pass

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise Stop

    interrupted = _trainer(tmp_path / "b", epochs=3, on_epoch=stop_after_first)
    with pytest.raises(Stop):
        interrupted.fit()
    resumed = _trainer(tmp_path / "b", epochs=3)
    resumed.fit()
    assert resumed.epoch == 3
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after resume"
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_rerun_with_other_config_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--out", str(out), *TINY]) == 0
    assert main(["train", "--dataset", "digits", "--out", str(out), *TINY, "--lr", "0.1"]) == 2
    assert "train.lr" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--dataset", "mnist-fashion"], "unknown dataset"),
        (["--arch", "SCB_k3,SCB_k9x"], "unknown block"),
        (["--arch", "SCB_k3,SCB_k3"], "has 2 blocks"),
        (["--arch", "all-XYZ"], "unknown architecture"),
        (["--set", "train.lr=fast"], "train.lr"),
        (["--set", "model.depth=3"], "model.depth"),
        (["--set", "train.optimizer=rmsprop"], "optimizer"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent-nasflow"], "cifar"),
    ],
)
def test_bad_cli_input_is_one_clear_error(tmp_path: Path, capsys, argv, needle) -> None:
    assert main(["train", "--out", str(tmp_path / "r"), *TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert needle.lower() in err.lower() and "Traceback" not in err


def test_config_rejects_unknown_keys_and_types() -> None:
    with pytest.raises(ConfigError, match=r"data\.nmae"):
        from_dict(TrainRunConfig, {"data": {"nmae": "digits"}})
    with pytest.raises(ConfigError, match=r"model\.channels"):
        from_dict(TrainRunConfig, {"model": {"channels": "sixteen"}})
    with pytest.raises(ConfigError, match=r"model\.neuron\.v_reset"):
        from_dict(TrainRunConfig, {"model": {"neuron": {"v_reset": "zero"}}})
    cfg = apply_overrides(TrainRunConfig(), {"train.lr": 1, "model.neuron.v_reset": None})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.model.neuron.v_reset is None
    # PyYAML (YAML 1.1) reads 5e-3 as a string; a float key takes it as the number it spells, nothing else
    assert apply_overrides(TrainRunConfig(), {"train.lr": "5e-3"}).train.lr == 0.005
    with pytest.raises(ConfigError, match=r"train\.lr"):
        apply_overrides(TrainRunConfig(), {"train.lr": "5e-3x"})
    with pytest.raises(ConfigError, match=r"model\.channels"):
        from_dict(TrainRunConfig, {"model": {"channels": "1e3"}})


def test_config_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  arch: all-SRB_k3\ntrain:\n  epochs: 3\n")
    cfg = TrainRunConfig.load(path)
    assert cfg.model.arch == "all-SRB_k3" and cfg.train.epochs == 3 and cfg.data.name == "digits"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        TrainRunConfig.load(path)


def test_model_input_errors() -> None:
    model = _tiny_model()
    with pytest.raises(ValueError, match=r"expects input of shape \('B', 1, 8, 8\)"):
        model(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((2, 1, 8, 8), float("nan")))


def test_checkpoint_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a nasflow checkpoint"):
        load_checkpoint(foreign)
    truncated = tmp_path / "truncated.pt"
    good = save_checkpoint(tmp_path / "good.pt", {"kind": "model", "x": torch.ones(1000)})
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(truncated)
    # A checkpoint that is not a model: load_model says what it is instead.
    with pytest.raises(CheckpointError, match="not a trained model"):
        load_model(save_checkpoint(tmp_path / "state.pt", {"kind": "train-state"}))


def test_pickled_code_is_not_executed(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "nasflow-checkpoint", "obj": Evil()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_saved_model_reproduces_outputs(tmp_path: Path) -> None:
    model = _tiny_model().eval()
    x = torch.rand(5, 1, 8, 8)
    save_model(tmp_path / "m.pt", model, "autosnn")
    loaded, _ = load_model(tmp_path / "m.pt")
    assert torch.equal(model(x), loaded.eval()(x))


def test_cli_entry_point_runs_as_a_program(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nasflow.cli", "train", "--dataset", "nope", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "unknown dataset" in proc.stderr.lower()
