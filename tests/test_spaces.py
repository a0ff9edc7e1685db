"""AutoSNN macro variants (SNN_1..4, enlarged 8-TBD spaces), deeper stems and SIB blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasflow.models import AutoSNNNet, build_model, load_model, save_model
from nasflow.snn.blocks import NeuronSpec, SpikingInvertedBottleneck, make_block
from nasflow.snn.layers import SpikingAvgPool2d, SpikingMaxPool2d
from nasflow.snn.neurons import Neuron
from nasflow.spaces.autosnn import (
    BLOCK_CHOICES,
    EXTENDED_CHOICES,
    MACROS,
    Macro,
    num_blocks,
    parse_arch,
    search_space_size,
)

C = 2  # tiny initial channel count


def _net(macro: str, arch: str = "all-SCB_k3", size: int = 8, **kw) -> AutoSNNNet:
    torch.manual_seed(0)
    return AutoSNNNet(arch=arch, in_shape=(1, size, size), channels=C, steps=2, macro=macro, **kw)


def _neurons(model: nn.Module, x: torch.Tensor) -> int:
    """Spiking neurons per sample (output elements of every neuron module for one step, one sample)."""
    counts: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: counts.append(out[0, 0].numel()))
             for m in model.modules() if isinstance(m, Neuron)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return sum(counts)


def _pool_types(net: AutoSNNNet) -> list[type]:
    return [type(m) for m in net.features if isinstance(m, SpikingMaxPool2d)]


@pytest.mark.parametrize("macro", list(MACROS))
def test_every_macro_builds_and_runs(macro: str) -> None:
    net = _net(macro, size=16).eval()
    out = net(torch.rand(3, 1, 16, 16))
    assert out.shape == (3, 10)
    assert len(net.arch) == num_blocks(macro)


def test_block_counts_and_search_space_sizes() -> None:
    assert num_blocks() == num_blocks("snn1") == 5
    assert [num_blocks(m) for m in ("snn2", "snn3", "snn4", "snn1-8tbd")] == [5, 8, 5, 8]
    assert search_space_size("snn1") == 5**5 == 3125
    assert search_space_size("snn3") == search_space_size("snn1-8tbd") == 5**8 == 390_625
    assert search_space_size("snn1", EXTENDED_CHOICES) == 11**5
    assert MACROS["snn1"].layout(16) == "[16, M, 32, 32, M, 64, 64, M]"
    assert MACROS["snn1-8tbd"].layout(1) == "[1, 1, M, 2, 2, 2, M, 4, 4, 4, M]"
    with pytest.raises(ValueError, match="unknown macro"):
        num_blocks("snn9")
    with pytest.raises(ValueError, match="downsample"):
        Macro("bad", (1, "M"), downsample="conv")


def test_snn2_has_gap_before_fc() -> None:
    net = _net("snn2")
    assert net.gap is not None
    assert net.fc.module.in_features == 4 * C
    assert _net("snn1").fc.module.in_features == 4 * C * 2 * 2  # 8 → 4 → 2, no GAP


def test_snn3_downsamples_with_tbd_blocks() -> None:
    net = _net("snn3", size=16)
    assert _pool_types(net) == []
    assert len(net.arch) == 8 and len(net.features) == 8
    strides = [m.conv1.module[0].stride for m in net.features]
    assert strides == [(1, 1), (2, 2), (1, 1), (1, 1), (2, 2), (1, 1), (1, 1), (2, 2)]
    assert net.fc.module.in_features == 4 * C * 2 * 2  # 16 → 2
    # skip at a down-sampling slot: conv1x1 stride 2 + BN + neuron, even without a channel change.
    skip = _net("snn3", arch="SCB_k3,skip,SCB_k3,SCB_k3,skip,SCB_k3,SCB_k3,skip", size=16).features[1]
    assert skip.proj.module[0].stride == (2, 2) and skip.proj.module[0].kernel_size == (1, 1)
    assert isinstance(skip.sn, Neuron)


def test_snn4_uses_avg_pools_and_snn1_max_pools() -> None:
    assert _pool_types(_net("snn4", size=16)) == [SpikingAvgPool2d] * 3
    assert _pool_types(_net("snn1", size=16)) == [SpikingMaxPool2d] * 3
    assert _pool_types(_net("snn1")) == [SpikingMaxPool2d] * 2  # 8x8 digits: the last pool is dropped
    assert _pool_types(_net("snn1-8tbd")) == [SpikingMaxPool2d] * 2


def test_neuron_counts_by_hand_snn1_vs_snn3() -> None:
    x = torch.rand(1, 1, 8, 8)
    fc = 10 * 10  # vote · classes
    # SNN_1, all SCB_k3, 8x8: stem C·64; [C@8x8] M [2C, 2C @4x4] M [4C, 4C @2x2] (last M dropped).
    snn1 = C * 64 + 2 * C * 64 + 2 * (2 * 2 * C * 16) + 2 * (2 * 4 * C * 4) + fc
    assert _neurons(_net("snn1").eval(), x) == snn1 == 868
    # SNN_3: the down-sampling slots are SCB_k3 blocks (stride 2, then the third one at stride 1).
    snn3 = snn1 + 2 * C * 16 + 2 * 2 * C * 4 + 2 * 4 * C * 4
    assert _neurons(_net("snn3").eval(), x) == snn3 == 1028


def test_sib_block_shape_and_neuron_count() -> None:
    spec = NeuronSpec()
    block = make_block("SIB_k3_e3", 4, 5, spec)
    assert isinstance(block, SpikingInvertedBottleneck)
    assert block.dw.module[0].groups == 12 and block.dw.module[0].kernel_size == (3, 3)
    x = (torch.rand(2, 3, 4, 8, 8) > 0.5).float()
    with torch.no_grad():
        assert block.eval()(x).shape == (2, 3, 5, 8, 8)
    assert _neurons(block, x) == 12 * 64 + 12 * 64 + 5 * 64
    down = make_block("SIB_k5_e1", 4, 4, spec, stride=2).eval()
    with torch.no_grad():
        assert down(x).shape == (2, 3, 4, 4, 4)
    assert _neurons(down, x) == 4 * 64 + 4 * 16 + 4 * 16
    # Trains through the fused BN+neuron path (depthwise and strided convs).
    block.train()
    block(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters() if p.requires_grad)


def test_sib_in_architectures_only_with_the_extended_choices() -> None:
    arch = "SIB_k3_e1,skip,SIB_k5_e6,SCB_k3,SRB_k5"
    with pytest.raises(ValueError, match="unknown block"):
        parse_arch(arch)
    assert parse_arch(arch, choices=EXTENDED_CHOICES)[0] == "SIB_k3_e1"
    assert parse_arch("all-SIB_k3_e3", 8, EXTENDED_CHOICES) == ("SIB_k3_e3",) * 8
    assert "SIB_k3_e3" not in BLOCK_CHOICES
    out = _net("snn1", arch=arch).eval()(torch.rand(2, 1, 8, 8))
    assert out.shape == (2, 10)


def test_wrong_arch_length_for_a_macro_is_a_clear_error() -> None:
    five = "SCB_k3,skip,skip,SRB_k3,SRB_k5"
    with pytest.raises(ValueError, match="has 5 blocks; this search space needs 8"):
        _net("snn3", arch=five)
    with pytest.raises(ValueError, match="has 5 blocks; this search space needs 8"):
        parse_arch(five, num_blocks=num_blocks("snn1-8tbd"))
    assert len(_net("snn1-8tbd", arch="all-SRB_k3").arch) == 8


def test_deeper_stems_from_the_input_size() -> None:
    for size, stem, stages in ((64, "deep64", 1), (128, "deep128", 2)):
        net = AutoSNNNet(in_shape=(2, size, size), channels=C, steps=1, num_classes=3, vote=2).eval()
        assert net.config["stem"] == stem and len(net.stem_layers) == stages
        assert net.fc.module.in_features == 4 * C * 4 * 4  # reduced to 32x32, then 32 → 4
        assert net(torch.rand(1, 2, size, size)).shape == (1, 3)
    plain = AutoSNNNet(in_shape=(2, 64, 64), channels=C, steps=1, stem="plain")
    assert plain.stem_layers is None and plain.fc.module.in_features == 4 * C * 8 * 8
    with pytest.raises(ValueError, match="unknown stem"):
        AutoSNNNet(in_shape=(1, 8, 8), channels=C, steps=1, stem="huge")


def test_old_configs_without_macro_or_stem_still_load() -> None:
    cfg = dict(_net("snn1").config)
    del cfg["macro"], cfg["stem"]
    net = build_model("autosnn", cfg)
    assert net.macro.name == "snn1" and net.config["stem"] == "plain"
    cfg64 = dict(cfg, in_shape=[1, 64, 64])
    assert build_model("autosnn", cfg64).stem_layers is None  # saved before stems existed: plain


@pytest.mark.parametrize(
    ("macro", "arch"),
    [("snn3", "SRB_k3,skip,SCB_k5,SIB_k3_e3,skip,SRB_k5,SCB_k3,skip"), ("snn2", "SRB_k3,skip,SCB_k5,SIB_k3_e3,skip")],
)
def test_save_load_round_trip_non_default_macro(tmp_path, macro: str, arch: str) -> None:
    net = _net(macro, arch=arch).eval()
    path = save_model(tmp_path / "model.pt", net, "autosnn", meta={"note": macro})
    loaded, meta = load_model(path)
    loaded.eval()
    assert meta == {"note": macro}
    assert loaded.macro.name == macro and loaded.arch == net.arch
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(net(x), loaded(x))
