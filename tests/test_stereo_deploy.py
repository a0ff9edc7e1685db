"""A decoded trellis path as a stereo model: trained by nasflow's trainer, saved, exported (features only), run
on the torch reference and Lava float, costed with the host's matching operations beside the chip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nasflow.snn.stereo import SiameseStereo, subpixel_cross_entropy
from nasflow.train.tasks import ClassificationTask, StereoTask

ARCH = "paper:cell=conv3x3@1+skip@0,conv5x5@2+skip@1,conv3x3@3+skip@2;path=0,1"
TINY = dict(size=12, layers=2, levels=2, rates=[3, 2, 2, 2], channels=2, steps=2, batch_size=4,
            retrain_samples=8, test_samples=4, progress=False)


def test_stereo_task_tallies_a_hand_made_cost_volume():
    # one-hot costs at disparity 2 (step 1) on a 1x2x3 map: the estimate is exactly 2 where the window is inside
    cost = torch.full((1, 4, 2, 3), -50.0)
    cost[:, 2] = 50.0
    target = torch.tensor([[[2.0, 2.5, float("nan")], [0.5, 2.0, 4.0]]])
    task = StereoTask(1.0)
    sums = task.tally(cost, target)
    assert sums["count"] == 5 and sums["hits"] == 3  # errors 0, 0.5, 1.5, 0, 2: three within one pixel
    assert sums["abs_error"] == pytest.approx(0 + 0.5 + 1.5 + 0 + 2)
    m = task.metrics(sums)
    assert m["accuracy"] == pytest.approx(0.6) and m["mean_disparity_error"] == pytest.approx(4.0 / 5)
    assert task.loss(cost, target) == subpixel_cross_entropy(cost, target)
    assert math.isnan(task.metrics(task.tally(cost, torch.full_like(target, float("nan"))))["accuracy"])
    cls = ClassificationTask("ce", 3)
    out, y = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]]), torch.tensor([1, 2])
    assert cls.metrics(cls.tally(out, y)) == {"accuracy": 0.5}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from nasflow.trellis_search import TrellisSearchConfig, retrain_trellis

    out = tmp_path_factory.mktemp("stereo") / "run"
    torch.manual_seed(0)
    result = retrain_trellis(TrellisSearchConfig(**TINY), ARCH, out, epochs=1)
    return out, result


def test_retraining_a_path_writes_a_stereo_result_and_a_loadable_model(trained):
    from nasflow.models import load_model

    out, result = trained
    assert result["arch"] == ARCH and result["epochs"] == 1 and result["test_samples"] == 4
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["test_mean_disparity_error"] >= 0.0
    assert result["chip_inferences_per_sample"] == 2 and result["host_ops_per_sample"]["cost_volume_macs"] > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"train_mean_disparity_error", "test_mean_disparity_error", "test_accuracy"} <= set(rows[0])
    model, _ = load_model(out / "model.pt")
    assert isinstance(model, SiameseStereo) and model.features.path == (0, 1) and model.upsample == 2


def test_stereo_model_exports_its_features_and_the_host_part_gives_the_models_own_disparity(trained):
    from exporters.nir_export import to_nir
    from exporters.nir_torch import simulate
    from nasflow.data import make_loaders
    from nasflow.models import load_model
    from nasflow.snn.neurons import reset_states

    out, _ = trained
    model, _ = load_model(out / "model.pt")
    model.eval()
    graph = to_nir(model, dt=1e-3)
    assert graph.metadata["steps"] == 2 and graph.metadata["model_arch"] == ARCH
    x, _ = next(iter(make_loaders("stereo-dots", 3, T=2, size=12).test))
    with torch.no_grad():
        reset_states(model)
        expected = model(x)
    act = simulate(graph, model.camera_streams(x).numpy(), dt=1e-3)
    with torch.no_grad():
        got = model.match(torch.as_tensor(act["output"]))
    torch.testing.assert_close(got, expected)


def test_simulate_on_lava_and_hw_report_stereo_with_host_ops(trained, tmp_path):
    from nasflow.cli import main

    out, _ = trained
    sim = tmp_path / "lava"
    assert main(["simulate", str(out / "model.pt"), "--dataset", "stereo-dots", "--samples", "2", "--backend",
                 "lava", "--compare", "torch", "--out", str(sim)]) == 0
    s = json.loads((sim / "simulate.json").read_text())
    assert s["samples"] == 4 and s["stereo_samples"] == 2  # two cameras per stereo sample
    assert s["compare"]["min_precision"] >= 0.999 and s["compare"]["min_recall"] >= 0.999
    assert s["accuracy"] == s["one_pixel_accuracy"] and 0.0 <= s["accuracy"] <= 1.0
    torch_sim = tmp_path / "torch"
    assert main(["simulate", str(out / "model.pt"), "--dataset", "stereo-dots", "--samples", "2",
                 "--out", str(torch_sim)]) == 0
    t = json.loads((torch_sim / "simulate.json").read_text())
    assert t["mean_disparity_error"] == pytest.approx(s["mean_disparity_error"])
    hw = tmp_path / "hw"
    assert main(["hw", str(out / "model.pt"), "--activity", str(sim / "activity.npz"), "--out", str(hw)]) == 0
    report = json.loads((hw / "hw.json").read_text())
    assert report["host"]["ops"] == s["host_ops_per_stereo_sample"] and "2 chip samples" in report["host"]["unit"]
    assert report["cores_used"] >= 1 and report["energy_per_sample_j"] > 0
    assert "Host, after the chip" in (hw / "hw.md").read_text()


def test_training_refuses_a_model_that_does_not_fit_the_task(tmp_path, capsys):
    from nasflow.cli import main

    common = ["--epochs", "1", "--train-samples", "4", "--test-samples", "4", "--batch-size", "4", "--no-progress"]
    assert main(["train", "--dataset", "stereo-dots", "--size", "12", "--augment", "none", *common,
                 "--out", str(tmp_path / "a")]) == 2
    assert "train a stereo model (model.name=spikedhs-stereo)" in capsys.readouterr().err
    assert main(["train", "--dataset", "digits", "--model", "spikedhs-stereo", "--arch", ARCH, *common,
                 "--out", str(tmp_path / "b")]) == 2
    assert "stereo" in capsys.readouterr().err
    assert main(["train", "--dataset", "stereo-dots", "--model", "spikedhs-stereo", "--arch", ARCH, "--size", "12",
                 *common, "--out", str(tmp_path / "c")]) == 2
    assert "--augment none" in capsys.readouterr().err


def test_host_ops_count_the_matching_head_by_hand():
    from nasflow.snn.trellis import TrellisPathNet
    from nasflow.spaces.trellis import Trellis, parse_trellis_arch

    arch = parse_trellis_arch(ARCH)
    net = TrellisPathNet(arch.cell.nodes, arch.path, Trellis(2, 2, (3, 2)), (2, 12, 12), channels=2)
    model = SiameseStereo(net, (12, 12), (4, 4), disparities=8, upsample=2)
    ops = model.host_ops()
    # features at 4x4 (step 3), disparity levels ceil(7 / 3) + 1 = 4: C·h·Σ_d (w - d) = 2·4·(4 + 3 + 2 + 1) = 80
    assert model.levels == 4 and ops["cost_volume_macs"] == 80
    assert ops["upsample_macs"] == 4 * 4 * 144 and ops["estimator_comparisons"] == 3 * 144
    assert ops["estimator_exps"] == 3 * 144  # window 2·floor(4/3)+1 = 3 levels
    assert ops["feature_upsample_copies"] == 2 * 2 * 4 * 4  # both cameras' C·4x4 rates from level 1
    assert np.isfinite(list(ops.values())).all()
