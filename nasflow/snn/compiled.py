"""The bridge between nasflow's neurons and the compiled time loops of ``nasflow.kernels``.

Every function here takes the neuron's settings by duck typing (``v_threshold``, ``v_reset``, ``strict``,
``detach_reset``, ``surrogate``, and the dynamics' own constants) so that ``neurons.py`` and ``fused.py`` share one
call convention. ``kernel_ops`` decides whether the kernel can run at all (CPU, float32/64, a known surrogate); the
callers fall back to the torch loops otherwise. The autograd functions save only ``H`` (the membrane before firing)
and recompute the rest in backward; under ``torch.no_grad()`` they save nothing.

The candidate functions run ``G`` settings of one neuron on one shared input (TPS's batched pass): the kernel reads
the input once per candidate without materialising a ``[G, T, ...]`` copy of it, and sums the input gradient over the
candidates itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nasflow import kernels
from nasflow.snn.surrogate import ATan, Dspike, Sigmoid, SuperSpike, Triangle

__all__ = ["AdaptiveSeq", "CubaSeq", "candidate_leaky", "kernel_backward", "kernel_forward", "kernel_ops"]

_SURROGATE_IDS = {ATan: (0, "alpha"), Sigmoid: (1, "alpha"), Triangle: (2, "width"), SuperSpike: (3, "beta"),
                  Dspike: (4, "b")}


def _surrogate(neuron) -> tuple[int, float]:
    sid, name = _SURROGATE_IDS[type(neuron.surrogate)]
    return sid, float(getattr(neuron.surrogate, name))


def _flat(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return t.expand(shape).reshape(-1).contiguous()


def _soft_vr(neuron) -> tuple[bool, float]:
    vr = neuron.v_reset
    return vr is None, 0.0 if vr is None else float(vr)


def kernel_ops(x: torch.Tensor, neuron):
    """The compiled kernel module for ``neuron`` on ``x``, or None for the torch loop (no build, forced fallback,
    not on CPU, not float32/64, or a surrogate the kernel does not know)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    if type(neuron.surrogate) not in _SURROGATE_IDS:
        return None
    return kernels.ops()


def kernel_forward(ops, x: torch.Tensor, v0: torch.Tensor, k: float, neuron, save_h: bool, spikes: bool = True):
    """``(spikes or None, H or None, last V)`` of ``LeakyIntegrateSeq``'s IF/LIF/PLIF loop on ``x [T, ...]``
    (``spikes=False``: only ``H``, for a backward that recomputes it)."""
    b = k if neuron.decay_input_eff else 1.0
    soft, vr = _soft_vr(neuron)
    steps = x.shape[0]
    s, h, v = ops.lif_forward(x.reshape(steps, -1).contiguous(), _flat(v0, x.shape[1:]), [k], [1.0 - k], [b],
                              neuron.leak_target, neuron.v_threshold, soft, vr, neuron.strict, save_h, False, spikes)
    return (s.view(x.shape) if spikes else None), (h.view(x.shape) if save_h else None), v.view(x.shape[1:])


def kernel_backward(ops, grad_s: torch.Tensor, h_seq: torch.Tensor, v0: torch.Tensor,
                    grad_v_last: torch.Tensor | None, k: float, neuron, need_k: bool):
    """``(grad_x, grad_k or None, grad_v0)`` of the IF/LIF/PLIF loop (exact BPTT from the saved ``H``)."""
    sid, p = _surrogate(neuron)
    soft, vr = _soft_vr(neuron)
    steps = h_seq.shape[0]
    gvl = grad_v_last.reshape(1, -1).contiguous() if grad_v_last is not None else h_seq.new_empty(0)
    gx, gv0, gk = ops.lif_backward(
        grad_s.reshape(1, steps, -1).contiguous(), h_seq.reshape(1, steps, -1).contiguous(),
        _flat(v0, h_seq.shape[1:]), gvl, [k], [k if neuron.decay_input_eff else 1.0], neuron.leak_target,
        neuron.v_threshold, soft, vr, neuron.strict, neuron.detach_reset, sid, p, neuron.decay_input_eff, need_k)
    return gx.view(h_seq.shape), (gk[0] if need_k else None), gv0.view(h_seq.shape[1:]).sum_to_size(v0.shape)


class _CandidateLeaky(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, neuron, ks):  # type: ignore[override]
        ops = kernels.ops()
        di = bool(neuron.decay_input_eff)
        bs = [k if di else 1.0 for k in ks]
        soft, vr = _soft_vr(neuron)
        steps = x.shape[0]
        x2 = x.reshape(steps, -1).contiguous()
        rest = torch.full((x2.shape[1],), 0.0 if soft else vr, dtype=x.dtype)
        save = ctx.needs_input_grad[0]
        s, h, _ = ops.lif_forward(x2, rest, list(ks), [1.0 - k for k in ks], bs, neuron.leak_target,
                                  neuron.v_threshold, soft, vr, neuron.strict, save, True, True)
        ctx.params = (neuron.leak_target, neuron.v_threshold, soft, vr, neuron.strict, neuron.detach_reset,
                      *_surrogate(neuron), di, list(ks), bs)
        ctx.shape = x.shape
        ctx.save_for_backward(h, rest)
        return s.view(len(ks), *x.shape)

    @staticmethod
    def backward(ctx, grad_s):  # type: ignore[override]
        h, rest = ctx.saved_tensors
        vl, th, soft, vr, strict, detach, sid, p, di, ks, bs = ctx.params
        gs = grad_s.reshape(h.shape).contiguous()
        gx, _, _ = kernels.ops().lif_backward(gs, h, rest, h.new_empty(0), ks, bs, vl, th, soft, vr, strict, detach,
                                              sid, p, di, False)
        return gx.sum(0).view(ctx.shape), None, None


def candidate_leaky(neuron, x: torch.Tensor, ks: Sequence[float]) -> torch.Tensor:
    """Spikes ``[G, T, ...]`` of an IF/LIF/PLIF ``neuron`` from rest for each leak ``k`` in ``ks`` (the step loop's
    arithmetic, so the spikes equal ``forward_steps`` with ``inv_tau() = k``); the caller checks ``kernel_ops``."""
    return _CandidateLeaky.apply(x, neuron, tuple(float(k) for k in ks))


class AdaptiveSeq(torch.autograd.Function):
    """ALIF over ``G`` candidates of ``(k, beta, rho)`` from the state ``(v0, a0, s0)`` (``a[-1]``, ``S[-1]``):
    returns spikes ``[G, T, ...]``, ``V[T-1]`` and ``a[T-1]`` ``[G, ...]``. Gradients flow to ``x`` and the state."""

    @staticmethod
    def forward(ctx, x, v0, a0, s0, neuron, ks, betas, rhos):  # type: ignore[override]
        ops = kernels.ops()
        di = bool(neuron.decay_input_eff)
        bs = [k if di else 1.0 for k in ks]
        soft, vr = _soft_vr(neuron)
        steps, shape = x.shape[0], x.shape[1:]
        flat = [_flat(t, shape) for t in (v0, a0, s0)]
        save = any(ctx.needs_input_grad[:4])
        s, h, v, a = ops.alif_forward(x.reshape(steps, -1).contiguous(), *flat, list(ks), bs, list(betas),
                                      list(rhos), neuron.leak_target, neuron.v_threshold, soft, vr, neuron.strict,
                                      save)
        ctx.params = (list(ks), bs, list(betas), list(rhos), neuron.v_threshold, soft, vr, neuron.strict,
                      neuron.detach_reset, *_surrogate(neuron))
        ctx.shapes = (x.shape, v0.shape, a0.shape, s0.shape)
        ctx.save_for_backward(h, flat[1], flat[2])
        g = len(ks)
        return s.view(g, *x.shape), v.view(g, *shape), a.view(g, *shape)

    @staticmethod
    def backward(ctx, grad_s, grad_v, grad_a):  # type: ignore[override]
        h, a0, s0 = ctx.saved_tensors
        ks, bs, betas, rhos, th, soft, vr, strict, detach, sid, p = ctx.params
        g = h.shape[0]
        empty = h.new_empty(0)
        gs = grad_s.reshape(h.shape).contiguous() if grad_s is not None else torch.zeros_like(h)
        gv = grad_v.reshape(g, -1).contiguous() if grad_v is not None else empty
        ga = grad_a.reshape(g, -1).contiguous() if grad_a is not None else empty
        gx, gv0, ga0, gs0 = kernels.ops().alif_backward(gs, h, a0, s0, gv, ga, empty, ks, bs, betas, rhos, th, soft,
                                                        vr, strict, detach, sid, p)
        x_shape, v_shape, a_shape, s_shape = ctx.shapes
        state = x_shape[1:]
        return (gx.sum(0).view(x_shape), gv0.sum(0).view(state).sum_to_size(v_shape),
                ga0.sum(0).view(state).sum_to_size(a_shape), gs0.sum(0).view(state).sum_to_size(s_shape),
                None, None, None, None)


class CubaSeq(torch.autograd.Function):
    """CUBA from the state ``(v0, u0)``: returns spikes ``[T, ...]``, ``V[T-1]`` and ``U[T-1]``."""

    @staticmethod
    def forward(ctx, x, v0, u0, neuron):  # type: ignore[override]
        ops = kernels.ops()
        soft, vr = _soft_vr(neuron)
        steps, shape = x.shape[0], x.shape[1:]
        save = any(ctx.needs_input_grad[:3])
        s, h, v, u = ops.cuba_forward(x.reshape(steps, -1).contiguous(), _flat(v0, shape), _flat(u0, shape),
                                      1 - neuron.du, 1 - neuron.dv, neuron.bias, neuron.v_threshold, soft, vr,
                                      neuron.strict, save)
        ctx.params = (1 - neuron.du, 1 - neuron.dv, neuron.v_threshold, soft, vr, neuron.strict,
                      neuron.detach_reset, *_surrogate(neuron))
        ctx.shapes = (x.shape, v0.shape, u0.shape)
        ctx.save_for_backward(h)
        return s.view(x.shape), v.view(shape), u.view(shape)

    @staticmethod
    def backward(ctx, grad_s, grad_v, grad_u):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        omdu, omdv, th, soft, vr, strict, detach, sid, p = ctx.params
        empty = h.new_empty(0)
        gs = grad_s.reshape(h.shape).contiguous() if grad_s is not None else torch.zeros_like(h)
        gv = grad_v.reshape(-1).contiguous() if grad_v is not None else empty
        gu = grad_u.reshape(-1).contiguous() if grad_u is not None else empty
        gx, gv0, gu0 = kernels.ops().cuba_backward(gs, h, gv, gu, omdu, omdv, th, soft, vr, strict, detach, sid, p)
        x_shape, v_shape, u_shape = ctx.shapes
        state = x_shape[1:]
        return gx.view(x_shape), gv0.view(state).sum_to_size(v_shape), gu0.view(state).sum_to_size(u_shape), None
