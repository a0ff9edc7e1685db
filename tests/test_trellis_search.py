"""The joint cell and path search on generated event stereo: a tiny run end to end, decoding and resume."""

from __future__ import annotations

import torch

from nasflow.data import make_loaders
from nasflow.data.loaders import first_samples
from nasflow.spaces.spikedhs import SpikeDHSSpace
from nasflow.spaces.trellis import Trellis, TrellisSpace, parse_trellis_arch
from nasflow.strategies.intraining import run_in_training
from nasflow.strategies.spikedhs_stereo import TrellisStereoStrategy


def _run(tmp_path, name: str, epochs: int) -> dict:
    loaders = make_loaders("stereo-dots", 4, seed=0, val_split=0.5, T=2, size=16)
    loaders = loaders._replace(train=first_samples(loaders.train, 8, True, 0),
                               val=first_samples(loaders.val, 8, False, 0))
    trellis = Trellis(layers=3, levels=2, rates=(2, 2))
    space = TrellisSpace(SpikeDHSSpace(), trellis)
    strategy = TrellisStereoStrategy((2, 4, 16, 16), loaders.spec.num_classes, channels=2, epochs=2, warmup=1)
    return run_in_training(strategy, space, loaders, tmp_path / name, epochs, seed=0, progress=False)


def test_trellis_search_runs_decodes_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    full = _run(tmp_path, "a", 2)
    arch = parse_trellis_arch(full["best"]["arch"], Trellis(layers=3, levels=2, rates=(2, 2)))
    assert len(arch.path) == 3
    assert 0.0 <= full["best"]["accuracy"] <= 1.0 and full["best"]["costs"]["mean_disparity_error"] >= 0
    assert full["best"]["costs"]["spikes"] > 0
    _run(tmp_path, "b", 1)
    resumed = _run(tmp_path, "b", 2)
    assert resumed["best"]["arch_weights"] == full["best"]["arch_weights"]


def test_cli_stereo_search_writes_search_json_and_refuses_bad_input(tmp_path, capsys):
    import json

    from nasflow.cli import main

    tiny = ["--size", "12", "--layers", "2", "--levels", "2", "--steps", "2", "--channels", "2", "--epochs", "1",
            "--warmup", "0", "--max-samples", "4", "--batch-size", "4", "--no-progress"]
    config = tmp_path / "stereo.yaml"
    config.write_text("retrain_samples: 8\ntest_samples: 4\n")
    assert main(["search", "spikedhs", "--task", "stereo", *tiny, "--config", str(config), "--retrain-epochs", "1",
                 "--out", str(tmp_path / "s")]) == 0
    out = json.loads((tmp_path / "s" / "search.json").read_text())
    assert out["strategy"] == "spikedhs-trellis" and ";path=" in out["best"]["arch"]
    assert out["retrain"]["epochs"] == 1 and out["retrain"]["test_samples"] == 4
    assert out["retrain"]["test_mean_disparity_error"] >= 0 and (tmp_path / "s" / "retrain" / "model.pt").exists()
    assert "retrained_test_mean_disparity_error" in capsys.readouterr().out
    assert out["space"]["trellis"] == {"layers": 2, "levels": 2, "rates": [3, 2]}
    cases = {("--task", "stereo", "--size", "13"): "13 is not divisible by 3",
             ("--task", "stereo", "--size", "12", "--rates", "5,2,2"): "12 is not divisible by 5",
             ("--task", "stereo", "--rates", "2,2"): "3 levels need 3 down-sampling rates",
             ("--rates", "2,2"): "--rates belong(s) to --task stereo",
             ("--task", "stereo", "--lambda-hw", "1"): "--lambda-hw not available with --task stereo",
             ("--levels", "2"): "--levels belong(s) to --task stereo",
             ("--no-up",): "--no-up belong(s) to --task stereo",
             ("--task", "stereo", "--retrain-channels", "8"): "--retrain-channels not available with --task stereo",
             ("--task", "stereo", "--dataset", "digits"): "needs a stereo dataset"}
    for args, match in cases.items():
        assert main(["search", "spikedhs", *args, "--out", str(tmp_path / "x")]) == 2, args
        assert match in capsys.readouterr().err, args
