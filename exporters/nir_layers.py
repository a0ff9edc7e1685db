"""NIR converters of leaf layers: synaptic wrappers, conv/linear, neurons, pools, flatten, voting, dropout.

* Conv/Linear layers are exported with their eval-mode BatchNorm folded (``nasflow.snn.layers.fold_bn``,
  running statistics), whatever the module's training flag; a standalone ``TimeDistributed(BatchNorm2d)``
  is a depthwise 1x1 ``Conv2d`` (``bn_node``).
* Spiking max-pool is ``SumPool2d → Threshold(0.5)`` (exact on binary input; non-binary input fails),
  average pools are ``AvgPool2d``, global average pooling an ``AvgPool2d`` over the whole map, SNASNet's
  3x3 pool ``AvgPool2d(padding 1)`` (``count_include_pad=True``) or ``SumPool2d(padding 1) → Scale(1/count)``
  (the exact border division, ``count_include_pad=False``), and the voting layer an ``Affine`` with fixed
  weights ``1/group``. Dropout and identities pass their input through (an exported network runs in eval mode).
* SpikeDHS's membrane read-out (``nasflow.snn.dhs.MembraneReadout``) is a stock NIR ``I`` with ``r = 1/T``.
"""

from __future__ import annotations

import nir
import numpy as np
import torch
from torch import nn

from exporters.core.kinds import ACTIVATION_KEY
from exporters.core.shapes import ints
from exporters.nir_context import ExportContext, ExportError, join, register_converter
from nasflow.snn.cells import AvgPool3x3
from nasflow.snn.dhs import MembraneReadout
from nasflow.snn.layers import (
    DirectEncoder,
    Flatten,
    GlobalAvgPool,
    SpikingAvgPool2d,
    SpikingMaxPool2d,
    TimeDistributed,
    VotingLayer,
    fold_bn,
)
from nasflow.snn.neuron_types import AnalogReLU
from nasflow.snn.neurons import Neuron

__all__ = ["bn_node"]


def _arr(x: object) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _synaptic_node(layer: nn.Module, name: str, in_shape: tuple[int, ...]) -> nir.NIRNode:
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ExportError(f"{name}: Conv2d padding_mode={layer.padding_mode!r} has no NIR equivalent (use 'zeros')")
        bias = _arr(layer.bias) if layer.bias is not None else np.zeros(layer.out_channels)
        padding = layer.padding if isinstance(layer.padding, str) else tuple(int(p) for p in layer.padding)
        return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=_arr(layer.weight), stride=tuple(layer.stride),
                          padding=padding, dilation=tuple(layer.dilation), groups=int(layer.groups), bias=bias)
    if isinstance(layer, nn.Linear):
        bias = _arr(layer.bias) if layer.bias is not None else np.zeros(layer.out_features)
        return nir.Affine(weight=_arr(layer.weight), bias=bias)
    raise ExportError(f"{name}: cannot export {type(layer).__name__} as a synaptic layer (Conv2d or Linear expected)")


def _fold(module: nn.Module, name: str) -> nn.Module:
    """The single synaptic layer of a wrapper's module, eval-mode BatchNorm folded in."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return module
    if isinstance(module, nn.Sequential):
        layers = [m for m in module if not isinstance(m, nn.Identity)]
        if len(layers) == 1:
            return _fold(layers[0], name)
        if len(layers) == 2 and isinstance(layers[1], (nn.BatchNorm1d, nn.BatchNorm2d)):
            return fold_bn(layers[0], layers[1])
        if any(isinstance(m, nn.Upsample) for m in layers):
            raise ExportError(
                f"{name}: up-sampling has no NIR node (NIR 1.0.8 has neither up-sampling, transposed convolution nor "
                "reshape); a trellis path that moves up, or resamples to a finer level, cannot be exported yet"
            )
    raise ExportError(
        f"{name}: expected Conv2d/Linear, optionally followed by BatchNorm, got {type(module).__name__}"
    )


def _cached_synaptic_node(inner: nn.Module, name: str, in_shape: tuple[int, ...]) -> nir.NIRNode:
    """The folded NIR node of ``inner``, rebuilt only when a parameter or BN statistic changed.

    A search exports hundreds of candidates that share the supernet's layers; folding BN anew for
    each costs more than evaluating the rest of the hardware model. NIR nodes are never mutated here.
    """
    tensors = [*inner.parameters(), *inner.buffers()]
    key = (name, tuple(in_shape), tuple((t.data_ptr(), t._version) for t in tensors))
    cached = getattr(inner, "_nasflow_nir_node", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    node = _synaptic_node(_fold(inner, name), name, in_shape)
    inner._nasflow_nir_node = (key, node)  # plain attribute: not a buffer, not in state_dict
    return node


def bn_node(bn: nn.Module, name: str, in_shape: tuple[int, ...]) -> nir.Conv2d:
    """A standalone eval-mode ``BatchNorm2d`` as a depthwise 1x1 ``Conv2d`` (per-channel scale and shift)."""
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None:
        raise ExportError(f"{name}: expected a BatchNorm2d with running statistics, got {type(bn).__name__}")
    std = (bn.running_var.double() + bn.eps).sqrt()
    w = bn.weight.detach().double() if bn.affine else 1.0
    b = bn.bias.detach().double() if bn.affine else 0.0
    scale = (w / std).expand(bn.num_features)
    shift = b - bn.running_mean.double() * scale
    c = bn.num_features
    return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=scale.cpu().numpy().reshape(c, 1, 1, 1),
                      stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=c, bias=shift.cpu().numpy())


@register_converter(TimeDistributed)
@register_converter(DirectEncoder)
def _convert_wrapper(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    # DirectEncoder: the deployed graph applies the layer to the analog input at every step.
    inner = module.module
    if isinstance(inner, (nn.Sequential, nn.Conv2d, nn.Linear)):
        return [ctx.add_node(name, _cached_synaptic_node(inner, name, ctx.shape(inputs, name)), inputs)]
    if isinstance(inner, nn.BatchNorm2d):
        return [ctx.add_node(name, bn_node(inner, name, ctx.shape(inputs, name)), inputs)]
    return ctx.convert(inner, join(name, "module"), inputs)


@register_converter(nn.Conv2d)
@register_converter(nn.Linear)
def _convert_layer(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    return [ctx.add_node(name, _synaptic_node(module, name, ctx.shape(inputs, name)), inputs)]


@register_converter(Neuron)
def _convert_neuron(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    shape = ctx.shape(inputs, name)
    return [ctx.add_node(name, ctx.neuron_node(module, name, shape), inputs, binary=True)]


@register_converter(AnalogReLU)
def _convert_relu(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    # NIR has no ReLU node: an LI that passes its input through, marked (exporters.core.kinds).
    shape = ctx.shape(inputs, name)
    node = nir.LI(tau=np.full(shape, float(ctx.dt)), r=np.ones(shape), v_leak=np.zeros(shape))
    node.metadata = {ACTIVATION_KEY: "relu"}
    return [ctx.add_node(name, node, inputs)]


@register_converter(SpikingMaxPool2d)
def _convert_maxpool(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    if isinstance(module, SpikingAvgPool2d):
        return _convert_avgpool(ctx, module, name, inputs)
    if not ctx.is_binary(inputs):
        raise ExportError(f"{name}: max-pooling is exported as SumPool2d > 0.5, exact only on binary (spike) input; "
                          f"its input {inputs} is not known to be binary")
    k, s = ints(module.kernel_size, 2), ints(module.stride, 2)
    pool = ctx.add_node(f"{name}.sum", nir.SumPool2d(kernel_size=np.array(k), stride=np.array(s),
                                                    padding=np.zeros(2, dtype=int)), inputs)
    thr = nir.Threshold(threshold=np.full(ctx.shapes[pool], 0.5))
    return [ctx.add_node(name, thr, [pool], binary=True)]


def _convert_avgpool(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    k, s = ints(module.kernel_size, 2), ints(module.stride, 2)
    node = nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.zeros(2, dtype=int))
    return [ctx.add_node(name, node, inputs)]


@register_converter(nn.AvgPool2d)
def _convert_torch_avgpool(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    if ints(module.padding, 2) != (0, 0) or module.ceil_mode:
        raise ExportError(f"{name}: AvgPool2d with padding or ceil_mode is not supported")
    return _convert_avgpool(ctx, module, name, inputs)


@register_converter(GlobalAvgPool)
def _convert_gap(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    c, h, w = ctx.shape(inputs, name)
    node = nir.AvgPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]), padding=np.zeros(2, dtype=int))
    return [ctx.add_node(name, node, inputs)]


@register_converter(AvgPool3x3)
def _convert_avgpool3x3(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    c, h, w = ctx.shape(inputs, name)
    pad = np.ones(2, dtype=int)
    k = np.array([3, 3])
    if module.count_include_pad:
        return [ctx.add_node(name, nir.AvgPool2d(kernel_size=k, stride=np.ones(2, dtype=int), padding=pad), inputs)]
    # count_include_pad=False divides each window by the pixels it covers: a sum, then 1/count per pixel.
    s = ctx.add_node(f"{name}.sum", nir.SumPool2d(kernel_size=k, stride=np.ones(2, dtype=int), padding=pad), inputs)
    rows = np.array([min(i + 1, h - 1) - max(i - 1, 0) + 1 for i in range(h)], dtype=np.float64)
    cols = np.array([min(i + 1, w - 1) - max(i - 1, 0) + 1 for i in range(w)], dtype=np.float64)
    inv = np.broadcast_to(1.0 / np.outer(rows, cols), (c, h, w)).copy()
    return [ctx.add_node(name, nir.Scale(scale=inv), [s])]


@register_converter(Flatten)
@register_converter(nn.Flatten)
def _convert_flatten(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    shape = ctx.shape(inputs, name)
    if isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) != (1, -1):
        raise ExportError(f"{name}: only Flatten(start_dim=1, end_dim=-1) (all non-batch dims) is supported")
    node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
    return [ctx.add_node(name, node, inputs, binary=ctx.is_binary(inputs))]


@register_converter(VotingLayer)
def _convert_vote(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    (n_in,) = ctx.shape(inputs, name)
    g = module.group
    if n_in % g:
        raise ExportError(f"{name}: VotingLayer(group={g}) needs an input size divisible by {g}, got {n_in}")
    w = np.kron(np.eye(n_in // g), np.full((1, g), 1.0 / g))
    return [ctx.add_node(name, nir.Affine(weight=w, bias=np.zeros(n_in // g)), inputs)]


@register_converter(MembraneReadout)
def _convert_readout(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    # A non-spiking integrator v ← v + I/T: its value at the last step is the input's mean over the T steps.
    shape = ctx.shape(inputs, name)
    return [ctx.add_node(name, nir.I(r=np.full(shape, 1.0 / module.steps)), inputs)]


@register_converter(nn.Identity)
@register_converter(nn.Dropout)
def _convert_identity(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    return list(inputs)


@register_converter(nn.Sequential)
def _convert_sequential(ctx: ExportContext, module: nn.Module, name: str, inputs: list[str]) -> list[str]:
    for child_name, child in module.named_children():
        inputs = ctx.convert(child, join(name, child_name), inputs)
    return inputs
