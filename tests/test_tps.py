"""TPS's candidate dynamics: hand-worked mixtures for LIF and ALIF, the batched pass against K separate neurons,
commit (argmax, γ reset, PLIF's decay), ∂/∂γ against finite differences, and clear refusals."""

from __future__ import annotations

import math

import pytest
import torch

from nasflow.snn.dhs import SPIKEDHS_NEURON
from nasflow.snn.neurons import ALIF, LIF, PLIF
from nasflow.snn.surrogate import ATan
from nasflow.snn.tps import TPSNeuron, candidate_spikes, decay_to_tau, tau_to_decay


def _currents(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1)  # [T, B = 1, 1 neuron]


def test_decay_and_tau_map_both_ways():
    assert decay_to_tau(0.2) == pytest.approx(1.25) and tau_to_decay(1.25) == pytest.approx(0.2)
    assert SPIKEDHS_NEURON.tau == pytest.approx(decay_to_tau(0.2))  # the SpikeDHS neuron's λ = 0.2


def test_lif_mixture_on_hand_made_currents():
    # mem = λ·mem·(1 - s) + I, fire on mem > 0.5, I = 0.3 at every step:
    # λ = 0.2: 0.3, 0.36, 0.372 (silent); λ = 0.8: 0.3, 0.54 (spike, reset), 0.3
    tps = TPSNeuron(SPIKEDHS_NEURON.build().double(), "decay", (0.2, 0.8))
    with torch.no_grad():
        tps.gamma.copy_(torch.tensor([0.0, math.log(3.0)]))  # softmax: 0.25, 0.75
    out = tps(_currents(0.3, 0.3, 0.3))
    torch.testing.assert_close(out.view(-1), torch.tensor([0.0, 0.75, 0.0], dtype=torch.float64))


def test_alif_mixture_on_hand_made_currents():
    # threshold 0.5 + β a[t], a[t] = ρ a[t-1] + S[t-1] (ρ = 0.5), λ = 0.5, I = 0.6, fire on H >= threshold:
    # β = 0: fires at every step; β = 1: t1 fires, t2 threshold 1.5 > 0.6, t3 a = 0.5, threshold 1.0 > 0.9
    neuron = ALIF(tau=decay_to_tau(0.5), beta=0.0, rho=0.5, decay_input=False, v_threshold=0.5)
    tps = TPSNeuron(neuron, "alif.beta", (0.0, 1.0))
    with torch.no_grad():
        tps.gamma.copy_(torch.tensor([math.log(1.0), math.log(4.0)]))  # 0.2, 0.8
    out = tps(_currents(0.6, 0.6, 0.6))
    torch.testing.assert_close(out.view(-1), torch.tensor([1.0, 0.2, 0.2], dtype=torch.float64))


@pytest.mark.parametrize("make, param, values", [
    (lambda: SPIKEDHS_NEURON.build(), "decay", (0.1, 0.35, 0.65, 0.95)),
    (lambda: LIF(tau=2.0, decay_input=True, v_reset=None, surrogate=ATan()), "decay", (0.1, 0.5, 0.9)),
    (lambda: PLIF(tau0=2.0), "decay", (0.2, 0.5, 0.8)),
    (lambda: ALIF(tau=2.0, beta=0.2, rho=0.9, v_threshold=0.5), "alif.beta", (0.0, 0.3, 1.0)),
    (lambda: ALIF(tau=2.0, beta=0.2, rho=0.9, v_threshold=0.5), "alif.rho", (0.5, 0.9, 0.99)),
])
def test_the_batched_candidate_pass_equals_k_separate_neurons(make, param, values):
    torch.manual_seed(0)
    x = (torch.randn(6, 3, 4, 5) * 0.8 + 0.4).requires_grad_()
    batched = candidate_spikes(make(), x, param, values)
    assert batched.shape == (len(values), 6, 3, 4, 5)
    grad = torch.autograd.grad((batched * torch.arange(1.0, len(values) + 1).view(-1, 1, 1, 1, 1)).sum(), x)[0]
    expected_grad = torch.zeros_like(x)
    for k, v in enumerate(values):
        n = make()
        if param == "decay":
            n = LIF(tau=decay_to_tau(v), decay_input=n.decay_input, v_threshold=n.v_threshold, v_reset=n.v_reset,
                    detach_reset=n.detach_reset, strict=n.strict, surrogate=n.surrogate)
        else:
            setattr(n, param.split(".")[1], v)
        xk = x.detach().clone().requires_grad_()
        s = n(xk)
        torch.testing.assert_close(batched[k], s, atol=0, rtol=0)
        expected_grad += torch.autograd.grad(s.sum() * (k + 1), xk)[0]
    torch.testing.assert_close(grad, expected_grad)  # exact BPTT of the same dynamics


def test_commit_takes_the_argmax_candidate_and_resets_gamma():
    tps = TPSNeuron(PLIF(tau0=2.0), "decay", (0.1, 0.6, 0.9))
    tps.start()
    tps.start()  # a search epoch after another: still frozen, and stop() must still give it back
    assert not tps.neuron.w.requires_grad  # PLIF's own decay is frozen while TPS runs
    with torch.no_grad():
        tps.gamma.copy_(torch.tensor([0.1, 0.7, -0.2]))
    assert tps.commit() == 0.6 and torch.equal(tps.gamma, torch.zeros(3))
    assert float(tps.neuron.inv_tau()) == pytest.approx(0.4) and tps.value() == pytest.approx(0.6)
    tps.stop()
    assert tps.neuron.w.requires_grad and tps.history == [pytest.approx(0.5), 0.6]
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(tps(x), PLIF(tau0=decay_to_tau(0.6))(x))  # the plain neuron with the new decay
    alif = TPSNeuron(ALIF(rho=0.9), "alif.rho", (0.5, 0.95))
    with torch.no_grad():
        alif.gamma.copy_(torch.tensor([-1.0, 1.0]))
    assert alif.commit() == 0.95 and alif.neuron.rho == 0.95


def test_gamma_gradient_matches_finite_differences():
    torch.manual_seed(1)
    tps = TPSNeuron(SPIKEDHS_NEURON.build(), "decay", (0.1, 0.5, 0.9)).double()
    x = torch.rand(5, 2, 6, dtype=torch.float64)
    target = torch.rand(5, 2, 6, dtype=torch.float64)
    with torch.no_grad():
        tps.gamma.copy_(torch.tensor([0.3, -0.2, 0.1]))

    def loss() -> torch.Tensor:
        return ((tps(x) - target) ** 2).sum()

    g = torch.autograd.grad(loss(), tps.gamma)[0]
    eps = 1e-6
    for k in range(3):
        with torch.no_grad():
            tps.gamma[k] += eps
            up = loss()
            tps.gamma[k] -= 2 * eps
            down = loss()
            tps.gamma[k] += eps
        assert float(g[k]) == pytest.approx(float((up - down) / (2 * eps)), rel=1e-5, abs=1e-8)


def test_bad_parameters_and_candidates_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown TPS parameter 'tau'"):
        TPSNeuron(LIF(), "tau", (0.2,))
    with pytest.raises(ValueError, match="candidate set of 'decay' is empty"):
        TPSNeuron(LIF(), "decay", ())
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\), got 1.0"):
        TPSNeuron(LIF(), "decay", (0.5, 1.0))
    with pytest.raises(ValueError, match="belongs to ALIF layers, not LIF"):
        TPSNeuron(LIF(), "alif.beta", (0.1,))
    with pytest.raises(ValueError, match="decay candidates must be > 0"):
        TPSNeuron(PLIF(), "decay", (0.0, 0.5))
