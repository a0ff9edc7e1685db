"""The compiled neuron kernel against the torch-op loop and the plain step loop: identical spikes, gradients within
float tolerance, for every neuron × reset × detach × comparison × surrogate, plain and fused with BatchNorm.

``make test`` runs this file twice: with the kernel built, and with ``NASFLOW_KERNELS=torch`` (the fallback a
machine without a compiler runs); the active loop is checked against the step loop either way.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch

from nasflow import kernels
from nasflow.snn.blocks import NeuronSpec
from nasflow.snn.fused import conv_bn_neuron, fusion
from nasflow.snn.layers import TimeDistributed
from nasflow.snn.neurons import IF, LIF, PLIF
from nasflow.snn.surrogate import ATan, Dspike, Sigmoid, SuperSpike, Triangle

FORCED = os.environ.get(kernels.ENV, "").strip().lower() == "torch"
SURROGATES = [ATan(2.0), Sigmoid(4.0), Triangle(1.0), SuperSpike(10.0), Dspike(3.0)]
NEURONS = {
    "if": lambda **kw: IF(**kw),
    "lif": lambda **kw: LIF(tau=2.0, decay_input=True, **kw),
    "lif_no_di": lambda **kw: LIF(tau=1.25, decay_input=False, **kw),  # the SpikeDHS neuron's dynamics
    "plif": lambda **kw: PLIF(tau0=3.0, **kw),
}
RESETS = {"hard0": 0.0, "hard_vr": -0.2, "soft": None}
CASES = list(itertools.product(NEURONS, RESETS, (False, True), (False, True), range(len(SURROGATES))))


def test_the_active_backend_is_the_one_asked_for():
    if FORCED:
        assert kernels.backend() == "torch" and "NASFLOW_KERNELS=torch" in kernels.why_fallback()
    else:  # make test builds it: a missing build here is a failed install, not a reason to skip
        assert kernels.backend() == "compiled", kernels.why_fallback()


def _run(neuron, x):
    x = x.clone().requires_grad_()
    s = neuron(x)
    w = torch.linspace(-1.0, 1.0, s.numel(), dtype=x.dtype).view_as(s)
    params = [x] + [p for p in neuron.parameters() if p.requires_grad]
    grads = torch.autograd.grad((s * w).sum() + (neuron.last_state.v ** 2).sum(), params)
    return s.detach(), [g.detach() for g in grads]


@pytest.mark.parametrize("kind, reset, detach, strict, sur", CASES)
def test_kernel_equals_the_torch_loop_and_the_step_loop(kind, reset, detach, strict, sur):
    torch.manual_seed(hash((kind, reset, detach, strict, sur)) % 1000)
    x = torch.randn(7, 3, 4, 5, dtype=torch.float64) * 0.7 + 0.45
    make = lambda: NEURONS[kind](v_reset=RESETS[reset], detach_reset=detach, strict=strict,  # noqa: E731
                                 surrogate=SURROGATES[sur], v_threshold=0.5).double()
    active = _run(make(), x)
    with kernels.using_torch_loop():
        torch_loop = _run(make(), x)
    step = make()
    step._run = lambda xx, state: (lambda r: (r[0], r[2]))(step.forward_steps(xx, state))  # the plain loop
    reference = _run(step, x)
    for other in (torch_loop, reference):
        assert torch.equal(active[0], other[0])  # identical spikes
        for a, b in zip(active[1], other[1]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["lif", "lif_no_di", "if"])
def test_fused_bn_path_uses_the_same_loop(kind):
    torch.manual_seed(3)
    conv = TimeDistributed(torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False),
                                               torch.nn.BatchNorm2d(4)))
    x = torch.rand(6, 3, 2, 8, 8)

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(5)
        c = TimeDistributed(torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False),
                                                torch.nn.BatchNorm2d(4)))
        c.load_state_dict(conv.state_dict())
        neuron = NEURONS[kind](v_threshold=0.3)
        with fusion(True):
            s = conv_bn_neuron(c.train(), neuron, x)
        grads = torch.autograd.grad((s * torch.linspace(-1, 1, s.numel()).view_as(s)).sum(), list(c.parameters()))
        return s.detach(), list(grads)

    active = run()
    with kernels.using_torch_loop():
        torch_loop = run()
    assert torch.equal(active[0], torch_loop[0])
    for a, b in zip(active[1], torch_loop[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_no_grad_saves_nothing_and_matches():
    x = torch.randn(5, 2, 10) + 0.5
    n = LIF(tau=2.0)
    with torch.no_grad():
        s = n(x)
    with kernels.using_torch_loop(), torch.no_grad():
        s2 = LIF(tau=2.0)(x)
    assert torch.equal(s, s2) and s.grad_fn is None


def test_neuron_spec_layers_run_on_the_active_loop():
    neuron = NeuronSpec().build()
    out = neuron(torch.randn(4, 2, 3) + 1.0)
    assert out.shape == (4, 2, 3) and set(out.unique().tolist()) <= {0.0, 1.0}
