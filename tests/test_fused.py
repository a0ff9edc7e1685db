"""Fused BN + neuron training path (nasflow.snn.fused) against the plain ``neuron(wrapper(x))``."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nasflow.models import create_model
from nasflow.snn import fused
from nasflow.snn.activity import ActivityMonitor
from nasflow.snn.blocks import conv_bn
from nasflow.snn.layers import DirectEncoder, SpikingMaxPool2d, TimeDistributed, is_marked_spikes, mark_spikes
from nasflow.snn.neurons import ALIF, IF, LIF, PLIF
from nasflow.snn.surrogate import Sigmoid

D = torch.float64


def _neuron(kind: str, **kw) -> nn.Module:
    return {"if": lambda: IF(**kw), "lif": lambda: LIF(tau=2.0, **kw), "plif": lambda: PLIF(tau0=2.0, **kw)}[kind]()


def _saved_bytes(fn) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _run_pair(wrapper, neuron, x, g, addend=None, enabled=True):
    with fused.fusion(enabled):
        add = (lambda: addend * 1.0) if addend is not None else None
        s = fused.conv_bn_neuron(wrapper, neuron, x, addend=add)
        (s * g).sum().backward()
    return s


CASES = list(itertools.product(["if", "lif", "plif"], [0.0, None, -0.2], [True, False], [True, False]))


@pytest.mark.parametrize("kind,v_reset,detach,strict", CASES)
def test_fused_matches_plain(kind, v_reset, detach, strict):
    torch.manual_seed(0)
    wrapper = conv_bn(3, 4, 3).to(D)
    with torch.no_grad():
        wrapper.module[1].weight.uniform_(0.5, 2.0)
        wrapper.module[1].bias.uniform_(0.0, 1.0)
    neuron = _neuron(kind, v_reset=v_reset, detach_reset=detach, strict=strict).to(D)
    w2, n2 = copy.deepcopy(wrapper), copy.deepcopy(neuron)
    assert fused.can_fuse(wrapper, neuron)
    x = (torch.rand(4, 3, 3, 6, 6, dtype=D) > 0.5).to(D).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    g = torch.randn(4, 3, 4, 6, 6, dtype=D)
    for _ in range(2):  # two steps: running stats and num_batches_tracked advance identically
        for p in (*wrapper.parameters(), *neuron.parameters(), *w2.parameters(), *n2.parameters(), x, x2):
            p.grad = None
        s = _run_pair(wrapper, neuron, x, g)
        s2 = _run_pair(w2, n2, x2, g, enabled=False)
        assert torch.equal(s, s2) and 0 < s.mean() < 1
        torch.testing.assert_close(x.grad, x2.grad, rtol=1e-10, atol=1e-12)
        for p, p2 in zip([*wrapper.parameters(), *neuron.parameters()], [*w2.parameters(), *n2.parameters()]):
            torch.testing.assert_close(p.grad, p2.grad, rtol=1e-10, atol=1e-12)
        for b, b2 in zip(wrapper.buffers(), w2.buffers()):
            assert torch.equal(b, b2)
    assert int(wrapper.module[1].num_batches_tracked) == 2
    torch.testing.assert_close(neuron.last_state.v, n2.last_state.v, rtol=0, atol=0)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_fused_addend_direct_and_decay_input(momentum):
    torch.manual_seed(1)
    for direct, decay_input in ((False, False), (True, True), (True, False)):
        wrapper = conv_bn(2, 3, 3).to(D)
        wrapper.module[1].momentum = momentum
        if direct:
            wrapper = DirectEncoder(wrapper.module, steps=3)
        neuron = PLIF(tau0=3.0, decay_input=decay_input, v_reset=0.1, surrogate=Sigmoid()).to(D)
        w2, n2 = copy.deepcopy(wrapper), copy.deepcopy(neuron)
        shape = (2, 2, 5, 5) if direct else (3, 2, 2, 5, 5)
        x = torch.rand(*shape, dtype=D).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        z = None if direct else torch.randn(3, 2, 3, 5, 5, dtype=D).requires_grad_()
        z2 = None if z is None else z.detach().clone().requires_grad_()
        g = torch.randn(3, 2, 3, 5, 5, dtype=D)
        for _ in range(2):
            s = _run_pair(wrapper, neuron, x, g, addend=z)
            s2 = _run_pair(w2, n2, x2, g, addend=z2, enabled=False)
            assert torch.equal(s, s2)
        torch.testing.assert_close(x.grad, x2.grad, rtol=1e-10, atol=1e-12)
        if z is not None:
            torch.testing.assert_close(z.grad, z2.grad, rtol=1e-10, atol=1e-12)
        for p, p2 in zip([*wrapper.parameters(), *neuron.parameters()], [*w2.parameters(), *n2.parameters()]):
            torch.testing.assert_close(p.grad, p2.grad, rtol=1e-10, atol=1e-12)
        for b, b2 in zip(wrapper.buffers(), w2.buffers()):
            assert torch.equal(b, b2)


def test_fused_saves_less_and_falls_back():
    torch.manual_seed(2)
    wrapper, neuron = conv_bn(4, 8, 3), PLIF()
    x = (torch.rand(4, 2, 4, 8, 8) > 0.5).float()
    plain = _saved_bytes(lambda: neuron(wrapper(x)))
    fast = _saved_bytes(lambda: fused.conv_bn_neuron(wrapper, neuron, x))
    assert fast <= plain - 4 * 2 * 8 * 8 * 8 * 4  # one [T, B, C, H, W] float tensor fewer
    # Not fusable: eval mode, stateful or ALIF neurons, fusion switched off.
    assert not fused.can_fuse(wrapper.eval(), neuron)
    wrapper.train()
    assert not fused.can_fuse(wrapper, ALIF())
    assert not fused.can_fuse(wrapper, PLIF(stateful=True))
    with fused.fusion(False):
        assert not fused.can_fuse(wrapper, neuron)
    assert fused.can_fuse(wrapper, neuron)
    wrapper.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused.conv_bn_neuron(wrapper, neuron, x), neuron(wrapper(x)))


def _one_step(model, x, y, enabled, as_bool=False):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with fused.fusion(enabled, spikes_as_bool=as_bool):
        loss = F.mse_loss(model(x), y)
        loss.backward()
    opt.step()
    return loss


@pytest.mark.parametrize("arch,as_bool", [("all-SRB_k3", False), ("all-SRB_k3", True), ("all-SCB_k3", True)])
def test_model_one_training_step(arch, as_bool):
    torch.manual_seed(3)
    model = create_model("autosnn", arch=arch, in_shape=(1, 8, 8), channels=4, steps=3).to(D)
    with torch.no_grad():
        model.fc.module.weight.mul_(4.0)
    ref = copy.deepcopy(model)
    x = torch.rand(6, 1, 8, 8, dtype=D) * 2
    y = F.one_hot(torch.arange(6) % 10, 10).to(D)
    loss = _one_step(model, x, y, True, as_bool)
    loss2 = _one_step(ref, x, y, False)
    assert loss.item() == loss2.item()
    assert model.state_dict().keys() == ref.state_dict().keys()
    for (n, p), (_, p2) in zip(model.state_dict().items(), ref.state_dict().items()):
        torch.testing.assert_close(p, p2, rtol=1e-9, atol=1e-12, msg=n)


@pytest.mark.parametrize("channels_last", [False, True])
def test_activity_monitor_identical_fused_unfused(channels_last):
    torch.manual_seed(4)
    model = create_model("autosnn", arch="all-SRB_k3", in_shape=(1, 8, 8), channels=4, steps=3)
    with torch.no_grad():
        model.fc.module.weight.mul_(4.0)
    ref = copy.deepcopy(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.rand(5, 1, 8, 8) * 2
    summaries = []
    for m, enabled in ((model, True), (ref, False)):
        with fused.fusion(enabled, spikes_as_bool=True), ActivityMonitor(m) as mon:
            m(x).sum().backward()
        summaries.append(mon.summary())
    assert summaries[0] == summaries[1]
    assert summaries[0]["spikes_per_sample"] > 0


@pytest.mark.parametrize("channels_last", [False, True])
def test_spike_conv_and_pool_save_bool(channels_last):
    torch.manual_seed(5)
    td = TimeDistributed(nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True)).to(D)
    pool = SpikingMaxPool2d(2)
    x = (torch.rand(2, 3, 3, 8, 8, dtype=D) > 0.6).to(D)
    if channels_last:
        td = td.to(memory_format=torch.channels_last)
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 3))
    g = torch.randn(2, 3, 4, 2, 2, dtype=D)
    grads, saved = [], []
    for marked in (True, False):
        td.zero_grad()
        xi = x.detach().clone().requires_grad_()
        inp = mark_spikes(xi * 1.0) if marked else xi * 1.0
        saved.append(_saved_bytes(lambda inp=inp: (pool(td(inp)) * g).sum().backward()))
        grads.append((xi.grad, td.module.weight.grad, td.module.bias.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert saved[0] < saved[1]
    # Pooled marked spikes stay marked; unmarked input or no grad takes the plain path.
    assert is_marked_spikes(pool(mark_spikes(x.clone())))
    assert not is_marked_spikes(pool(x))
    with torch.no_grad():
        assert not is_marked_spikes(pool(mark_spikes(x.clone())))


def test_model_saves_less_with_fusion():
    torch.manual_seed(6)
    model = create_model("autosnn", arch="all-SCB_k3", in_shape=(3, 16, 16), channels=4, steps=3)
    x = torch.rand(4, 3, 16, 16)
    with fused.fusion(False):
        plain = _saved_bytes(lambda: model(x))
    fast = _saved_bytes(lambda: model(x))
    with fused.fusion(True, spikes_as_bool=True):
        lean = _saved_bytes(lambda: model(x))
    assert lean < fast < 0.85 * plain


def test_a_training_step_leaves_no_cycle_holding_activations():
    """Intermediate activations are freed by reference counting when the step ends; a reference cycle (once:
    the wiring evaluator's closures) kept each step's activations until Python's cyclic collector ran, ~100 MB
    per step of the benchmark network."""
    import gc

    from nasflow.models import create_model

    model = create_model("autosnn", arch="SCB_k3,SRB_k3,skip,SCB_k5,SRB_k5", in_shape=(3, 16, 16), num_classes=10,
                         channels=4, steps=3).train()
    x = torch.rand(2, 3, 16, 16)
    gc.collect()
    gc.disable()
    try:
        model(x).sum().backward()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        leaked = [tuple(o.shape) for o in gc.garbage if torch.is_tensor(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert leaked == []
