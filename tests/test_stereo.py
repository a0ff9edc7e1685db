"""Event stereo (issue 15): the generated random-dot task, the MVSEC reader on a fixture in DDES's layout, and the
matching head (cost volume, PDS sub-pixel estimator and loss, metrics). Golden values are worked out by hand in the
comments; two are also the values of PDS's own unit tests (tlkvstepan/PracticalDeepStereo_NIPS2018, test/)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from _paths import ROOT
from PIL import Image

from nasflow.config import ConfigError
from nasflow.data import DatasetNotFoundError, dataset_spec, make_loaders
from nasflow.data.mvsec import MvsecStereoDataset, mvsec_split
from nasflow.data.stereo import (
    Layer,
    StereoDotsConfig,
    StereoDotsDataset,
    disparity_ground_truth,
    frame_events,
    random_scene,
    render_frames,
    render_view,
    stereo_dots_sample,
    stereo_events,
)
from nasflow.snn.stereo import (
    cost_volume,
    disparity_levels,
    disparity_metrics,
    matching_head_ops,
    mean_depth_error,
    mean_disparity_error,
    one_pixel_accuracy,
    subpixel_cross_entropy,
    subpixel_map,
    upsample_cost,
)

MVSEC_TINY = ROOT / "tests" / "golden" / "mvsec_tiny"
NAN = float("nan")

# --------------------------------------------------------------------------- generator: a scene checked by hand


def _tiny_scene() -> list[Layer]:
    """One row, 8 pixels: a background (disparity 0, brightness 10..17) and an object (disparity 2, brightness
    20..29 on its canvas) covering canvas columns 3..5."""
    background = Layer(0, np.arange(10, 18, dtype=np.float32)[None, :], np.ones((1, 8), dtype=bool))
    mask = np.zeros((1, 10), dtype=bool)
    mask[0, 3:6] = True
    return [background, Layer(2, np.arange(20, 30, dtype=np.float32)[None, :], mask)]


def test_tiny_scene_views_and_ground_truth_by_hand() -> None:
    layers = _tiny_scene()
    left, left_layer = render_view(layers, 1, 8, 0, "left")
    right, right_layer = render_view(layers, 1, 8, 0, "right")
    # left pixel x reads canvas x: the object covers x = 3..5
    assert left[0].tolist() == [10, 11, 12, 23, 24, 25, 16, 17] and left_layer[0].tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    # right pixel x reads the object's canvas at x + 2: covered for x = 1..3; the background (d = 0) at x
    assert right[0].tolist() == [10, 23, 24, 25, 14, 15, 16, 17]
    disparity, occluded = disparity_ground_truth(layers, 1, 8, 0)
    assert disparity[0].tolist() == [0, 0, 0, 2, 2, 2, 0, 0]
    # left pixels 1 and 2 show the background, whose right pixels 1 and 2 show the nearer object
    assert occluded[0].tolist() == [False, True, True, False, False, False, False, False]
    for x in range(8):  # every matched, unoccluded left pixel x is right pixel x - d
        d = int(disparity[0, x])
        assert (left[0, x] == right[0, x - d]) != bool(occluded[0, x])
    masked, _ = disparity_ground_truth(layers, 1, 8, 0, mask_occlusions=True)
    np.testing.assert_array_equal(masked[0], [0, NAN, NAN, 2, 2, 2, 0, 0])
    # a background at disparity 1: left pixel 0 would match right pixel -1, outside the image
    far, _ = disparity_ground_truth([Layer(1, np.ones((1, 4), np.float32), np.ones((1, 4), bool))], 1, 3, 0)
    np.testing.assert_array_equal(far[0], [NAN, 1, 1])


def test_motion_and_events_are_the_frame_differences_by_hand() -> None:
    # canvas [0, 1, 1, 0, 1, 0] moving right by one pixel per step, seen through 4 pixels from canvas column 1
    layer = Layer(0, np.array([[0, 1, 1, 0, 1, 0]], np.float32), np.ones((1, 6), bool), velocity=(0, 1), origin=(0, 1))
    frames = np.stack([render_view([layer], 1, 4, t)[0] for t in (0, 1)])
    assert frames[:, 0].tolist() == [[1, 1, 0, 1], [0, 1, 1, 0]]  # step 1 reads canvas columns 0..3
    events = frame_events(frames)
    assert events.shape == (1, 2, 1, 4)
    assert events[0, 0, 0].tolist() == [0, 0, 1, 0] and events[0, 1, 0].tolist() == [1, 0, 0, 1]  # ON, OFF
    with pytest.raises(ConfigError, match="N >= 1"):
        frame_events(frames[:1])


def test_generated_scene_matches_between_views_and_events_are_exact() -> None:
    config = StereoDotsConfig(height=24, width=24, disparities=6, steps=3, objects=(2, 3))
    frames = render_frames(random_scene(np.random.default_rng(7), config), 24, 24, 3)
    known = np.isfinite(frames.disparity)
    ys, xs = np.nonzero(known & ~frames.occluded)
    d = frames.disparity[ys, xs].astype(np.int64)
    assert len(ys) > 24 * 20 and len(set(d.tolist())) >= 2  # a background and at least one object
    np.testing.assert_array_equal(frames.left[-1, ys, xs], frames.right[-1, ys, xs - d])
    ny, nx = np.nonzero(~known)
    assert np.all(nx < config.disparities - 1)  # unknown only near the left border (x - d < 0)
    x = stereo_events(frames)
    assert x.shape == (3, 4, 24, 24) and set(np.unique(x)) <= {0.0, 1.0} and x.sum() > 0
    np.testing.assert_array_equal(x[:, 0] - x[:, 1], np.diff(frames.left, axis=0))
    np.testing.assert_array_equal(x[:, 2] - x[:, 3], np.diff(frames.right, axis=0))


def test_generated_samples_are_seeded_per_index() -> None:
    x, d = stereo_dots_sample(3, 11)
    assert x.shape == (6, 4, 48, 48) and d.shape == (48, 48) and x.dtype == d.dtype == torch.float32
    again = stereo_dots_sample(3, 11)
    assert torch.equal(x, again[0]) and torch.allclose(d, again[1], equal_nan=True)
    assert not torch.equal(x, stereo_dots_sample(3, 12)[0])
    assert not torch.equal(x, stereo_dots_sample(4, 11)[0])
    assert not torch.equal(x, stereo_dots_sample(3, 11, split="test")[0])
    values = d[torch.isfinite(d)]
    assert torch.equal(values, values.round()) and values.min() >= 0 and values.max() <= 7
    ds = StereoDotsDataset(20, seed=3)
    assert torch.equal(ds[11][0], x) and torch.equal(ds[-9][0], x) and ds.targets.tolist() == [0] * 20
    with pytest.raises(IndexError):
        ds[20]
    with pytest.raises(ConfigError, match="disparities"):
        StereoDotsConfig(disparities=1)


def test_stereo_dots_loaders_are_registered_and_reproducible() -> None:
    loaders = make_loaders("stereo-dots", 4, seed=5, val_split=0.2)
    spec = loaders.spec
    assert spec.kind == "stereo" and spec.disparities == 8 and spec.input_shape == (6, 4, 48, 48) and spec.binary
    assert (len(loaders.train.dataset), len(loaders.val.dataset), len(loaders.test.dataset)) == (3200, 800, 1000)
    x, d = next(iter(loaders.train))
    assert x.shape == (4, 6, 4, 48, 48) and d.shape == (4, 48, 48)
    x2, _ = next(iter(make_loaders("stereo-dots", 4, seed=5, val_split=0.2).train))
    assert torch.equal(x, x2)
    small = dataset_spec("stereo-dots", T=4, size=24)
    assert small.input_shape == (4, 4, 24, 24) and small.disparities == 8
    with pytest.raises(ValueError, match="stereo"):
        make_loaders("stereo-dots", 4, augment="standard")


# --------------------------------------------------------------------------- MVSEC on a fixture in DDES's layout


def test_mvsec_split_one_has_the_papers_sizes() -> None:
    train, val, test = (mvsec_split(1, part) for part in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (3110, 200, 861)  # SpikeDHS §5.2.1, split 1
    assert {s for s, _ in train} == {2, 3} and set(val).isdisjoint(test) and {s for s, _ in test} == {1}


def test_mvsec_reader_bins_the_fixture_by_hand() -> None:
    ds = MvsecStereoDataset(MVSEC_TINY / "mvsec", [(1, 140), (1, 141)], T=5)
    x, d = ds[0]
    assert x.shape == (5, 4, 260, 346) and d.shape == (260, 346)
    # window (7.00, 7.05] in 5 slices of 10 ms: offsets 5, 25, 45 and 50 ms fall in slices 0, 2, 4, 4;
    # the event 10 ms before the window is dropped
    expected = torch.zeros(5, 4, 260, 346)
    expected[0, 0, 10, 20] = 2  # left ON twice
    expected[2, 1, 10, 21] = 1  # left OFF
    expected[4, 0, 259, 345] = 1  # left ON, last sensor pixel
    expected[4, 1, 11, 22] = 1  # left OFF at exactly the frame time
    expected[0, 2, 10, 17] = 2  # right: the same events 3 pixels to the left
    expected[2, 3, 10, 18] = 1
    expected[4, 2, 259, 300] = 1
    expected[4, 3, 11, 19] = 1
    assert torch.equal(x, expected)
    # disparity x 7 in the PNG: 21 -> 3, 10 -> 10/7; 255 -> unknown
    assert torch.all(d[8:13, 18:24] == 3.0) and d[0, 0].item() == pytest.approx(10 / 7)
    assert int(torch.isfinite(d).sum()) == 5 * 6 + 1
    # two files of history: (6.95, 7.05] in 5 slices of 20 ms holds frame 140's and frame 141's events
    x2, d2 = MvsecStereoDataset(MVSEC_TINY / "mvsec", [(1, 141)], T=5, history=2)[0]
    assert x2[:, 0].sum(dim=(1, 2)).tolist() == [2, 0, 1, 1, 0]  # left ON at 5 ms (twice), 45 ms, 65 ms (frame 141)
    assert x2[3, 0, 20, 40] == 1 and x2[3, 2, 20, 38] == 1 and d2[20, 40].item() == 2.0


def test_mvsec_reader_resizes_events_and_scales_disparity() -> None:
    x, d = MvsecStereoDataset(MVSEC_TINY / "mvsec", [(1, 140)], T=5, size=(130, 173))[0]
    assert x.shape == (5, 4, 130, 173) and x[0, 0, 5, 10] == 2 and x[4, 0, 129, 172] == 1  # (y, x) // 2
    # nearest source pixel of (i, j) is (2i + 1, 2j + 1): rows 9, 11 and columns 19, 21, 23 hold disparity 3,
    # halved with the width
    assert torch.equal(torch.isfinite(d).nonzero()[:, 0].unique(), torch.tensor([4, 5]))
    assert torch.all(d[4:6, 9:12] == 1.5) and int(torch.isfinite(d).sum()) == 6
    assert dataset_spec("mvsec", size=(130, 173)).disparities == math.ceil(37 * 173 / 346) + 1


def test_mvsec_is_registered_and_loads_split_one_from_data_dir() -> None:
    with pytest.warns(UserWarning, match="timestamps.txt"):  # the fixture stops long before the split's frames
        loaders = make_loaders("mvsec", 2, data_dir=MVSEC_TINY, T=5)
    assert loaders.spec.kind == "stereo" and loaders.spec.disparities == 38
    assert loaders.train.dataset.items == [(2, 160), (3, 125)] and loaders.test.dataset.items == [(1, 140), (1, 141)]
    x, d = next(iter(loaders.test))
    assert x.shape == (2, 5, 4, 260, 346) and d.shape == (2, 260, 346)
    train = loaders.train.dataset
    x3, _ = train[1]  # indoor_flying_3 frame 125: its right event file is empty (shape (0,), as the converter saves)
    assert x3[:, :2].sum() == 2 and x3[:, 2:].sum() == 0


def test_mvsec_missing_files_name_the_path_and_the_layout(tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        make_loaders("mvsec", 2, data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "mvsec") in message
    assert all(part in message for part in ("indoor_flying_1/", "timestamps.txt", "event0/", "event1/",
                                            "disparity_image/", "255 = unknown", "convert_mvsec.py"))
    root = tmp_path / "copy"
    shutil.copytree(MVSEC_TINY / "mvsec", root)
    (root / "indoor_flying_1" / "disparity_image" / "000141.png").unlink()
    with pytest.raises(DatasetNotFoundError, match="000141.png") as info:
        MvsecStereoDataset(root, [(1, 140), (1, 141)])
    assert "disparity_image/000000.png" in str(info.value)


def test_mvsec_malformed_files_raise_config_errors_naming_them(tmp_path) -> None:
    root = tmp_path / "mvsec"
    shutil.copytree(MVSEC_TINY / "mvsec", root)
    events = root / "indoor_flying_1" / "event0" / "000140.npy"
    np.save(events, np.zeros((3, 3)))
    ds = MvsecStereoDataset(root, [(1, 140)])
    with pytest.raises(ConfigError, match=r"000140\.npy.*\[N, 4\]"):
        ds[0]
    np.save(events, np.array([[7.01, 400.0, 10.0, 1.0]]))  # x beyond the 346-pixel sensor
    with pytest.raises(ConfigError, match="sensor"):
        ds[0]
    np.save(events, np.zeros((0, 4)))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "indoor_flying_1" / "disparity_image" / "000140.png")
    with pytest.raises(ConfigError, match=r"000140\.png.*346x260"):
        ds[0]
    (root / "indoor_flying_1" / "timestamps.txt").write_text("# timestamp\nnot-a-number\n")
    with pytest.raises(ConfigError, match="timestamps.txt"):
        MvsecStereoDataset(root, [(1, 140)])


# --------------------------------------------------------------------------- matching head


def test_cost_volume_on_hand_made_features() -> None:
    left = torch.tensor([[[1.0, 2, 3, 4], [0, 1, 0, 1]]]).unsqueeze(2)  # [B=1, C=2, h=1, w=4]
    right = torch.tensor([[[2.0, 3, 4, 5], [1, 1, 1, 1]]]).unsqueeze(2)
    cost = cost_volume(left, right, 6)
    assert cost.shape == (1, 6, 1, 4)
    # d = 0: mean over channels of l(x) r(x): (1*2 + 0)/2, (2*3 + 1)/2, (3*4 + 0)/2, (4*5 + 1)/2
    assert cost[0, 0, 0].tolist() == [1.0, 3.5, 6.0, 10.5]
    # d = 1: l(x) r(x - 1), nothing at x = 0: 0, (2*2 + 1)/2, (3*3 + 0)/2, (4*4 + 1)/2
    assert cost[0, 1, 0].tolist() == [0.0, 2.5, 4.5, 8.5]
    assert cost[0, 3, 0].tolist() == [0.0, 0.0, 0.0, 4.5] and cost[0, 4:].abs().sum() == 0  # (4*2 + 1*1)/2; d >= w
    up = upsample_cost(torch.full((2, 5, 3, 4), 0.7), (6, 8))
    assert up.shape == (2, 5, 6, 8) and torch.allclose(up, torch.full_like(up, 0.7))
    assert disparity_levels(8, 1) == 8 and disparity_levels(8, 2) == 5 and disparity_levels(8, 4) == 3
    ops = matching_head_ops(2, (1, 4), 6, output_size=(2, 8))
    assert ops["cost_volume_macs"] == 2 * (4 + 3 + 2 + 1) and ops["upsample_macs"] == 4 * 6 * 16
    assert ops["estimator_exps"] == 6 * 16  # the window of ±4 levels is cut to the 6 levels there are


def test_subpixel_map_matches_the_formula_on_a_hand_made_cost() -> None:
    cost = torch.tensor([0.1, 0.4, 0.3, 0.2, 0.3]).view(1, 5, 1, 1)
    # best d* = 1; support 2 keeps d = 0..3 (d = 4 is 3 away): weights e^.1, e^.4, e^.3, e^.2
    w = [math.exp(v) for v in (0.1, 0.4, 0.3, 0.2)]
    by_hand = sum(d * wd for d, wd in enumerate(w)) / sum(w)  # = 7.85575 / 5.16825 = 1.52000
    assert subpixel_map(cost, support=2.0).item() == pytest.approx(by_hand, abs=1e-6)
    assert by_hand == pytest.approx(1.52, abs=1e-4)  # PDS test_estimator.py, half_support_window=2, step 1
    # level k means disparity 2k: the window |2k - 2| <= 2 keeps k = 0, 1, 2 -> (2 e^.4 + 4 e^.3) / (e^.1 + e^.4 + e^.3)
    assert subpixel_map(cost, support=2.0, disparity_step=2.0).item() == pytest.approx(2.124, abs=1e-4)
    # a second mode outside the window is ignored; a soft-argmin over all levels would land between the modes
    two_modes = torch.tensor([5.0, 0, 0, 0, 0, 0, 0, 4.9]).view(1, 8, 1, 1)
    near = subpixel_map(two_modes, support=1.0).item()
    assert near == pytest.approx(math.exp(0) / (math.exp(5) + math.exp(0)), abs=1e-6)  # d = 0 and d = 1 only
    assert (torch.softmax(two_modes, 1).view(-1) * torch.arange(8)).sum() > 3


def test_subpixel_cross_entropy_by_hand_and_its_minimum() -> None:
    # p = softmax(0, ln 2) = (1/3, 2/3); Laplace at 0.5 weighs d = 0 and d = 1 equally: L = -(ln 1/3 + ln 2/3) / 2
    cost = torch.tensor([0.0, math.log(2.0)]).view(1, 2, 1, 1)
    loss = subpixel_cross_entropy(cost, torch.tensor([[[0.5]]]), diversity=1.0)
    assert loss.item() == pytest.approx(0.5 * math.log(4.5), abs=1e-6)
    # PDS test_loss.py: the second pixel's disparity is unknown (inf) and left out
    pds = torch.tensor([[0.1, 0.3, 0.2, 0.05], [0.2, 0.1, 0.4, 0.0]]).view(2, 4, 1, 1)
    truth = torch.tensor([1.3, float("inf")]).view(2, 1, 1)
    assert subpixel_cross_entropy(pds, truth, diversity=2.0).item() == pytest.approx(1.3654, abs=1e-3)
    assert subpixel_cross_entropy(pds, torch.tensor([1.3, NAN]).view(2, 1, 1), 2.0) == pytest.approx(1.3654, abs=1e-3)
    # over peaked costs, the loss is smallest when the peak sits on the level nearest the ground truth 2.3
    losses = [subpixel_cross_entropy(torch.eye(6)[k].view(1, 6, 1, 1) * 4, torch.tensor([[[2.3]]])).item()
              for k in range(6)]
    assert int(np.argmin(losses)) == 2
    # and its minimum over all costs is the Laplace target itself: zero gradient there
    target = torch.softmax(-(torch.arange(6.0) - 2.3).abs(), 0).log().view(1, 6, 1, 1).requires_grad_(True)
    subpixel_cross_entropy(target, torch.tensor([[[2.3]]])).backward()
    assert target.grad.abs().max() < 1e-6
    empty = torch.zeros(1, 3, 1, 1, requires_grad=True)
    nothing = subpixel_cross_entropy(empty, torch.tensor([[[NAN]]]))
    nothing.backward()
    assert nothing.item() == 0.0


def test_disparity_metrics_on_hand_made_predictions() -> None:
    prediction = torch.tensor([[[1.0, 2.5], [4.0, 3.0]]])
    target = torch.tensor([[[1.5, NAN], [2.0, 2.0]]])
    # known errors 0.5, 2.0, 1.0: mean 3.5 / 3; within one pixel (|e| <= 1): 2 of 3
    assert mean_disparity_error(prediction, target).item() == pytest.approx(3.5 / 3)
    assert one_pixel_accuracy(prediction, target).item() == pytest.approx(2 / 3)
    assert disparity_metrics(prediction, target)["known_pixels"] == 3
    # depth = 6 / disparity: |6/1 - 6/1.5| = 2, |6/4 - 6/2| = 1.5, |6/3 - 6/2| = 1
    assert mean_depth_error(prediction, target, 6.0).item() == pytest.approx(4.5 / 3, abs=1e-5)
    assert math.isnan(mean_disparity_error(prediction, torch.full_like(target, NAN)).item())


def test_noise_adds_unmatched_events_only_and_stays_seeded():
    from nasflow.data.stereo import StereoDotsConfig, stereo_dots_sample

    clean_x, clean_d = stereo_dots_sample(3, 7, StereoDotsConfig(height=16, width=16, disparities=4, steps=3))
    cfg = StereoDotsConfig(height=16, width=16, disparities=4, steps=3, noise=0.2)
    x, d = stereo_dots_sample(3, 7, cfg)
    again, _ = stereo_dots_sample(3, 7, cfg)
    assert torch.equal(x, again)
    assert torch.equal(torch.nan_to_num(d, nan=-1.0), torch.nan_to_num(clean_d, nan=-1.0))  # the same scene
    assert bool((x >= clean_x).all()) and set(x.unique().tolist()) <= {0.0, 1.0}
    added = float((x - clean_x).sum()) / float((clean_x == 0).sum())
    assert 0.15 < added < 0.25  # about a fraction `noise` of the silent places fire
    with pytest.raises(ConfigError, match="noise is a probability"):
        StereoDotsConfig(noise=1.0)
