"""Fused ``BatchNorm + neuron`` for training: keep the conv output, recompute BN output and ``H``.

In a ``conv → BN → IF/LIF/PLIF`` layer trained the plain way, autograd keeps the conv output
(for BN's backward) *and* the neuron's membrane ``H`` (for the neuron's backward): two full
``[T, B, C, H, W]`` float tensors per layer. ``_BNLeakyIntegrate`` runs BN (training mode,
batch statistics) and the neuron's whole time loop in one autograd function that saves only
the conv output and BN's per-channel statistics; backward recomputes the BN output and ``H``
(one cheap elementwise pass) and then runs the neuron's and BN's backward.

Module structure is unchanged: the conv and BN stay in their ``TimeDistributed`` /
``DirectEncoder`` wrapper and the neuron stays a ``Neuron`` module, so state_dict keys,
checkpoints and forward hooks (``ActivityMonitor``) behave exactly as in the plain path. The
wrapper is called with ``pre_norm=True`` (it runs only its conv, its forward hooks still see the
conv input) and the neuron module is called on the conv output with its time loop swapped for
the fused function for that one call, so its forward hooks see the spikes.

``conv_bn_neuron(wrapper, neuron, x)`` picks the fused path when it is exact and applicable
(BN in training mode and affine, an IF/LIF/PLIF neuron that is not stateful, a surrogate with
``grad``) and the plain ``neuron(wrapper(x))`` otherwise (eval mode, ALIF/CUBA, ...).
``set_fusion(False)`` or ``with fusion(False):`` turns fusion off globally (A/B checks).

With ``set_fusion(True, spikes_as_bool=True)`` the spikes it returns are marked
(``layers.mark_spikes``), so the next conv and max-pool over them save their input as bool (1 byte)
for backward instead of float, as does a spiking residual addend: less memory, a few % more time.

BN semantics follow ``nn.BatchNorm2d`` exactly: batch statistics over ``T·B·H·W``, running
mean/variance updated with ``momentum`` (cumulative average when ``momentum is None``) and the
unbiased variance, ``num_batches_tracked`` incremented.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from nasflow.snn.compiled import kernel_backward, kernel_forward, kernel_ops
from nasflow.snn.layers import DirectEncoder, TimeDistributed, is_marked_spikes, mark_spikes
from nasflow.snn.neurons import (
    IF,
    LIF,
    LeakyIntegrateSeq,
    Neuron,
    NeuronState,
    fire_mask,
    loop_params,
    reset_from_mask,
)

__all__ = ["can_fuse", "conv_bn_neuron", "fusion", "fusion_enabled", "set_fusion"]

_ENABLED = True
_SPIKES_AS_BOOL = False


def set_fusion(enabled: bool, spikes_as_bool: bool | None = None) -> None:
    """Turn the fused BN+neuron training path on or off for every model (default on).

    ``spikes_as_bool=True`` also marks the fused path's spikes so that the next conv, max-pool and
    spiking residual save them as bool for backward (less memory, a few % slower on CPU; default off).
    """
    global _ENABLED, _SPIKES_AS_BOOL
    _ENABLED = bool(enabled)
    if spikes_as_bool is not None:
        _SPIKES_AS_BOOL = bool(spikes_as_bool)


def fusion_enabled() -> bool:
    return _ENABLED


@contextlib.contextmanager
def fusion(enabled: bool, spikes_as_bool: bool | None = None) -> Iterator[None]:
    """Context manager: ``with fusion(False): ...`` runs the plain path."""
    old = (_ENABLED, _SPIKES_AS_BOOL)
    set_fusion(enabled, spikes_as_bool)
    try:
        yield
    finally:
        set_fusion(*old)


def _conv_and_bn(wrapper: nn.Module) -> tuple[nn.Module, nn.BatchNorm2d] | None:
    if not isinstance(wrapper, (TimeDistributed, DirectEncoder)):
        return None
    seq = wrapper.module
    if isinstance(seq, nn.Sequential) and len(seq) == 2 and isinstance(seq[1], nn.BatchNorm2d):
        if isinstance(seq[0], nn.Conv2d):
            return seq[0], seq[1]
    return None


def can_fuse(wrapper: nn.Module, neuron: nn.Module) -> bool:
    """Whether ``neuron(wrapper(x))`` can run through the fused BN+neuron function."""
    if not _ENABLED or not isinstance(neuron, Neuron):
        return False
    pair = _conv_and_bn(wrapper)
    if pair is None:
        return False
    bn = pair[1]
    if not bn.training or not bn.affine:
        return False
    if type(neuron)._run not in (IF._run, LIF._run) or neuron.stateful:
        return False
    return callable(getattr(neuron.surrogate, "grad", None))


def _k_of(neuron: Neuron) -> torch.Tensor | float:
    return neuron.inv_tau() if isinstance(neuron, LIF) else 0.0


def _integrate(xs: torch.Tensor, hs: torch.Tensor, v0: torch.Tensor, k: float, neuron: Neuron,
               mask: torch.Tensor | None) -> torch.Tensor:
    """The IF/LIF time loop of ``LeakyIntegrateSeq.forward`` (same ops, so bit-identical) writing
    ``H`` into ``hs`` (may be ``xs`` itself: in place) and the spikes into ``mask``; returns the last V."""
    di, vl = neuron.decay_input_eff, neuron.leak_target
    b = k if di else 1.0
    th, vr, strict = neuron.v_threshold, neuron.v_reset, neuron.strict
    v = v0
    for t in range(xs.shape[0]):
        h = hs[t]
        if di and not vl:
            torch.lerp(v, xs[t], k, out=h)
        else:
            torch.add(torch.mul(v, 1.0 - k), xs[t], alpha=b, out=h)
            if k and vl:
                h.add_(k * vl)
        m = fire_mask(h, th, strict, out=None if mask is None else mask[t])
        v = _reset(h, m, th, vr)
    return v


def _bn_apply(y, weight, bias, mean, invstd, out=None):
    """``(y - mean)·invstd·weight + bias`` as ATen's CPU batch norm computes it for contiguous input
    (``y·α + β`` with ``α = invstd·weight``, ``β = bias - mean·α``): bit-identical there."""
    alpha = invstd * weight
    beta = bias - mean * alpha
    shape = (1, -1) + (1,) * (y.dim() - 2)
    return torch.addcmul(beta.view(shape), y, alpha.view(shape), out=out)


def _reset(h, m, th, vr):
    # Same values as neurons.reset_from_mask, one pass for hard reset (no clone + masked_fill).
    return reset_from_mask(h, m, th, vr) if vr is None else torch.where(m, vr, h)


class _Ctx:
    """Stand-in autograd context to drive ``LeakyIntegrateSeq.backward``."""

    def __init__(self, saved: tuple[torch.Tensor, ...], neuron: Neuron, k: float, k_requires_grad: bool) -> None:
        self.saved_tensors = saved
        self.neuron, self.k, self.k_requires_grad = neuron, k, k_requires_grad


def _drive_and_buffer(x: torch.Tensor, z: torch.Tensor | None, steps: int, direct: bool):
    """The neuron drive per step (BN output ``x`` [+ addend ``z``]) and the buffer H is written into.

    ``x`` is the caller's own buffer, so the addend is added in place; a direct-coded stem's single BN
    output is expanded over the steps (copied first when an addend must be added)."""
    if direct:
        xs = x.unsqueeze(0).expand(steps, *x.shape)
        hs = torch.empty_like(xs)
    else:
        xs = hs = x.unflatten(0, (steps, x.shape[0] // steps))
    if z is not None:
        if direct:
            hs.copy_(xs)
            xs = hs
        xs.add_(z)
    return xs, hs


class _BNLeakyIntegrate(torch.autograd.Function):
    """``spikes = LIF(BN_train(y) [+ z])`` over time. Saves ``y`` (and ``z``), mean, invstd."""

    @staticmethod
    def forward(ctx, y, z, weight, bias, k, bn, neuron, steps, direct, factor):  # type: ignore[override]
        x, mean, invstd = torch.native_batch_norm(
            y, weight, bias, bn.running_mean, bn.running_var, True, factor, bn.eps
        )
        if not y.is_contiguous():
            # BN's kernel for other layouts (channels_last) rounds differently from the elementwise
            # recompute in backward: use the recompute's formula here too, so forward and backward agree.
            _bn_apply(y, weight, bias, mean, invstd, out=x)
        k_val = float(k)
        xs, hs = _drive_and_buffer(x, z, steps, direct)
        v0 = neuron.initial_state(hs[0]).v
        ops = kernel_ops(xs, neuron)
        if ops is not None:  # the compiled loop: spikes straight into the output, H recomputed in backward
            spikes, _, v = kernel_forward(ops, xs, v0, k_val, neuron, False)
        else:
            mask = torch.empty_like(hs, dtype=torch.bool)
            v = _integrate(xs, hs, v0, k_val, neuron, mask)
            spikes = mask.to(y.dtype)
        del x, xs, hs
        ctx.z_bool = z is not None and is_marked_spikes(z)  # a spiking shortcut: keep it as bool
        ctx.save_for_backward(y, z.to(torch.bool) if ctx.z_bool else z, weight, bias, mean, invstd)
        ctx.bn, ctx.neuron, ctx.steps, ctx.direct, ctx.k = bn, loop_params(neuron), steps, direct, k_val
        ctx.mark_non_differentiable(v)
        return spikes, v

    @staticmethod
    def backward(ctx, grad_s, _grad_v):  # type: ignore[override]
        y, z, weight, bias, mean, invstd = ctx.saved_tensors
        bn, neuron, steps, direct, k = ctx.bn, ctx.neuron, ctx.steps, ctx.direct, ctx.k
        if ctx.z_bool:
            z = z.to(y.dtype)
        x = _bn_apply(y, weight, bias, mean, invstd)  # bit-identical to the forward's BN output
        xs, hs = _drive_and_buffer(x, z, steps, direct)
        v0 = neuron.initial_state(hs[0]).v
        ops = kernel_ops(xs, neuron)
        if ops is not None:
            _, hs, _ = kernel_forward(ops, xs, v0, k, neuron, True, spikes=False)
            del x, xs
            grad_x, grad_k, _ = kernel_backward(ops, grad_s, hs, v0, None, k, neuron, ctx.needs_input_grad[4])
        else:
            _integrate(xs, hs, v0, k, neuron, None)
            del x, xs
            lctx = _Ctx((hs, v0), neuron, k, ctx.needs_input_grad[4])
            grad_x, grad_k, _, _ = LeakyIntegrateSeq.backward(lctx, grad_s, None)
            del lctx
        del hs
        grad_z = grad_x if (z is not None and ctx.needs_input_grad[1]) else None
        gx = grad_x.sum(0) if direct else grad_x.flatten(0, 1)
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[2], ctx.needs_input_grad[3]]
        gy, gw, gb = torch.ops.aten.native_batch_norm_backward(
            gx, y, weight, bn.running_mean, bn.running_var, mean, invstd, True, bn.eps, mask
        )
        if grad_k is not None and not torch.is_tensor(grad_k):
            grad_k = None
        return gy, grad_z, gw, gb, grad_k, None, None, None, None, None


@contextlib.contextmanager
def _run_swapped(neuron: Neuron, run: Callable) -> Iterator[None]:
    """Swap ``neuron._run`` for one call so that the module's own ``__call__`` (and its hooks) runs."""
    neuron.__dict__["_run"] = run
    try:
        yield
    finally:
        del neuron.__dict__["_run"]


def _momentum_factor(bn: nn.BatchNorm2d) -> float:
    """Increment ``num_batches_tracked`` and return the running-stat factor, as ``nn.BatchNorm2d`` does."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return factor


def conv_bn_neuron(
    wrapper: nn.Module, neuron: nn.Module, x: torch.Tensor, addend: Callable[[], torch.Tensor] | None = None
) -> torch.Tensor:
    """``neuron(wrapper(x) [+ addend()])``, fused in training mode where possible.

    ``wrapper`` is a ``TimeDistributed`` or ``DirectEncoder`` around ``Sequential(Conv2d, BatchNorm2d)``;
    ``addend`` (called after the wrapper, as in the plain expression) gives a ``[T, B, ...]`` tensor
    added to the BN output, e.g. a residual shortcut.
    """
    if not can_fuse(wrapper, neuron):
        y = wrapper(x)
        return neuron(y + addend() if addend is not None else y)
    bn = _conv_and_bn(wrapper)[1]  # type: ignore[index]
    direct = isinstance(wrapper, DirectEncoder)
    y = wrapper(x, pre_norm=True)  # [T, B, ...] (TimeDistributed) or [B, ...] (DirectEncoder)
    z = addend() if addend is not None else None
    steps = wrapper.steps if direct else y.shape[0]
    factor = _momentum_factor(bn)

    made: list[torch.Tensor] = []

    def run(drive: torch.Tensor, state: NeuronState | None):
        merged = y if direct else y.flatten(0, 1)
        s, v = _BNLeakyIntegrate.apply(merged, z, bn.weight, bn.bias, _k_of(neuron), bn, neuron, steps, direct,
                                       factor)
        made.append(s)
        return s, NeuronState(v)

    drive = y.unsqueeze(0).expand(steps, *y.shape) if direct else y
    with _run_swapped(neuron, run):
        out = neuron(drive)
    # The fused function's own output (not something a forward hook swapped in) is known to be 0/1.
    return mark_spikes(out) if _SPIKES_AS_BOOL and made and out is made[0] else out
