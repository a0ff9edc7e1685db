"""Stateless layers in time-first multi-step form, pooling over spikes, voting, BN folding.

Stateless layers (conv, linear, BN, pooling) run once over the merged ``T·B`` axis; only neurons
loop over time (the SpikingJelly multi-step layout).
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "DirectEncoder",
    "Flatten",
    "GlobalAvgPool",
    "SpikingAvgPool2d",
    "SpikingMaxPool2d",
    "TimeDistributed",
    "VotingLayer",
    "fold_bn",
    "is_marked_spikes",
    "mark_spikes",
    "synaptic_layer",
]


def _merge(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1)


def _split(y: torch.Tensor, steps: int) -> torch.Tensor:
    return y.unflatten(0, (steps, y.shape[0] // steps))


def synaptic_layer(module: nn.Module) -> nn.Conv2d | nn.Linear | None:
    """The conv/linear layer that carries a wrapper's synapses (first of a Sequential), if any."""
    if isinstance(module, nn.Sequential) and len(module) > 0:
        module = module[0]
    return module if isinstance(module, (nn.Conv2d, nn.Linear)) else None


# ------------------------------------------------------------------------------------------
# Layers on spikes save their input for backward as bool (1 byte instead of 4 or 8). A tensor is
# known to hold spikes when the layer that made it says so (``mark_spikes``): the fused
# BN+neuron path and max-pooling of marked spikes do; anything else takes the plain path.
# ------------------------------------------------------------------------------------------
_SPIKES_ATTR = "_nasflow_spikes"


def mark_spikes(x: torch.Tensor) -> torch.Tensor:
    """Mark ``x`` (in place, returned) as holding only 0/1 values, so layers may save it as bool."""
    setattr(x, _SPIKES_ATTR, True)
    return x


def is_marked_spikes(x: torch.Tensor) -> bool:
    return getattr(x, _SPIKES_ATTR, False) is True


#: CPU conv chunks (``conv_chunks``): a conv whose merged ``T·B`` input exceeds ``CONV_CHUNK_ABOVE_BYTES``
#: (``NASFLOW_CONV_CHUNK_ABOVE_MB``, default 32) runs in chunks of at most ``CONV_CHUNK_BYTES`` of input or
#: output (``NASFLOW_CONV_CHUNK_MB``, default 3; 0 turns chunking off). One call over a batch that spills the
#: caches is slow: in the training-step benchmark at T = 32 (64 MiB per layer) chunks made the step 1.17x
#: faster, while at T = 8 (16 MiB) one call was 1.1x faster than chunks (``benchmarks/README.md``, conv chunks).
#: Per-step frameworks get small batches for free, which is why they overtook merged-time convs as T grew.
CONV_CHUNK_BYTES = int(float(os.environ.get("NASFLOW_CONV_CHUNK_MB", "3")) * 2**20)
CONV_CHUNK_ABOVE_BYTES = int(float(os.environ.get("NASFLOW_CONV_CHUNK_ABOVE_MB", "32")) * 2**20)


def conv_chunks(x: torch.Tensor, out_channels: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` over ``x``'s batch axis: one chunk off CPU, with chunking off, or when the
    whole input and output fit in ``CONV_CHUNK_ABOVE_BYTES``; otherwise chunks of ``CONV_CHUNK_BYTES``."""
    n = x.shape[0]
    if CONV_CHUNK_BYTES <= 0 or x.device.type != "cpu" or n <= 1:
        return [(0, n)]
    per_image = x[0].numel() * x.element_size() * max(1.0, out_channels / max(1, x.shape[1]))
    if per_image * n <= CONV_CHUNK_ABOVE_BYTES:
        return [(0, n)]
    size = max(1, int(CONV_CHUNK_BYTES // max(per_image, 1)))
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def _conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d) -> torch.Tensor:
    chunks = conv_chunks(x, weight.shape[0])
    args = (conv.stride, conv.padding, conv.dilation, conv.groups)
    if len(chunks) == 1:
        return F.conv2d(x, weight, bias, *args)
    first = F.conv2d(x[chunks[0][0]:chunks[0][1]], weight, bias, *args)
    y = first.new_empty((x.shape[0], *first.shape[1:]))
    y[: first.shape[0]] = first
    for a, b in chunks[1:]:
        y[a:b] = F.conv2d(x[a:b], weight, bias, *args)
    return y


class _ChunkedConv2d(torch.autograd.Function):
    """``conv2d`` over the merged ``T·B`` axis in cache-sized chunks on CPU (``conv_chunks``), same gradients as
    ``F.conv2d``; a binary (``spikes``) input is saved for backward as bool (1 byte instead of 4 or 8)."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv, spikes):  # type: ignore[override]
        ctx.save_for_backward(x.to(torch.bool) if spikes else x, weight)
        ctx.conv, ctx.dtype, ctx.has_bias = conv, x.dtype, bias is not None
        return _conv_forward(x, weight, bias, conv)

    @staticmethod
    def backward(ctx, grad_y):  # type: ignore[override]
        xs, weight = ctx.saved_tensors
        c = ctx.conv
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        gx = torch.empty(xs.shape, dtype=ctx.dtype) if mask[0] else None
        gw = gb = None
        for a, b in conv_chunks(xs, weight.shape[0]):
            gxc, gwc, gbc = torch.ops.aten.convolution_backward(
                grad_y[a:b], xs[a:b].to(ctx.dtype), weight, [weight.shape[0]] if ctx.has_bias else None,
                list(c.stride), list(c.padding), list(c.dilation), False, [0, 0], c.groups, mask,
            )
            if gx is not None:
                gx[a:b] = gxc
            if mask[1]:
                gw = gwc if gw is None else gw.add_(gwc)
            if mask[2]:
                gb = gbc if gb is None else gb.add_(gbc)
        return gx, gw, gb if ctx.has_bias else None, None, None


class _SpikeMaxPool2d(torch.autograd.Function):
    """``max_pool2d`` of a binary input saving it as bool; the argmax indices are recomputed in backward."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride):  # type: ignore[override]
        ctx.save_for_backward(x.to(torch.bool))
        ctx.dtype, ctx.k, ctx.s = x.dtype, kernel_size, stride
        return F.max_pool2d(x, kernel_size, stride)

    @staticmethod
    def backward(ctx, grad_y):  # type: ignore[override]
        (xb,) = ctx.saved_tensors
        x = xb.to(ctx.dtype)
        k, s = [ctx.k, ctx.k], [ctx.s, ctx.s]
        _, idx = F.max_pool2d(x, k, s, return_indices=True)
        gx = torch.ops.aten.max_pool2d_with_indices_backward(grad_y, x, k, s, [0, 0], [1, 1], False, idx)
        return gx, None, None


def _own_conv_ok(x: torch.Tensor, layer: nn.Module | None) -> bool:
    """Whether nasflow runs ``layer`` itself (chunked, bool-saved spikes) rather than calling the module."""
    if not (isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros" and isinstance(layer.padding, tuple)):
        return False
    return (is_marked_spikes(x) and torch.is_grad_enabled()) or x.device.type == "cpu"


def _pre_norm_layer(module: nn.Module) -> nn.Module:
    if not (isinstance(module, nn.Sequential) and len(module) == 2):
        raise ValueError(f"pre_norm=True needs a Sequential(layer, norm), got {type(module).__name__}")
    return module[0]


class TimeDistributed(nn.Module):
    """Run a stateless ``module`` on ``[T, B, ...]`` by merging time into the batch axis."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, *, pre_norm: bool = False) -> torch.Tensor:
        """``pre_norm=True`` runs only the synaptic layer of a ``Sequential(layer, norm)`` (the fused
        BN+neuron path of ``nasflow.snn.fused`` applies the norm itself); forward hooks fire either way."""
        if x.dim() < 3:
            raise ValueError(
                f"{self._name()} expects time-first input [T, B, ...], got shape {tuple(x.shape)}"
            )
        module = _pre_norm_layer(self.module) if pre_norm else self.module
        layer = synaptic_layer(module)
        if _own_conv_ok(x, layer):
            xm = _merge(x)
            if torch.is_grad_enabled():
                y = _ChunkedConv2d.apply(xm, layer.weight, layer.bias, layer, is_marked_spikes(x))
            else:
                y = _conv_forward(xm, layer.weight, layer.bias, layer)
            if module is not layer:  # Sequential(conv, rest...)
                y = module[1:](y)
            return _split(y, x.shape[0])
        return _split(module(_merge(x)), x.shape[0])

    def _name(self) -> str:
        return f"TimeDistributed({type(self.module).__name__})"


class DirectEncoder(nn.Module):
    """Direct input coding: run ``module`` once on the analog ``[B, ...]`` input, repeat over T.

    The deployed graph sees the analog input at every step, so accounting charges the
    module's operations ``steps`` times (REFERENCE.md §8).
    """

    def __init__(self, module: nn.Module, steps: int) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"DirectEncoder needs steps >= 1, got {steps}")
        self.module = module
        self.steps = steps

    def forward(self, x: torch.Tensor, *, pre_norm: bool = False) -> torch.Tensor:
        """``pre_norm=True`` returns only the synaptic layer's output ``[B, ...]`` (not repeated over T)."""
        if pre_norm:
            return _pre_norm_layer(self.module)(x)
        y = self.module(x)
        return y.unsqueeze(0).expand(self.steps, *y.shape)


class SpikingMaxPool2d(nn.Module):
    """Max-pool over spikes in ``[T, B, C, H, W]`` (equals ``SumPool2d > 0.5`` on binary input)."""

    def __init__(self, kernel_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_marked_spikes(x) and torch.is_grad_enabled():
            y = _SpikeMaxPool2d.apply(_merge(x), self.kernel_size, self.stride)
            return mark_spikes(_split(y, x.shape[0]))
        return _split(F.max_pool2d(_merge(x), self.kernel_size, self.stride), x.shape[0])

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class SpikingAvgPool2d(SpikingMaxPool2d):
    """Average-pool in ``[T, B, C, H, W]`` (its output is analog: the next layer counts MACs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _split(F.avg_pool2d(_merge(x), self.kernel_size, self.stride), x.shape[0])


class GlobalAvgPool(nn.Module):
    """Global average pooling over ``[T, B, C, H, W]`` → ``[T, B, C, 1, 1]`` (SNN_2; output is analog)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(3, 4), keepdim=True)


class Flatten(nn.Module):
    """Flatten all dims after ``[T, B]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class VotingLayer(nn.Module):
    """Average groups of ``group`` neighbouring output neurons: ``[T, B, k·N] → [T, B, N]``."""

    def __init__(self, group: int = 10) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.group:
            raise ValueError(
                f"VotingLayer(group={self.group}) needs a last dim divisible by {self.group}, got {x.shape[-1]}"
            )
        return x.unflatten(-1, (x.shape[-1] // self.group, self.group)).mean(-1)

    def extra_repr(self) -> str:
        return f"group={self.group}"


def fold_bn(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> nn.Conv2d | nn.Linear:
    """Return a copy of ``layer`` with the eval-mode ``bn`` that follows it folded in.

    ``y = γ (Wx + b - μ)/sqrt(σ² + ε) + β`` becomes ``W' x + b'`` with ``W' = W·γ/σ̂`` per output
    channel and ``b' = (b - μ)·γ/σ̂ + β``.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_bn needs a BatchNorm with running statistics (track_running_stats=True)")
    out_features = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
    if bn.num_features != out_features:
        raise ValueError(f"fold_bn: BatchNorm has {bn.num_features} features but the layer outputs {out_features}")
    with torch.no_grad():
        scale = bn.running_var.add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
        if isinstance(layer, nn.Conv2d):
            fused = nn.Conv2d(
                layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                layer.dilation, layer.groups, bias=True, padding_mode=layer.padding_mode,
            )
            fused.weight.copy_(layer.weight * scale.view(-1, 1, 1, 1))
        else:
            fused = nn.Linear(layer.in_features, layer.out_features, bias=True)
            fused.weight.copy_(layer.weight * scale.view(-1, 1))
        fused.bias.copy_(bias * scale + shift)
    return fused.to(layer.weight.device, layer.weight.dtype)
