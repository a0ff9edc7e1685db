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
from nasflow.snn.neurons import ALIF, CUBA, IF, LIF, PLIF
from nasflow.snn.surrogate import ATan, Dspike, Sigmoid, SuperSpike, Triangle
from nasflow.snn.tps import TPSNeuron, candidate_spikes

FORCED = os.environ.get(kernels.ENV, "").strip().lower() == "torch"
SURROGATES = [ATan(2.0), Sigmoid(4.0), Triangle(1.0), SuperSpike(10.0), Dspike(3.0)]
NEURONS = {
    "if": lambda **kw: IF(**kw),
    "lif": lambda **kw: LIF(tau=2.0, decay_input=True, **kw),
    "lif_no_di": lambda **kw: LIF(tau=1.25, decay_input=False, **kw),  # the SpikeDHS neuron's dynamics
    "plif": lambda **kw: PLIF(tau0=3.0, **kw),
    "alif": lambda **kw: ALIF(tau=3.0, beta=0.3, rho=0.8, **kw),
    "alif_no_di": lambda **kw: ALIF(tau=1.5, beta=0.6, rho=0.95, decay_input=False, **kw),
    "cuba": lambda **kw: CUBA(du=0.3, dv=0.2, bias=0.05, **kw),
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
    last = neuron.last_state
    loss = (s * w).sum() + (last.v ** 2).sum() + (0.0 if last.aux is None else (last.aux ** 2).sum() * 0.3)
    grads = torch.autograd.grad(loss, params)
    return s.detach(), [g.detach() for g in grads]


@pytest.mark.parametrize("kind, reset, detach, strict, sur", CASES)
def test_kernel_equals_the_torch_loop_and_the_step_loop(kind, reset, detach, strict, sur):
    torch.manual_seed(sum(map(ord, f"{kind}{reset}{detach}{strict}{sur}")))
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


STATEFUL = ["alif", "cuba", "lif", "plif"]


@pytest.mark.parametrize("kind", STATEFUL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_carried_state_and_its_gradient_match_the_step_loop(kind, dtype):
    """Two calls of a stateful neuron: the second starts from the first's state (ALIF's adaptation, CUBA's current),
    and the gradient flows back through it into the first call's input."""
    torch.manual_seed(11)
    x1 = (torch.randn(5, 2, 6, dtype=dtype) * 0.8 + 0.4).requires_grad_()
    x2 = (torch.randn(4, 2, 6, dtype=dtype) * 0.8 + 0.4).requires_grad_()

    def run(step_loop: bool):
        n = NEURONS[kind](v_reset=None if kind == "alif" else 0.0, v_threshold=0.5, stateful=True,
                          surrogate=ATan(2.0)).to(dtype)
        if step_loop:
            n._run = lambda xx, state: (lambda r: (r[0], r[2]))(n.forward_steps(xx, state))
        s = torch.cat([n(x1), n(x2)])
        w = torch.linspace(-1.0, 1.0, s.numel(), dtype=dtype).view_as(s)
        g = torch.autograd.grad((s * w).sum() + (n.last_state.v ** 2).sum(), [x1, x2])
        return s.detach(), g

    a, b = run(False), run(True)
    assert torch.equal(a[0], b[0])  # bit-identical spikes, float32 included
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-10}
    for ga, gb in zip(a[1], b[1]):
        torch.testing.assert_close(ga, gb, **tol)


TPS_CASES = [("lif", "decay"), ("lif_no_di", "decay"), ("plif", "decay"), ("alif", "decay"), ("alif", "alif.beta"),
             ("alif_no_di", "alif.rho")]


@pytest.mark.parametrize("kind, param", TPS_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tps_candidate_axis_matches_the_broadcast_step_loop(kind, param, dtype):
    """TPS's batched pass on the kernel's candidate axis against the step loop on the input broadcast K times:
    identical spikes for every candidate, and the same gradients to the input and to the mixture weights γ."""
    torch.manual_seed(7)
    x = (torch.randn(6, 3, 5, dtype=dtype) * 0.9 + 0.5)
    sur = SURROGATES[len(param) % len(SURROGATES)]

    def run(torch_loop: bool):
        layer = TPSNeuron(NEURONS[kind](v_threshold=0.5, surrogate=sur).to(dtype), param)
        layer.gamma.data = torch.linspace(-0.5, 0.5, len(layer.candidates))
        xi = x.clone().requires_grad_()
        ctx = kernels.using_torch_loop() if torch_loop else _null()
        with ctx:
            spikes = candidate_spikes(layer.neuron, xi, param, layer.candidates)
            out = layer(xi)
        w = torch.linspace(-1.0, 1.0, out.numel(), dtype=dtype).view_as(out)
        return spikes.detach(), torch.autograd.grad((out * w).sum(), [xi, layer.gamma])

    a, b = run(False), run(True)
    assert a[0].shape[0] == len(TPSNeuron(NEURONS[kind](), param).candidates)
    assert torch.equal(a[0], b[0])
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-10}
    for ga, gb in zip(a[1], b[1]):
        torch.testing.assert_close(ga, gb, **tol)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("kind", ["lif_no_di", "cuba", "alif"])
def test_float32_forward_is_bit_identical_to_the_torch_path(kind):
    """float32, where ``1 - k`` rounded as float differs from ``1 - k`` rounded from double (τ = 1.25 gives
    0.19999999 against 0.2): membranes, not only spikes, equal the torch path's bit for bit (LIF: the torch-op loop;
    ALIF and CUBA: the step loop, which is their torch path)."""
    torch.manual_seed(2)
    x = torch.randn(9, 4, 33) * 0.6 + 0.3
    n = NEURONS[kind](v_threshold=0.5, stateful=True)
    ref = NEURONS[kind](v_threshold=0.5, stateful=True)
    with torch.no_grad():
        out = n(x)
        with kernels.using_torch_loop():
            expected = ref(x)
    assert torch.equal(out, expected)
    assert torch.equal(n.last_state.v, ref.last_state.v)
    if n.last_state.aux is not None:
        assert torch.equal(n.last_state.aux, ref.last_state.aux)
