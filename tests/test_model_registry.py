"""Every registered model, at tiny size: build → ``to_nir`` → the NIR graph on the torch reference spikes exactly
like the torch model on the same input (analog direct coding and binary events), and ``hw_report`` maps it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from exporters.equivalence import compare_activity, neuron_nodes
from exporters.nir_export import to_nir
from exporters.nir_torch import simulate
from hwmodels import hw_report
from nasflow.models import create_model, list_models
from nasflow.snn.neurons import Neuron

T, B = 4, 2
TINY = dict(in_shape=(1, 8, 8), num_classes=4, channels=4, steps=T, vote=2)
OVERRIDES = {
    "snasnet": dict(hidden=16, second_pool=2),  # a 16-neuron classifier, one pool step on 8x8
    # stereo frames (4, H, W); the chip runs the features of one camera, (2, H, W)
    "spikedhs-stereo": dict(in_shape=(4, 12, 12), layers=2, levels=2, channels=2,
                            arch="paper:cell=conv3x3@1+skip@0,conv5x5@2+skip@1,conv3x3@3+skip@2;path=0,1"),
}


def _liven(model: nn.Module) -> nn.Module:
    """Eval-mode BN statistics and stronger linear layers that make every layer fire (untrained nets are silent);
    float64, so that float rounding cannot flip a spike between the two simulations."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.6 - 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.1 + 0.05)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) + 0.2)
            elif isinstance(m, nn.Linear):
                m.weight.mul_(8.0)
    return model.double().eval()


def _torch_spikes(model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every neuron module's output ``[T, B, ...]`` (a recurrent cell calls its neurons once per step)."""
    rec: dict[str, list[torch.Tensor]] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: rec.setdefault(n, []).append(o.detach()))
             for n, m in model.named_modules() if isinstance(m, Neuron)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.cat(v).numpy() for n, v in rec.items()}


@pytest.mark.parametrize("encoding", ["direct", "events"])
@pytest.mark.parametrize("name", list_models())
def test_registered_model_exports_simulates_identically_and_maps(name: str, encoding: str) -> None:
    torch.manual_seed(0)
    event = encoding == "events"
    model = _liven(create_model(name, **{**TINY, **OVERRIDES.get(name, {})}, event_input=event))
    chip = model.chip_network() if hasattr(model, "chip_network") else model
    in_shape = tuple(chip.in_shape)
    gen = torch.Generator().manual_seed(1)
    if event or chip is not model:  # a stereo model's features take event frames [T, B, 2, H, W]
        x = (torch.rand(T, B, *in_shape, generator=gen, dtype=torch.float64) < 0.5).double()
        xs = x.numpy()
    else:
        x = torch.rand(B, *in_shape, generator=gen, dtype=torch.float64) * 3
        xs = np.broadcast_to(x.numpy(), (T, *x.shape)).copy()  # direct coding: the image at every step

    graph = to_nir(model)
    ref = _torch_spikes(chip, x)
    act = simulate(graph, xs)
    assert sorted(neuron_nodes(graph)) == sorted(ref), "every neuron module is one NIR neuron node"
    report = compare_activity(ref, act, nodes=graph)
    assert report["min_precision"] == 1.0 and report["min_recall"] == 1.0, {
        k: v for k, v in report["nodes"].items() if v["precision"] < 1 or v["recall"] < 1}
    silent = [n for n, v in ref.items() if not v.any()]
    assert not silent, f"too little activity to test: {silent} never spike"

    hw = hw_report(graph, "loihi", activity={k: np.asarray(v) for k, v in act.items()})
    assert hw.cores_used > 0 and hw.spikes_per_sample > 0
