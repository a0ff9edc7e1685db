"""Weight-sharing supernet: paths, extraction of standalone networks, validation."""

from __future__ import annotations

import random

import pytest
import torch

from nasflow.train.supernet import AutoSNNSupernet, sample_path


def test_extracted_network_reproduces_the_supernet_path() -> None:
    torch.manual_seed(0)
    supernet = AutoSNNSupernet(in_shape=(1, 8, 8), channels=4, steps=3).eval()
    x = torch.rand(5, 1, 8, 8)
    rng = random.Random(0)
    for _ in range(4):
        arch = sample_path(rng)
        supernet.set_path(arch)
        net = supernet.extract(arch).eval()
        assert net.arch == arch
        assert torch.equal(supernet(x), net(x))
        # Only the active blocks' weights travel: the standalone net is much smaller.
        assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in supernet.parameters())


def test_weights_are_shared_between_paths() -> None:
    supernet = AutoSNNSupernet(in_shape=(1, 8, 8), channels=4, steps=2)
    a = supernet.extract("SCB_k3,skip,skip,skip,skip")
    b = supernet.extract("SCB_k3,SRB_k5,skip,skip,skip")
    assert torch.equal(a.features[0].conv1.module[0].weight, b.features[0].conv1.module[0].weight)


def test_bad_paths_are_rejected_by_name() -> None:
    supernet = AutoSNNSupernet(in_shape=(1, 8, 8), channels=4, steps=2, choices=("skip", "SCB_k3"))
    with pytest.raises(ValueError, match="SRB_k5"):
        supernet.set_path("SRB_k5,skip,skip,skip,skip")
    with pytest.raises(ValueError, match="has 3 blocks"):
        supernet.set_path("skip,skip,skip")


def test_interrupted_supernet_training_resumes_exactly(tmp_path) -> None:
    from nasflow.data import make_loaders
    from nasflow.train.checkpoint import load_checkpoint
    from nasflow.train.supernet import train_supernet

    def setup():
        torch.manual_seed(0)
        net = AutoSNNSupernet(in_shape=(1, 8, 8), channels=4, steps=2)
        return net, make_loaders("digits", 256, seed=1, augment="standard", val_split=0.2).train

    net, loader = setup()
    straight = train_supernet(net, loader, 3, lr=5e-3, seed=1, progress=False, schedule="cosine")

    class Stop(Exception):
        pass

    def stop(epoch):
        if epoch == 0:
            raise Stop

    ckpt = tmp_path / "supernet.pt"
    first, loader = setup()
    with pytest.raises(Stop):
        train_supernet(first, loader, 3, lr=5e-3, seed=1, progress=False, schedule="cosine", checkpoint=ckpt,
                       checkpoint_meta={"kind": "supernet"}, on_epoch=stop)
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 1 and state["complete"] is False
    resumed, loader = setup()
    resumed.load_state_dict(state["state_dict"])
    costs = train_supernet(resumed, loader, 3, lr=5e-3, seed=1, progress=False, schedule="cosine",
                           resume_state=state)
    assert costs == pytest.approx(straight, rel=1e-12)
    for (name, a), b in zip(net.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
