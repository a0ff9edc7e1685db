"""Cross-checks of nasflow's neurons against snnTorch 1.0, Norse 1.1 and SpikingJelly 0.0.0.0.14, step for step.

Each mapping below was read off the installed peer source; where the semantics coincide, spikes must be
identical and membranes and input (and PLIF ``w``) gradients equal to rounding. All runs use float64 and
50 steps x (2 x 10) neurons of random input; each test also checks that the input makes neurons fire at a
moderate rate, so that resets (and their gradients) are exercised.
"""

from __future__ import annotations

import pytest
import torch

from nasflow.snn.neurons import IF, LIF, PLIF
from nasflow.snn.surrogate import ATan, SuperSpike

T, SHAPE = 50, (2, 10)
TH = 1.0


def _input(seed: int, lo: float, hi: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(T, *SHAPE, generator=gen, dtype=torch.float64) * (hi - lo) + lo).requires_grad_()


def _weights(seed: int):
    gen = torch.Generator().manual_seed(1000 + seed)
    return (torch.randn(T, *SHAPE, generator=gen, dtype=torch.float64),
            torch.randn(T, *SHAPE, generator=gen, dtype=torch.float64))


def _nasflow_trace(neuron, x):
    """Per-step spikes S, membranes before (H) and after (V) reset, via ``Neuron.step``."""
    state, ss, hs, vs = None, [], [], []
    for x_t in x:
        s, h, state = neuron.step(x_t, state)
        ss.append(s)
        hs.append(h)
        vs.append(state.v)
    return torch.stack(ss), torch.stack(hs), torch.stack(vs)


def _grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True)


def _assert_rate(s):
    rate = s.mean().item()
    assert 0.05 < rate < 0.95, rate


# snnTorch's surrogate returns float32 spikes (``(x > 0).float()``) whatever the membrane dtype, so the
# gradient flowing back into every step is rounded to float32: its gradients agree to float32 precision only.
F32_GRAD_TOL = dict(rtol=1e-5, atol=1e-6)


def _assert_same(peer_s, peer_mem, peer_grads, s, mem, grads, grad_tol=None):
    assert torch.equal(peer_s.to(torch.float64), s.to(torch.float64))
    torch.testing.assert_close(peer_mem, mem, rtol=1e-12, atol=1e-12)
    for a, b in zip(peer_grads, grads):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, **(grad_tol or dict(rtol=1e-9, atol=1e-12)))


# ===============================================================================================================
# snnTorch 1.0.0 ``snntorch.Leaky`` (snntorch/_neurons/leaky.py, neurons.py)
#
#   forward(x, mem):  reset = Θ(mem - θ).detach()           (strict: surrogate.atan fires on x > 0)
#                     mem = β·mem + x - reset·θ             (reset_mechanism="subtract")
#                     mem = β·(1 - reset)·mem + x           (reset_mechanism="zero")
#                     spk = Θ(mem - θ)
#   With the default reset_delay=True, ``mem`` is never reset in place: the *next* call derives the reset from
#   the stored (pre-reset) membrane, i.e. from the previous step's spike. That is the same recurrence as
#   nasflow's reset at the end of step t-1, with no shift of the spike train, and the returned ``mem`` is
#   nasflow's H. The reset signal is detached: detach_reset=True.
#
#   "zero":     mem[t] = β(1 - S[t-1]) H[t-1] + x[t]          = nasflow LIF(τ = 1/(1-β), decay_input=False,
#                                                                v_reset=0, strict=True), exact.
#   "subtract": mem[t] = β H[t-1] + x[t] - θ S[t-1], while nasflow's soft LIF is H[t] = β (H[t-1] - θ S[t-1]) + x[t]:
#               snnTorch subtracts θ *after* the decay, nasflow (and SpikingJelly, REFERENCE §1) before it. No nasflow
#               option reproduces β < 1 with delayed subtraction (it would need a reset amount of θ/β); with β = 1
#               both are IF with soft reset, exact.
#   reset_delay=False: the reset is applied in the same call, ``mem -= (spk - reset)·θ`` (or ``·mem``) with the
#               spike *not* detached, and the returned ``mem`` is the post-reset V. The next call's ``reset`` flag
#               is then Θ(V - θ), which is 0 as long as no post-reset membrane stays above θ; under that premise
#               (checked below) "subtract" = nasflow soft LIF and "zero" = hard LIF to 0, detach_reset=False.
# ===============================================================================================================
BETA = 0.75  # τ = 1/(1 - β) = 4, 1/τ = .25: exact in binary, so nasflow's (1 - 1/τ) is exactly β


def _snntorch_run(leaky, x):
    mem, spks, mems = None, [], []
    for x_t in x:
        spk, mem = leaky(x_t, mem)
        spks.append(spk)
        mems.append(mem)
    return torch.stack(spks), torch.stack(mems)


def test_snntorch_leaky_zero_reset_delayed():
    snn = pytest.importorskip("snntorch")
    from snntorch import surrogate as ssur

    x = _input(1, -0.5, 2.0)
    w_s, w_m = _weights(1)
    leaky = snn.Leaky(beta=BETA, threshold=TH, spike_grad=ssur.atan(alpha=2.0), reset_mechanism="zero")
    p_s, p_mem = _snntorch_run(leaky, x)
    p_g = _grads((p_s * w_s).sum() + (p_mem * w_m).sum(), [x])
    p_g_spk = _grads((p_s * w_s).sum(), [x])

    neuron = LIF(tau=1 / (1 - BETA), decay_input=False, v_reset=0.0, v_threshold=TH, strict=True,
                 detach_reset=True, surrogate=ATan(2.0))
    assert neuron.tau == 4.0
    s, h, _ = neuron.forward_steps(x)
    _assert_rate(s)
    _assert_same(p_s, p_mem, p_g, s, h, _grads((s * w_s).sum() + (h * w_m).sum(), [x]), F32_GRAD_TOL)
    s_fused = neuron(x)  # the fused kernel users train with
    assert torch.equal(s_fused, p_s.double())
    torch.testing.assert_close(_grads((s_fused * w_s).sum(), [x])[0], p_g_spk[0], **F32_GRAD_TOL)


def test_snntorch_leaky_subtract_beta_one_is_soft_if():
    snn = pytest.importorskip("snntorch")
    from snntorch import surrogate as ssur

    x = _input(2, -0.6, 1.4)
    w_s, w_m = _weights(2)
    leaky = snn.Leaky(beta=1.0, threshold=TH, spike_grad=ssur.atan(alpha=2.0), reset_mechanism="subtract")
    p_s, p_mem = _snntorch_run(leaky, x)
    p_g = _grads((p_s * w_s).sum() + (p_mem * w_m).sum(), [x])

    neuron = IF(v_reset=None, v_threshold=TH, strict=True, detach_reset=True, surrogate=ATan(2.0))
    s, h, _ = neuron.forward_steps(x)
    _assert_rate(s)
    _assert_same(p_s, p_mem, p_g, s, h, _grads((s * w_s).sum() + (h * w_m).sum(), [x]), F32_GRAD_TOL)
    s_fused = neuron(x)
    assert torch.equal(s_fused, p_s.double())


@pytest.mark.parametrize("mechanism", ["subtract", "zero"])
def test_snntorch_leaky_immediate_reset(mechanism):
    snn = pytest.importorskip("snntorch")
    from snntorch import surrogate as ssur

    # x < (2 - β)θ = 1.25θ keeps every post-reset membrane ≤ θ under "subtract" (premise above).
    x = _input(3, -0.5, 1.2)
    w_s, w_m = _weights(3)
    leaky = snn.Leaky(beta=BETA, threshold=TH, spike_grad=ssur.atan(alpha=2.0), reset_mechanism=mechanism,
                      reset_delay=False)
    p_s, p_v = _snntorch_run(leaky, x)
    assert p_v.max().item() <= TH  # premise: snnTorch's own delayed-reset flag never fires
    p_g = _grads((p_s * w_s).sum() + (p_v * w_m).sum(), [x])

    neuron = LIF(tau=4.0, decay_input=False, v_reset=None if mechanism == "subtract" else 0.0, v_threshold=TH,
                 strict=True, detach_reset=False, surrogate=ATan(2.0))
    s, _, v = _nasflow_trace(neuron, x)
    _assert_rate(s)
    _assert_same(p_s, p_v, p_g, s, v, _grads((s * w_s).sum() + (v * w_m).sum(), [x]), F32_GRAD_TOL)
    s_fused = neuron(x)
    assert torch.equal(s_fused, p_s.double())
    torch.testing.assert_close(neuron.last_state.v, p_v[-1], rtol=1e-12, atol=1e-12)


# ===============================================================================================================
# Norse 1.1.0 (norse/torch/functional/lif_box.py, lif.py, threshold.py, superspike.py, reset.py)
#
#   lif_box_feed_forward_step:  v' = v + dt/τ_mem (x + v_leak - v);  z = Θ(v' - v_th) strictly (torch.gt);
#                               v = reset_method(z, v', v_reset, v_th): reset_value = (1-z)v' + z v_reset,
#                               reset_subtract = v' - z v_th; z is *not* detached.
#   With dt·τ_mem_inv = 1/τ and v_leak = v_reset (hard) or 0 (soft), that is nasflow LIF(decay_input=True,
#   strict=True, detach_reset=False), exact; Norse starts from the state it is given (here v_reset / 0).
#   lif_feed_forward_step:      i' = i + x;  v' = v + dt/τ_mem (v_leak - v + i');  i = i'(1 - dt·τ_syn_inv).
#   The input enters the current *before* the voltage update (no one-step lag), so dt·τ_syn_inv = 1 empties the
#   current every step and the neuron is the same LIF, exact (hard reset only: lif.py has no reset_method).
#   method="super": forward Θ, backward 1/(|x| + 1)² (Norse 1.1 ignores ``alpha`` there) = nasflow SuperSpike(β=1).
# ===============================================================================================================
TAU_INV = 0.25


@pytest.mark.parametrize("v_reset", [0.0, -0.5, None], ids=["hard0", "hard-.5", "soft"])
def test_norse_lif_box(v_reset):
    pytest.importorskip("norse")
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters, lif_box_feed_forward_step
    from norse.torch.functional.reset import reset_subtract, reset_value

    x = _input(4, -0.5, 3.0)
    w_s, w_m = _weights(4)
    leak = 0.0 if v_reset is None else v_reset
    p = LIFBoxParameters(
        tau_mem_inv=torch.as_tensor(TAU_INV), v_leak=torch.as_tensor(leak), v_th=torch.as_tensor(TH),
        v_reset=torch.as_tensor(leak), method="super", alpha=torch.as_tensor(100.0),
        reset_method=reset_subtract if v_reset is None else reset_value,
    )
    state = LIFBoxFeedForwardState(v=torch.full(SHAPE, leak, dtype=torch.float64))
    zs, vs = [], []
    for x_t in x:
        z, state = lif_box_feed_forward_step(x_t, state, p, dt=1.0)
        zs.append(z)
        vs.append(state.v)
    p_s, p_v = torch.stack(zs), torch.stack(vs)
    p_g = _grads((p_s * w_s).sum() + (p_v * w_m).sum(), [x])

    neuron = LIF(tau=1 / TAU_INV, decay_input=True, v_reset=v_reset, v_threshold=TH, strict=True,
                 detach_reset=False, surrogate=SuperSpike(beta=1.0))
    s, _, v = _nasflow_trace(neuron, x)
    _assert_rate(s)
    _assert_same(p_s, p_v, p_g, s, v, _grads((s * w_s).sum() + (v * w_m).sum(), [x]))
    s_fused = neuron(x)
    assert torch.equal(s_fused, p_s)
    torch.testing.assert_close(_grads((s_fused * w_s).sum() + (neuron.last_state.v * w_m[-1]).sum(), [x])[0],
                               _grads((p_s * w_s).sum() + (p_v[-1] * w_m[-1]).sum(), [x])[0],
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("v_reset", [0.0, -0.5], ids=["hard0", "hard-.5"])
def test_norse_lif_with_instant_current(v_reset):
    pytest.importorskip("norse")
    from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, lif_feed_forward_step

    x = _input(5, -0.5, 3.0)
    w_s, w_m = _weights(5)
    p = LIFParameters(
        tau_syn_inv=torch.as_tensor(1.0), tau_mem_inv=torch.as_tensor(TAU_INV), v_leak=torch.as_tensor(v_reset),
        v_th=torch.as_tensor(TH), v_reset=torch.as_tensor(v_reset), method="super", alpha=torch.as_tensor(100.0),
    )
    state = LIFFeedForwardState(v=torch.full(SHAPE, v_reset, dtype=torch.float64),
                                i=torch.zeros(SHAPE, dtype=torch.float64))
    zs, vs = [], []
    for x_t in x:
        z, state = lif_feed_forward_step(x_t, state, p, dt=1.0)
        assert torch.count_nonzero(state.i) == 0  # dt·τ_syn_inv = 1: the current does not outlive its step
        zs.append(z)
        vs.append(state.v)
    p_s, p_v = torch.stack(zs), torch.stack(vs)
    p_g = _grads((p_s * w_s).sum() + (p_v * w_m).sum(), [x])

    neuron = LIF(tau=1 / TAU_INV, decay_input=True, v_reset=v_reset, v_threshold=TH, strict=True,
                 detach_reset=False, surrogate=SuperSpike(beta=1.0))
    s, _, v = _nasflow_trace(neuron, x)
    _assert_rate(s)
    _assert_same(p_s, p_v, p_g, s, v, _grads((s * w_s).sum() + (v * w_m).sum(), [x]))
    assert torch.equal(neuron(x), p_s)


# ===============================================================================================================
# SpikingJelly 0.0.0.0.14 (spikingjelly/clock_driven/neuron.py, surrogate.py), multi-step nodes, torch backend
#
#   charge: IF v += x;  LIF decay_input: v += (x - (v - v_reset))/τ, else v -= (v - v_reset)/τ - x
#           (v_reset None or 0: leak towards 0);  PLIF the same with 1/τ = sigmoid(w), w0 = -ln(τ0 - 1).
#   fire:   Θ(v - v_th) with heaviside = (x >= 0)  ->  strict=False.
#   reset:  hard (1 - s)v + s·v_reset, soft (v_reset=None) v - s·v_th, s detached iff detach_reset.
#   v starts at v_reset (0 for soft); ``v_seq`` holds the post-reset V.  All of it is nasflow's semantics: exact.
#   surrogate.ATan(α=2): α/2 / (1 + (π/2·α·x)²) = nasflow ATan(2).
# ===============================================================================================================
SJ_KINDS = ["IF", "LIF_di", "LIF_nodi", "PLIF_di", "PLIF_nodi"]


def _sj_pair(kind, v_reset, detach):
    from spikingjelly.clock_driven import neuron as sjn
    from spikingjelly.clock_driven import surrogate as sjs

    common_sj = dict(v_threshold=TH, v_reset=v_reset, surrogate_function=sjs.ATan(alpha=2.0), detach_reset=detach)
    common = dict(v_threshold=TH, v_reset=v_reset, strict=False, detach_reset=detach, surrogate=ATan(2.0))
    if kind == "IF":
        return sjn.MultiStepIFNode(backend="torch", **common_sj), IF(**common)
    di = kind.endswith("_di")
    if kind.startswith("LIF"):
        tau = 2.0 if di else 4.0
        return (sjn.MultiStepLIFNode(tau=tau, decay_input=di, backend="torch", **common_sj),
                LIF(tau=tau, decay_input=di, **common))
    sj = sjn.MultiStepParametricLIFNode(init_tau=2.0, decay_input=di, backend="torch", **common_sj)
    ours = PLIF(tau0=2.0, decay_input=di, **common)
    assert sj.w.item() == ours.w.item() == 0.0
    with torch.no_grad():  # move both off w0 so that 1/τ = sigmoid(.4) is not a round number
        sj.w.fill_(0.4)
        ours.w.fill_(0.4)
    return sj.double(), ours.double()


@pytest.mark.parametrize("kind", SJ_KINDS)
@pytest.mark.parametrize("v_reset", [0.0, -0.5, None], ids=["hard0", "hard-.5", "soft"])
@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detached"])
def test_spikingjelly_multistep(kind, v_reset, detach):
    pytest.importorskip("spikingjelly")
    seed = 10 + SJ_KINDS.index(kind) * 8 + [0.0, -0.5, None].index(v_reset) * 2 + int(detach)
    x = _input(seed, -0.5, 2.5)
    w_s, w_m = _weights(seed)
    sj, ours = _sj_pair(kind, v_reset, detach)
    params_sj = [x] + ([sj.w] if kind.startswith("PLIF") else [])
    params = [x] + ([ours.w] if kind.startswith("PLIF") else [])

    p_s = sj(x)
    p_v = sj.v_seq
    p_g = _grads((p_s * w_s).sum() + (p_v * w_m).sum(), params_sj)

    s, _, v = _nasflow_trace(ours, x)
    _assert_rate(s)
    _assert_same(p_s, p_v, p_g, s, v, _grads((s * w_s).sum() + (v * w_m).sum(), params))

    # The fused kernel: spikes, final V and gradients of a loss on spikes and the final V.
    sj.reset()
    p_s = sj(x)
    p_g = _grads((p_s * w_s).sum() + (sj.v_seq[-1] * w_m[-1]).sum(), params_sj)
    s_fused = ours(x)
    g = _grads((s_fused * w_s).sum() + (ours.last_state.v * w_m[-1]).sum(), params)
    assert torch.equal(s_fused, p_s)
    torch.testing.assert_close(ours.last_state.v, sj.v_seq[-1], rtol=1e-12, atol=1e-12)
    for a, b in zip(g, p_g):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
