"""The relaxed layer trellis as modules: resampling, β-mixed cell inputs, gradients only where a path can go."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from nasflow.snn.dhs import SPIKEDHS_NEURON
from nasflow.snn.neurons import reset_states
from nasflow.snn.trellis import MixedInput, Resample, level_factor
from nasflow.spaces.spikedhs import SpikeDHSSpace
from nasflow.spaces.trellis import Trellis
from nasflow.strategies.spikedhs_trellis import RelaxedTrellisNet


def test_level_factor_is_the_product_of_the_rates_between_levels():
    assert level_factor((3, 2, 2, 2), 0, 2) == 4
    assert level_factor((3, 2, 2, 2), 3, 1) == 4
    assert level_factor((3, 2, 2, 2), 1, 1) == 1


def test_resample_up_equals_conv_bn_of_the_nearest_upsampled_spikes():
    torch.manual_seed(0)
    up = Resample([3], 4, (2, 2, 2), src=2, dst=0).eval()
    x = (torch.rand(2, 1, 3, 2, 2) < 0.5).float()
    y = up([x])
    assert y.shape == (2, 1, 4, 8, 8)
    conv, bn = up.parts[0].module[0], up.parts[0].module[1]
    ref = bn(conv(F.interpolate(x.flatten(0, 1), scale_factor=4, mode="nearest"))).view(2, 1, 4, 8, 8)
    assert torch.allclose(y, ref, atol=1e-6)
    down = Resample([3], 4, (2, 2, 2), src=0, dst=1)
    assert down([torch.ones(2, 1, 3, 8, 8)]).shape == (2, 1, 4, 4, 4)


def test_mixed_input_is_the_weighted_sum_of_resampled_sources_into_one_neuron():
    torch.manual_seed(1)
    mixed = MixedInput({"0": ([2], 0), "1": ([3, 3], 1)}, 4, 1, (2, 2), SPIKEDHS_NEURON).eval()
    xs = {"0": [torch.rand(3, 1, 2, 8, 8)], "1": [torch.rand(3, 1, 3, 4, 4), torch.rand(3, 1, 3, 4, 4)]}
    w = {"0": torch.tensor(0.3), "1": torch.tensor(0.7)}
    y = mixed(xs, w)
    current = 0.3 * mixed.sources["0"](xs["0"]) + 0.7 * mixed.sources["1"](xs["1"])
    neuron = SPIKEDHS_NEURON.build()
    reset_states(neuron)
    assert torch.equal(y, neuron(current))


def test_beta_gets_gradient_exactly_where_a_path_can_move():
    torch.manual_seed(0)
    trellis = Trellis(layers=4, levels=3, rates=(2, 2, 2))
    net = RelaxedTrellisNet(SpikeDHSSpace(), trellis, (2, 16, 16), channels=4)
    x = (torch.rand(3, 2, 2, 16, 16) < 0.3).float()
    y = net(x)
    assert y.shape == (3, 2, 4, 8, 8) and set(y.unique().tolist()) <= {0.0, 1.0}
    y.mean().backward()
    g = net.beta.grad.abs().sum(-1)
    for layer in range(trellis.layers):
        for level in range(trellis.levels):
            assert (g[layer, level] > 0) == (level in trellis.sources(layer)), (layer, level)
    probs = net.move_probabilities()
    assert torch.allclose(probs.sum(-1), torch.ones(4, 3))
    assert probs[:, 0, 2].eq(0).all() and probs[:, 2, 0].eq(0).all()  # no up from the top, no down from the bottom
    assert net.alpha.grad.abs().sum() > 0


def test_without_up_moves_nodes_take_only_same_or_finer_sources():
    torch.manual_seed(0)
    trellis = Trellis(layers=3, levels=2, rates=(2, 2), up=False)
    net = RelaxedTrellisNet(SpikeDHSSpace(), trellis, (2, 8, 8), channels=2)
    assert set(net.in1["l1_k0"].sources) == {"0"} and set(net.in1["l1_k1"].sources) == {"0", "1"}
    assert set(net.in0["l2_k0"].sources) == {"0"} and set(net.in0["l2_k1"].sources) == {"0", "1"}
    probs = net.move_probabilities()
    assert probs[:, :, 2].eq(0).all() and torch.allclose(probs[:, 1, 1], torch.ones(3))
    y = net((torch.rand(2, 1, 2, 8, 8) < 0.3).float())
    assert y.shape == (2, 1, 2, 4, 4)


def test_trellis_stereo_loss_reaches_weights_alpha_and_beta():
    from nasflow.data.stereo import StereoDotsConfig, stereo_dots_sample
    from nasflow.snn.stereo import SiameseStereo, subpixel_cross_entropy, subpixel_map

    torch.manual_seed(0)
    cfg = StereoDotsConfig(height=16, width=16, disparities=4, steps=3)
    xs, ds = zip(*(stereo_dots_sample(0, i, cfg) for i in range(2)))
    x, d = torch.stack(xs), torch.stack(ds)
    trellis = Trellis(layers=3, levels=2, rates=(2, 2))
    feats = RelaxedTrellisNet(SpikeDHSSpace(), trellis, (2, 16, 16), channels=4)
    model = SiameseStereo(feats, (16, 16), (8, 8), disparities=4)
    assert model.disparity_step == 2 and model.levels == 3  # disparities 0, 2, 4 input pixels
    cost = model(x)
    assert cost.shape == (2, 3, 16, 16)
    loss = subpixel_cross_entropy(cost, d, disparity_step=model.disparity_step)
    loss.backward()
    assert feats.alpha.grad.abs().sum() > 0 and feats.beta.grad.abs().sum() > 0 and model.scale.grad is not None
    assert subpixel_map(cost.detach(), disparity_step=2).shape == (2, 16, 16)


def test_s0_mixes_the_nodes_two_layers_back_by_two_move_probability():
    trellis = Trellis(layers=3, levels=3, rates=(2, 2, 2))
    net = RelaxedTrellisNet(SpikeDHSSpace(), trellis, (2, 16, 16), channels=2)
    with torch.no_grad():
        net.beta.zero_()  # uniform over the valid moves
    p = net.move_probabilities()
    w = net.two_move_weights(p, 2, 1)  # layer 0 reaches levels 0 and 1; both lead to level 1 at layer 2
    # from 0: 0→0→1 (1/2·1/2) + 0→1→1 (1/2·1/3); from 1: 1→0→1 (1/3·1/2) + 1→1→1 (1/3·1/3) + 1→2→1 (1/3·1/2)
    a, b = 1 / 4 + 1 / 6, 1 / 6 + 1 / 9 + 1 / 6
    assert set(w) == {"0", "1"}
    assert float(w["0"]) == pytest.approx(a / (a + b)) and float(w["1"]) == pytest.approx(b / (a + b))


def test_a_down_path_exports_and_its_head_equals_up_sampling_before_the_neurons():
    import numpy as np

    from exporters.nir_context import ExportError
    from exporters.nir_export import to_nir
    from exporters.nir_torch import simulate
    from nasflow.snn.trellis import TrellisPathNet
    from nasflow.spaces.trellis import parse_trellis_arch

    torch.manual_seed(0)
    trellis = Trellis(layers=3, levels=2, rates=(2, 2))
    arch = parse_trellis_arch("paper:cell=conv3x3@1+skip@0,conv5x5@2+skip@1,conv3x3@3+skip@2;path=0,1,1")
    net = TrellisPathNet(arch.cell.nodes, arch.path, trellis, (2, 16, 16), channels=2).eval()
    with torch.no_grad():
        for m in net.modules():  # non-trivial BN statistics, so folding is exercised
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = (torch.rand(3, 2, 2, 16, 16) < 0.3).float()
    with torch.no_grad():
        y = net(x)
    assert y.shape == (3, 2, 2, 4, 4) and net.output_factor == 2
    act = simulate(to_nir(net, dt=1e-3), x.numpy(), dt=1e-3)
    np.testing.assert_array_equal(act["head.sn"].reshape(y.shape), y.numpy())
    # the head at the last level, then nearest up-sampling (host) == up-sampling the current before the neurons
    head_up = MixedInput({"1": ([4, 4, 4], 1)}, 2, 0, (2, 2), SPIKEDHS_NEURON).eval()
    head_up.load_state_dict(net.head.state_dict())
    with torch.no_grad():
        parts = _last_nodes(net, x)
        reset_states(head_up)
        before = head_up({"1": parts})
    after = F.interpolate(y.flatten(0, 1), scale_factor=2, mode="nearest").view(3, 2, 2, 8, 8)
    assert torch.equal(before, after)
    up = parse_trellis_arch("paper:cell=conv3x3@1+skip@0,conv5x5@2+skip@1,conv3x3@3+skip@2;path=0,1,0")
    with pytest.raises(ExportError, match="up-sampling has no NIR node"):
        to_nir(TrellisPathNet(up.cell.nodes, up.path, trellis, (2, 16, 16), channels=2).eval(), dt=1e-3)


def _last_nodes(net, x: torch.Tensor) -> list[torch.Tensor]:
    """The last path cell's node spikes for ``x`` (forward hooks on its node neurons)."""
    got: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: got.append(o)) for m in net.cells[-1].nodes]
    try:
        reset_states(net)
        net(x)
    finally:
        for h in hooks:
            h.remove()
    return got
