"""Spiking neurons (REFERENCE.md §1) as pure step functions with thin module shells.

Tensors are time-first ``[T, B, ...]``. ``H`` is the membrane before firing, ``V`` after reset.
Every convention that differs between codebases is a parameter:

* ``v_reset``: a float for hard reset (``V = H(1-S) + v_reset S``), ``None`` for soft reset
  (``V = H - v_th S``, leaking towards 0);
* ``strict``: fire on ``H > v_th`` (NIR, Lava, snnTorch) or ``H >= v_th`` (SpikingJelly, AutoSNN);
* ``detach_reset``: cut the gradient through the reset path;
* ``decay_input`` for LIF: ``H = V + (X - (V - v_reset))/τ`` or ``H = V - (V - v_reset)/τ + X``.

IF, LIF and PLIF run their whole time loop in one autograd function (``LeakyIntegrateSeq``)
that saves only ``H`` and recomputes the rest in backward: the per-step autograd graph of a
plain loop is what makes SNN training slow and memory-hungry. With the compiled kernel built
(``nasflow.kernels``), IF/LIF/PLIF, ALIF and CUBA all run their loops in C++ (``compiled.py``);
without it ALIF and CUBA use the plain step loop. ``Neuron.forward_steps`` runs any neuron that
way and is the reference every faster path is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from nasflow.snn.compiled import AdaptiveSeq, CubaSeq, kernel_backward, kernel_forward, kernel_ops
from nasflow.snn.surrogate import ATan, Surrogate

__all__ = ["ALIF", "CUBA", "IF", "LIF", "PLIF", "LoopParams", "Neuron", "NeuronState", "loop_params", "reset_states"]


class NeuronState(NamedTuple):
    """State carried between steps: membrane ``v`` and, for ALIF/CUBA, one more variable."""

    v: torch.Tensor
    aux: torch.Tensor | None = None


def _reset(h: torch.Tensor, s: torch.Tensor, v_th: float, v_reset: float | None) -> torch.Tensor:
    if v_reset is None:
        return h - v_th * s
    return h * (1 - s) + v_reset * s


class Neuron(nn.Module):
    """Base class of multi-step spiking neurons.

    ``forward(x)`` takes ``[T, B, ...]`` and returns spikes of the same shape. With
    ``stateful=True`` the last state is kept between calls until ``reset()``; otherwise every
    call starts from rest. ``last_state`` holds the final state of the last call either way.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        detach_reset: bool = False,
        strict: bool = False,
        surrogate: Surrogate | None = None,
        stateful: bool = False,
    ) -> None:
        super().__init__()
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = detach_reset
        self.strict = strict
        self.surrogate = surrogate if surrogate is not None else ATan()
        self.stateful = stateful
        self.last_state: NeuronState | None = None

    # -- to be provided by subclasses -------------------------------------------------
    def initial_state(self, x_t: torch.Tensor) -> NeuronState:
        rest = 0.0 if self.v_reset is None else self.v_reset
        return NeuronState(torch.full_like(x_t, rest))

    def charge(self, x_t: torch.Tensor, state: NeuronState) -> torch.Tensor:
        raise NotImplementedError

    def threshold(self, state: NeuronState) -> torch.Tensor | float:
        return self.v_threshold

    def next_state(self, h: torch.Tensor, s: torch.Tensor, state: NeuronState) -> NeuronState:
        s_reset = s.detach() if self.detach_reset else s
        return NeuronState(_reset(h, s_reset, self.v_threshold, self.v_reset), state.aux)

    # -- shared machinery -------------------------------------------------------------
    def step(self, x_t: torch.Tensor, state: NeuronState | None = None):
        """One time step: returns ``(spikes, H, new_state)``."""
        if state is None:
            state = self.initial_state(x_t)
        h = self.charge(x_t, state)
        s = self.surrogate(h - self.threshold(state), self.strict)
        return s, h, self.next_state(h, s, state)

    def forward_steps(self, x: torch.Tensor, state: NeuronState | None = None):
        """Plain per-step loop with autograd through every step: ``(spikes, H, last_state)``."""
        spikes, mems = [], []
        for x_t in x:
            s, h, state = self.step(x_t, state)
            spikes.append(s)
            mems.append(h)
        return torch.stack(spikes), torch.stack(mems), state

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(
                f"{type(self).__name__} expects time-first input [T, B, ...], got shape {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        state = self.last_state if self.stateful else None
        if state is not None and state.v.shape != x.shape[1:]:
            raise ValueError(
                f"{type(self).__name__}: carried state has shape {tuple(state.v.shape)} but the "
                f"input step has {tuple(x.shape[1:])}; call reset() between batches of different size"
            )
        spikes, state = self._run(x, state)
        self.last_state = state
        return spikes

    def _run(self, x: torch.Tensor, state: NeuronState | None):
        spikes, _, state = self.forward_steps(x, state)
        return spikes, state

    def reset(self) -> None:
        """Forget the carried state (the next call starts from rest)."""
        self.last_state = None

    def extra_repr(self) -> str:
        reset = "soft" if self.v_reset is None else f"hard(v_reset={self.v_reset})"
        cmp = ">" if self.strict else ">="
        return f"v_th={self.v_threshold}, reset={reset}, fire=H{cmp}v_th, detach_reset={self.detach_reset}"


def reset_states(model: nn.Module) -> None:
    """Reset every neuron of ``model`` (explicit, no global registry of neurons)."""
    for m in model.modules():
        if isinstance(m, Neuron):
            m.reset()


# --------------------------------------------------------------------------------------
# Fused leaky-integrate-and-fire over time: H = (1-k) V + b X + k·v_leak.
#   IF: k = 0, b = 1.   LIF decay_input: b = k.   LIF without decay_input: b = 1.
# --------------------------------------------------------------------------------------
def fire_mask(h: torch.Tensor, th: float, strict: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """Spike mask ``h > th`` (``strict``) or ``h >= th``; shared with the fused BN+neuron loop so both fire alike."""
    return torch.gt(h, th, out=out) if strict else torch.ge(h, th, out=out)


def reset_from_mask(h: torch.Tensor, m: torch.Tensor, th: float, vr: float | None) -> torch.Tensor:
    """Membrane after the spikes ``m``: subtract ``th`` (soft reset, ``vr is None``) or set ``vr`` (hard reset)."""
    if vr is None:
        return torch.where(m, h - th, h)
    return h.masked_fill(m, vr)


@dataclass(frozen=True)
class LoopParams:
    """The settings of an IF/LIF/PLIF time loop without the module: what autograd contexts keep.

    A context holding the module itself would form a reference cycle (module → ``last_state.v`` → its
    ``grad_fn`` → context → module) that only Python's cyclic collector breaks, so every step's graph, with
    its activations, would stay alive until the next collection (seen as RSS growing by ~100 MB per step)."""

    v_threshold: float
    v_reset: float | None
    strict: bool
    detach_reset: bool
    decay_input_eff: bool
    leak_target: float
    surrogate: Surrogate

    def initial_state(self, x_t: torch.Tensor) -> NeuronState:
        return NeuronState(torch.full_like(x_t, 0.0 if self.v_reset is None else self.v_reset))


def loop_params(neuron: Neuron) -> LoopParams:
    """``neuron``'s loop settings (``LoopParams``)."""
    return LoopParams(neuron.v_threshold, neuron.v_reset, neuron.strict, neuron.detach_reset,
                      bool(getattr(neuron, "decay_input_eff", False)), float(getattr(neuron, "leak_target", 0.0)),
                      neuron.surrogate)


class LeakyIntegrateSeq(torch.autograd.Function):
    """Whole-sequence IF/LIF/PLIF: forward writes H in place and keeps a bool spike mask; backward
    walks time in reverse recomputing masks from H (ATan in closed form with fused ops)."""

    @staticmethod
    def forward(ctx, x, k, v0, neuron):  # type: ignore[override]
        k_val = float(k) if torch.is_tensor(k) else k
        ctx.neuron, ctx.k = loop_params(neuron), k_val
        ctx.k_requires_grad = torch.is_tensor(k) and k.requires_grad
        ops = kernel_ops(x, neuron)
        ctx.kernel = ops is not None
        if ops is not None:
            save = any(ctx.needs_input_grad)
            s, h, v = kernel_forward(ops, x, v0, k_val, neuron, save)
            ctx.save_for_backward(h, v0)
            return s, v
        di = neuron.decay_input_eff
        b = k_val if di else 1.0
        vl = neuron.leak_target
        th, vr, strict = neuron.v_threshold, neuron.v_reset, neuron.strict
        T = x.shape[0]
        h_seq = torch.empty_like(x)  # keeps channels_last (an expanded x gives a dense result)
        m_seq = torch.empty_like(h_seq, dtype=torch.bool)
        v = v0
        for t in range(T):
            h = h_seq[t]
            if di and not vl:
                torch.lerp(v, x[t], k_val, out=h)  # v + k (x - v)
            else:
                torch.mul(v, 1.0 - k_val, out=h)
                h.add_(x[t], alpha=b)
                if k_val and vl:
                    h.add_(k_val * vl)
            fire_mask(h, th, strict, out=m_seq[t])
            v = reset_from_mask(h, m_seq[t], th, vr)
        ctx.save_for_backward(h_seq, v0)
        return m_seq.to(x.dtype), v

    @staticmethod
    def backward(ctx, grad_s, grad_v_last):  # type: ignore[override]
        h_seq, v0 = ctx.saved_tensors
        n = ctx.neuron
        if getattr(ctx, "kernel", False):
            ops = kernel_ops(h_seq, n)
            gx, gk, gv0 = kernel_backward(ops, grad_s, h_seq, v0, grad_v_last, ctx.k, n, ctx.k_requires_grad)
            return gx, (gk.to(h_seq.dtype) if gk is not None else None), gv0, None
        k, th, vr, strict = ctx.k, n.v_threshold, n.v_reset, n.strict
        di = n.decay_input_eff
        b = k if di else 1.0
        sur = n.surrogate
        atan = type(sur) is ATan
        T = h_seq.shape[0]
        grad_x = torch.empty_like(h_seq)
        # gv holds dL/dV[t] / (1 - k) ("unscaled"), so that dL/dH[t] = g·grad_s + (1-k)·gv·dV/dH
        gv = None
        if grad_v_last is not None:
            gv = grad_v_last
        gv_scale = 1.0
        grad_k = h_seq.new_zeros(()) if ctx.k_requires_grad else None
        one = torch.ones((), dtype=h_seq.dtype)
        m_t = fire_mask(h_seq[T - 1], th, strict)
        buf = torch.empty_like(h_seq[0])
        for t in range(T - 1, -1, -1):
            h = h_seq[t]
            gh = torch.empty_like(h)
            if atan:
                # g·grad_s = (α/2) grad_s / (1 + (π α/2)² (h - th)²)
                c = (torch.pi / 2 * sur.alpha) ** 2
                torch.sub(h, th, out=buf)
                torch.addcmul(one, buf, buf, value=c, out=gh)
                torch.div(grad_s[t], gh, out=gh)
                gh.mul_(sur.alpha / 2)
                g = None
            else:
                g = sur.grad(h - th)
                torch.mul(grad_s[t], g, out=gh)
            if gv is not None:
                if vr is None:
                    if n.detach_reset:
                        gh.add_(gv, alpha=gv_scale)
                    else:
                        if g is None:
                            g = sur.grad(h - th)
                        gh.add_(gv * (1 - th * g), alpha=gv_scale)
                else:
                    if n.detach_reset:
                        gh.add_(gv.masked_fill(m_t, 0.0), alpha=gv_scale)
                    else:
                        if g is None:
                            g = sur.grad(h - th)
                        dv_dh = (~m_t).to(h.dtype) + (vr - h) * g
                        gh.add_(gv * dv_dh, alpha=gv_scale)
            torch.mul(gh, b, out=grad_x[t])
            m_prev = fire_mask(h_seq[t - 1], th, strict) if t > 0 else None
            if grad_k is not None:
                v_prev = v0 if t == 0 else reset_from_mask(h_seq[t - 1], m_prev, th, vr)
                if di:
                    # dh/dk = (h - v_prev)/k
                    grad_k = grad_k + (torch.vdot(gh.reshape(-1), h.reshape(-1))
                                       - torch.vdot(gh.reshape(-1), v_prev.reshape(-1))) / k
                else:
                    grad_k = grad_k + (gh * (n.leak_target - v_prev)).sum()
            gv = gh
            gv_scale = 1 - k
            m_t = m_prev
        grad_v0 = gv * gv_scale if gv is not None else torch.zeros_like(v0)
        return grad_x, grad_k, grad_v0, None



class IF(Neuron):
    """Integrate-and-fire: ``H = V + X``."""

    decay_input_eff = False
    leak_target = 0.0

    def charge(self, x_t, state):
        return state.v + x_t

    def _run(self, x, state):
        v0 = state.v if state is not None else self.initial_state(x[0]).v
        s, v = LeakyIntegrateSeq.apply(x, 0.0, v0, self)
        return s, NeuronState(v)


class LIF(Neuron):
    """Leaky integrate-and-fire with time constant ``tau`` (in steps, ``τ > 1``).

    ``decay_input=True``: ``H = V + (X - (V - v_leak))/τ``; ``False``: ``H = V - (V - v_leak)/τ + X``.
    The leak target ``v_leak`` is ``v_reset`` for hard reset and 0 for soft reset.
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if not tau >= 1.0:
            raise ValueError(f"LIF tau must be >= 1 (in time steps), got {tau}")
        self.tau = float(tau)
        self.decay_input = decay_input

    @property
    def decay_input_eff(self) -> bool:
        return self.decay_input

    @property
    def leak_target(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def inv_tau(self):
        return 1.0 / self.tau

    def charge(self, x_t, state):
        k = self.inv_tau()
        leak = (state.v - self.leak_target) * k
        return state.v - leak + (x_t * k if self.decay_input else x_t)

    def _run(self, x, state):
        v0 = state.v if state is not None else self.initial_state(x[0]).v
        s, v = LeakyIntegrateSeq.apply(x, self.inv_tau(), v0, self)
        return s, NeuronState(v)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self.decay_input}, " + super().extra_repr()


class PLIF(LIF):
    """Parametric LIF: ``1/τ = sigmoid(w)`` with one learnable ``w`` per layer, ``w0 = -ln(τ0 - 1)``."""

    def __init__(self, tau0: float = 2.0, decay_input: bool = True, **kwargs) -> None:
        super().__init__(tau=tau0, decay_input=decay_input, **kwargs)
        if not tau0 > 1.0:
            raise ValueError(f"PLIF tau0 must be > 1, got {tau0}")
        self.w = nn.Parameter(torch.tensor(-math.log(tau0 - 1.0)))

    def inv_tau(self):
        return torch.sigmoid(self.w)

    @property
    def tau_value(self) -> float:
        """The current (trained) time constant in steps."""
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def extra_repr(self) -> str:
        return f"tau={self.tau_value:.4g} (learnable), " + Neuron.extra_repr(self)


class ALIF(LIF):
    """Adaptive LIF: threshold ``v_th + β a[t]`` with ``a[t] = ρ a[t-1] + S[t-1]``."""

    def __init__(self, tau: float = 2.0, beta: float = 0.2, rho: float = 0.9, **kwargs) -> None:
        super().__init__(tau=tau, **kwargs)
        self.beta = float(beta)
        self.rho = float(rho)

    def initial_state(self, x_t):
        base = super().initial_state(x_t)
        # aux holds (a[t-1], S[t-1]) stacked so that a[t] = ρ a[t-1] + S[t-1].
        return NeuronState(base.v, torch.zeros((2, *x_t.shape), dtype=x_t.dtype, device=x_t.device))

    def threshold(self, state):
        a = self.rho * state.aux[0] + state.aux[1]
        return self.v_threshold + self.beta * a

    def next_state(self, h, s, state):
        a = self.rho * state.aux[0] + state.aux[1]
        s_reset = s.detach() if self.detach_reset else s
        if self.v_reset is not None:
            v = _reset(h, s_reset, self.v_threshold, self.v_reset)
        else:  # soft reset subtracts the adapted threshold that was crossed
            v = h - self.threshold(state) * s_reset
        return NeuronState(v, torch.stack([a, s]))

    def _run(self, x, state):
        if kernel_ops(x, self) is None:
            return Neuron._run(self, x, state)
        if state is None:
            state = self.initial_state(x[0])
        k = float(self.inv_tau())
        s, v, a = AdaptiveSeq.apply(x, state.v, state.aux[0], state.aux[1], self, (k,), (self.beta,), (self.rho,))
        s = s[0]
        return s, NeuronState(v[0], torch.stack([a[0], s[-1]]))

    def extra_repr(self) -> str:
        return f"beta={self.beta}, rho={self.rho}, " + super().extra_repr()


class CUBA(Neuron):
    """Current-based LIF as in Loihi / Lava: ``u = u(1-du) + x``; ``v = v(1-dv) + u + bias``.

    Lava's own convention is ``strict=True`` (``v > vth``) and hard reset to 0, the defaults here.
    """

    def __init__(self, du: float = 0.5, dv: float = 0.5, bias: float = 0.0, strict: bool = True, **kwargs) -> None:
        super().__init__(strict=strict, **kwargs)
        for name, d in (("du", du), ("dv", dv)):
            if not 0.0 <= d <= 1.0:
                raise ValueError(f"CUBA {name} must lie in [0, 1], got {d}")
        self.du, self.dv, self.bias = float(du), float(dv), float(bias)

    def initial_state(self, x_t):
        # Rest is where v decays to (0, as in Lava and NIR's CubaLIF with v_leak = 0), not v_reset.
        return NeuronState(torch.zeros_like(x_t), torch.zeros_like(x_t))

    def step(self, x_t, state=None):
        if state is None:
            state = self.initial_state(x_t)
        u = state.aux * (1 - self.du) + x_t
        h = state.v * (1 - self.dv) + u + self.bias
        s = self.surrogate(h - self.v_threshold, self.strict)
        s_reset = s.detach() if self.detach_reset else s
        return s, h, NeuronState(_reset(h, s_reset, self.v_threshold, self.v_reset), u)

    def _run(self, x, state):
        if kernel_ops(x, self) is None:
            return Neuron._run(self, x, state)
        if state is None:
            state = self.initial_state(x[0])
        s, v, u = CubaSeq.apply(x, state.v, state.aux, self)
        return s, NeuronState(v, u)

    def extra_repr(self) -> str:
        return f"du={self.du}, dv={self.dv}, bias={self.bias}, " + super().extra_repr()
