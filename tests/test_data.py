"""nasflow.data: digits split, event encoding, registry errors, real loaders on tiny fake files, augmentation,
and seeded loaders. Nothing here downloads; fake datasets are written to tmp_path in the real on-disk formats."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nasflow.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Compose,
    Cutout,
    DatasetNotFoundError,
    DatasetSpec,
    RandomCrop,
    RandomHorizontalFlip,
    dataset_spec,
    dataset_targets,
    get_dataset,
    list_datasets,
    load_digits_split,
    make_loaders,
    rate_encode,
    split_train_val,
    to_time_first,
)

# --------------------------------------------------------------------------- digits (REFERENCE §9)


def test_digits_split_shapes_ranges_and_balance() -> None:
    x_tr, y_tr, x_te, y_te = load_digits_split()
    assert x_tr.shape == (1437, 1, 8, 8) and x_te.shape == (360, 1, 8, 8)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64 and y_te.dtype == torch.int64
    assert float(x_tr.min()) == 0.0 and float(x_tr.max()) == 1.0
    # pixel / 16: every value is a multiple of 1/16
    assert torch.equal(x_te * 16, (x_te * 16).round())
    total = torch.bincount(torch.cat([y_tr, y_te]), minlength=10)
    test = torch.bincount(y_te, minlength=10)
    assert total.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # load_digits' class sizes
    assert torch.all((test.float() - 0.2 * total.float()).abs() <= 1.0)  # stratified


def test_digits_split_is_identical_across_calls() -> None:
    a, b = load_digits_split(), load_digits_split()
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    a.x_train.zero_()  # fresh tensors: mutating one result does not leak into the next
    assert float(load_digits_split().x_train.max()) == 1.0
    # get_dataset's digits are the same split, in the same order
    ds, spec = get_dataset("digits", split="test")
    x0, y0 = ds[0]
    assert spec.input_shape == (1, 8, 8) and spec.kind == "static" and spec.T is None
    assert torch.equal(x0, b.x_test[0]) and y0 == int(b.y_test[0]) and len(ds) == 360


def test_split_train_val_disjoint_stratified_and_seeded() -> None:
    ds, _ = get_dataset("digits", split="train")
    tr, va = split_train_val(ds, ratio=0.8, seed=0)
    assert set(tr.indices).isdisjoint(va.indices) and len(tr) + len(va) == len(ds)
    labels = dataset_targets(ds)
    per_class = np.bincount(labels, minlength=10)
    val_counts = np.bincount(labels[va.indices], minlength=10)
    assert np.all(np.abs(val_counts - 0.2 * per_class) <= 1.0)
    assert torch.equal(va.targets, torch.as_tensor(labels[va.indices]))
    assert split_train_val(ds, 0.8, seed=0)[1].indices == va.indices
    assert split_train_val(ds, 0.8, seed=1)[1].indices != va.indices
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_train_val(ds, ratio=1.0)


# --------------------------------------------------------------------------- event encoding


def test_digits_events_deterministic_binary_and_rate_matches_intensity() -> None:
    a, spec = get_dataset("digits-events", split="train", T=8)
    b, _ = get_dataset("digits-events", split="train", T=8)
    assert spec.kind == "event" and spec.input_shape == (8, 1, 8, 8) and spec.T == 8 and spec.binary
    x = torch.stack([a[i][0] for i in range(len(a))])
    assert x.shape == (1437, 8, 1, 8, 8) and x.dtype == torch.float32
    assert torch.equal(x, torch.stack([b[i][0] for i in range(len(b))]))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    static = load_digits_split().x_train
    assert [a[i][1] for i in range(5)] == load_digits_split().y_train[:5].tolist()
    # per pixel, 1437 x 8 Bernoulli draws: the rate is the mean intensity within ~6 standard deviations (0.005)
    rate, intensity = x.mean(dim=(0, 1)), static.mean(dim=0)
    assert float((rate - intensity).abs().max()) < 0.03
    assert torch.all(x[static.unsqueeze(1).expand_as(x) == 0] == 0)  # black pixels never fire
    other = get_dataset("digits-events", split="train", T=8, encoding_seed=1).dataset
    assert not torch.equal(other[0][0], a[0][0])


def test_rate_encode_statistics() -> None:
    p = torch.tensor([0.0, 0.25, 0.5, 1.0])
    g = torch.Generator().manual_seed(0)
    s = rate_encode(p, 4000, generator=g)
    assert s.shape == (4000, 4)
    assert torch.allclose(s.mean(0), p, atol=0.03)
    again = [rate_encode(p, 10, torch.Generator().manual_seed(5)) for _ in "ab"]
    assert torch.equal(again[0], again[1])
    assert rate_encode(torch.rand(3, 2), 5, time_dim=1).shape == (3, 5, 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rate_encode(torch.tensor([1.5]), 2)
    assert to_time_first(torch.zeros(4, 7, 1, 8, 8)).shape == (7, 4, 1, 8, 8)


# --------------------------------------------------------------------------- registry and errors


@pytest.mark.parametrize(
    ("name", "folder", "url_part"),
    [
        ("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz"),
        ("nmnist", "NMNIST", "n-mnist"),
        ("dvs128-gesture", "DVSGesture", "figshare.com"),
        ("cifar10-dvs", "CIFAR10DVS", "figshare.com"),
    ],
)
def test_missing_files_say_what_to_download_and_where(tmp_path: Path, name: str, folder: str, url_part: str) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        get_dataset(name, data_dir=tmp_path, split="train")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / folder) in message and url_part in message and "--data-dir" in message
    assert name in message and info.value.path == tmp_path / folder


def test_partially_present_dataset_names_the_missing_file(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DatasetNotFoundError, match="test_batch"):
        get_dataset("cifar10", data_dir=tmp_path, split="train")
    (tmp_path / "NMNIST" / "Train" / "3").mkdir(parents=True)  # folders without any .bin file
    with pytest.raises(DatasetNotFoundError, match=r"no \.bin files"):
        get_dataset("nmnist", data_dir=tmp_path)


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(ValueError, match="did you mean 'cifar10'") as info:
        get_dataset("cifar-10")
    assert all(name in str(info.value) for name in list_datasets())
    assert set(list_datasets()) >= {"digits", "digits-events", "cifar10", "cifar100", "svhn", "tiny-imagenet",
                                    "dvs128-gesture", "nmnist", "cifar10-dvs"}  # fmt: skip
    with pytest.raises(ValueError, match="split"):
        get_dataset("digits", split="val")


def test_dataset_spec_options_and_round_trip() -> None:
    spec = dataset_spec("dvs128-gesture", T=10, size=32)
    assert spec.input_shape == (10, 2, 32, 32) and spec.num_classes == 11 and spec.image_shape == (2, 32, 32)
    assert DatasetSpec.from_dict(spec.to_dict()) == spec
    assert dataset_spec("cifar10", T=8).input_shape == (3, 32, 32)  # static data: T belongs to the model
    assert dataset_spec("nmnist", binarize=True).binary and not dataset_spec("nmnist").binary
    with pytest.raises(ValueError, match="size"):
        dataset_spec("cifar10", size=16)
    with pytest.raises(ValueError, match="T="):
        DatasetSpec("x", "event", (3, 1, 8, 8), 10, 4, True, "s", "u", "")


# --------------------------------------------------------------------------- real loaders on tiny fake files


def _write_cifar10(root: Path, per_batch: int = 4) -> np.ndarray:
    """CIFAR-10 python pickle batches in torchvision's layout; returns the test images [N, 32, 32, 3]."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    test_images = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)  # rows: R plane, G plane, B plane
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        if name == "test_batch":
            test_images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}, f)
    assert test_images is not None
    return test_images


def test_cifar10_reads_torchvision_pickles(tmp_path: Path) -> None:
    images = _write_cifar10(tmp_path)
    train, spec = get_dataset("cifar10", data_dir=tmp_path, split="train")
    test, _ = get_dataset("cifar10", data_dir=tmp_path, train=False)
    assert len(train) == 20 and len(test) == 4 and spec.input_shape == (3, 32, 32) and spec.hflip
    x, y = test[1]
    expected = (torch.from_numpy(images[1].astype(np.float32) / 255).permute(2, 0, 1) - torch.tensor(CIFAR10_MEAN)
                .view(3, 1, 1)) / torch.tensor(CIFAR10_STD).view(3, 1, 1)  # fmt: skip
    assert x.shape == (3, 32, 32) and torch.allclose(x, expected, atol=1e-6) and 0 <= y < 10
    loaders = make_loaders("cifar10", 8, data_dir=tmp_path, augment="cutout")
    xb, yb = next(iter(loaders.train))
    assert xb.shape == (8, 3, 32, 32) and yb.shape == (8,)


def test_svhn_reads_mat_files(tmp_path: Path) -> None:
    from scipy.io import savemat

    (tmp_path / "svhn").mkdir()
    x = np.random.default_rng(1).integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": x, "y": np.array([[10], [1], [2], [10], [9]], np.uint8)})
    ds, spec = get_dataset("svhn", data_dir=tmp_path, split="test")
    assert len(ds) == 5 and dataset_targets(ds).tolist() == [0, 1, 2, 0, 9] and ds[0][0].shape == (3, 32, 32)
    with pytest.raises(DatasetNotFoundError, match="train_32x32.mat"):
        get_dataset("svhn", data_dir=tmp_path, split="train")


def test_tiny_imagenet_image_folders(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(200)]
    image = Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    for wnid in wnids:
        (root / "train" / wnid / "images").mkdir(parents=True)
        image.save(root / "train" / wnid / "images" / f"{wnid}_0.JPEG")
    (root / "val" / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "val" / "images" / "val_0.JPEG")  # grayscale file
    (root / "val" / "val_annotations.txt").write_text(f"val_0.JPEG\t{wnids[199]}\t0\t0\t63\t63\n")
    train, spec = get_dataset("tiny-imagenet", data_dir=tmp_path)
    assert dataset_targets(train).tolist() == list(range(200)) and spec.num_classes == 200
    assert train[5][0].shape == (3, 64, 64)
    test, _ = get_dataset("tiny-imagenet", data_dir=tmp_path, split="test")
    x, y = test[0]
    assert x.shape == (3, 64, 64) and y == 199


def _write_nmnist_bin(path: Path, rng: np.random.Generator, n: int) -> None:
    """N-MNIST's 40-bit events: x, y, polarity bit + 23-bit timestamp (µs)."""
    x, y, p = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 300_000, n))
    raw = np.stack([x, y, (p << 7) | ((t >> 16) & 127), (t >> 8) & 255, t & 255], axis=1).astype(np.uint8)
    raw.tofile(path)


def test_nmnist_and_dvs_gesture_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for digit in range(10):
        (tmp_path / "NMNIST" / "Test" / str(digit)).mkdir(parents=True)
        _write_nmnist_bin(tmp_path / "NMNIST" / "Test" / str(digit) / "00001.bin", rng, 200)
    ds, spec = get_dataset("nmnist", data_dir=tmp_path, split="test", T=4)
    assert len(ds) == 10 and dataset_targets(ds).tolist() == list(range(10))
    x, y = ds[3]
    assert x.shape == (4, 2, 34, 34) == spec.input_shape and y == 3 and float(x.sum()) == 200.0

    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent"
    folder.mkdir(parents=True)
    for label in (2, 0, 1):  # columns x, y, p, t (ms)
        n = 300
        ev = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                       np.sort(rng.integers(0, 5000, n))], axis=1)  # fmt: skip
        np.save(folder / f"{label}.npy", ev.astype(np.int64))
    gest, gspec = get_dataset("dvs128-gesture", data_dir=tmp_path, T=5, size=32, binarize=True)
    assert dataset_targets(gest).tolist() == [0, 1, 2]  # sorted by file, whatever the file system's order
    x, _ = gest[0]
    assert x.shape == (5, 2, 32, 32) == gspec.input_shape and set(x.unique().tolist()) <= {0.0, 1.0}
    assert float(get_dataset("dvs128-gesture", data_dir=tmp_path, T=5, size=32).dataset[0][0].sum()) == 300.0


@pytest.mark.allow_skip
@pytest.mark.skipif(importlib.util.find_spec("aedat") is not None,
                    reason="aedat is installed: the missing-aedat message cannot show")
def test_cifar10_dvs_without_aedat_says_what_to_install(tmp_path: Path) -> None:
    for name in ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]:
        (tmp_path / "CIFAR10DVS" / name).mkdir(parents=True)
        (tmp_path / "CIFAR10DVS" / name / "cifar10_0.aedat4").write_bytes(b"")
    with pytest.raises(ModuleNotFoundError, match="pip install aedat"):
        get_dataset("cifar10-dvs", data_dir=tmp_path)


# --------------------------------------------------------------------------- augmentation


def test_random_crop_and_flip() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)  # an event sample [T, C, H, W]
    g = torch.Generator().manual_seed(0)
    out = RandomCrop(8, padding=2, fill=(-1.0, -2.0, -3.0))(x, g)
    assert out.shape == x.shape
    y = torch.stack([x[0], x[0]])
    out = RandomCrop(6, padding=1)(y, g)
    assert out.shape == (2, 3, 6, 6) and torch.equal(out[0], out[1])  # one draw for every time step
    padded = RandomCrop((12, 12), padding=2, fill=(-1.0, -2.0, -3.0))(x, g)  # the whole padded image
    assert padded[:, :, 0, 0].tolist() == [[-1.0, -2.0, -3.0]] * 2 and torch.equal(padded[..., 2:10, 2:10], x)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(x, g), x.flip(-1))
    assert torch.equal(RandomHorizontalFlip(p=0.0)(x, g), x)
    run = [Compose([RandomCrop(8, 4), RandomHorizontalFlip()])(x, torch.Generator().manual_seed(3)) for _ in "ab"]
    assert torch.equal(run[0], run[1])


def test_cutout_zeroes_a_square() -> None:
    x = torch.ones(3, 16, 16)
    exact = 0
    for seed in range(20):
        out = Cutout(n_holes=1, length=4)(x, torch.Generator().manual_seed(seed))
        zero = out == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])  # same square on every channel
        rows, cols = zero[0].any(1).nonzero().flatten(), zero[0].any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert 1 <= h <= 4 and 1 <= w <= 4 and int(zero[0].sum()) == h * w  # a (border-clipped) rectangle
        assert torch.equal(rows, torch.arange(int(rows[0]), int(rows[0]) + h))
        exact += h == w == 4
        assert torch.all(out[~zero] == 1)
    assert exact > 10  # most centres lie away from the border: a full 4x4 square


# --------------------------------------------------------------------------- loaders


def _batches(loader: torch.utils.data.DataLoader, n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [b for _, b in zip(range(n), loader)]


def test_loaders_are_deterministic_for_a_seed() -> None:
    torch.set_num_threads(1)
    a = make_loaders("digits", 64, seed=7, augment="cutout", val_split=0.2)
    b = make_loaders("digits", 64, seed=7, augment="cutout", val_split=0.2)
    assert a.val is not None and len(a.train.dataset) + len(a.val.dataset) == 1437 and len(a.test.dataset) == 360
    state = torch.get_rng_state()
    first = _batches(a.train)
    assert torch.equal(state, torch.get_rng_state())  # loaders do not consume the global RNG
    for (xa, ya), (xb, yb) in zip(first, _batches(b.train)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    second_epoch = _batches(a.train)
    assert not torch.equal(first[0][1], second_epoch[0][1])  # a new order each epoch
    other = _batches(make_loaders("digits", 64, seed=8).train)
    assert not torch.equal(first[0][1], other[0][1])
    assert (first[0][0] == 0).any()  # cutout applied to training batches
    assert torch.equal(next(iter(a.test))[1], load_digits_split().y_test[:64])  # test order is fixed


def test_loaders_events_and_workers() -> None:
    loaders = make_loaders("digits-events", 32, seed=0, T=4)
    x, y = next(iter(loaders.train))
    assert x.shape == (32, 4, 1, 8, 8) and loaders.spec.T == 4 and loaders.val is None
    # with a worker process, augmentation is reseeded from the loader's generator: still reproducible
    runs = [make_loaders("digits", 256, seed=1, augment="cutout", num_workers=1).train for _ in "ab"]
    epochs = [[next(iter(loader))[0] for _ in "12"] for loader in runs]
    assert torch.equal(epochs[0][0], epochs[1][0]) and torch.equal(epochs[0][1], epochs[1][1])
    assert not torch.equal(epochs[0][0], epochs[0][1])
    augmented = runs[0].dataset  # picklable for "spawn" workers, generator state included
    assert torch.equal(pickle.loads(pickle.dumps(augmented))[7][0], augmented[7][0])
    with pytest.raises(ValueError, match="held-out fraction"):
        make_loaders("digits", 32, val_split=0.0)
    with pytest.raises(ValueError, match="augment"):
        make_loaders("digits", 32, augment="heavy")
