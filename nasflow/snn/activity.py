"""Activity accounting with one definition for the whole toolchain (REFERENCE.md §8).

* **spikes**: outputs of neuron layers, summed over T, per sample (pooling is not counted);
* **ACs / MACs** (synaptic operations): for every conv/linear layer, the number of
  (non-zero input, non-zero weight) pairs that contribute to an output, summed over T, per
  sample; ACs when the layer's input is binary (all values in {0, ±1}), MACs otherwise.
  This is NeuroBench's effective-ops count, biases excluded, borders/stride/padding included.
  A direct-coding stem (``DirectEncoder``) counts its MACs at every step;
* **neuron updates**: neurons × T for every neuron layer.

The count per layer is ``Σ_inputs 1[x ≠ 0] · fanout(input position)`` where the fan-out map
is the transposed convolution of an all-ones output with the non-zero weight mask: one cheap
pass over the input per layer, so accounting can stay on during training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nasflow.snn.layers import DirectEncoder, TimeDistributed, synaptic_layer
from nasflow.snn.neurons import Neuron

__all__ = ["ActivityMonitor", "LayerActivity", "effective_ops", "fanout_map"]


def fanout_map(layer: nn.Conv2d | nn.Linear, in_shape: tuple[int, ...]) -> torch.Tensor:
    """For each input element of one sample, how many (output, non-zero weight) pairs it feeds."""
    mask = (layer.weight.detach() != 0).to(layer.weight.dtype)
    if isinstance(layer, nn.Linear):
        return mask.sum(0)
    if layer.padding_mode != "zeros":
        raise ValueError(f"activity accounting supports zero padding only, got padding_mode={layer.padding_mode!r}")
    c, h, w = in_shape
    padding = layer.padding
    if isinstance(padding, str):
        raise ValueError("activity accounting needs numeric conv padding, not 'same'/'valid'")
    ones = torch.ones(
        1, layer.out_channels, *_conv_out(h, w, layer), dtype=mask.dtype, device=mask.device
    )
    expect = [
        (o - 1) * s - 2 * p + d * (k - 1) + 1
        for o, s, p, d, k in zip(ones.shape[2:], layer.stride, padding, layer.dilation, layer.kernel_size)
    ]
    out_pad = (h - expect[0], w - expect[1])
    fan = F.conv_transpose2d(
        ones, mask, stride=layer.stride, padding=padding, output_padding=out_pad,
        groups=layer.groups, dilation=layer.dilation,
    )
    return fan[0]


def _conv_out(h: int, w: int, layer: nn.Conv2d) -> tuple[int, int]:
    dims = []
    for size, s, p, d, k in zip((h, w), layer.stride, layer.padding, layer.dilation, layer.kernel_size):
        dims.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return tuple(dims)  # type: ignore[return-value]


def effective_ops(layer: nn.Conv2d | nn.Linear, x: torch.Tensor, lead_dims: int) -> torch.Tensor:
    """Effective synaptic ops of ``layer`` on ``x``, summed over batch dims, per leading dim.

    ``x`` has ``lead_dims`` leading dims (e.g. ``[T, B]`` → 2) before one sample's shape; the
    result is summed over all leading dims except the first one (time), shape ``[x.shape[0]]``.
    """
    sample_shape = tuple(x.shape[lead_dims:])
    fan = fanout_map(layer, sample_shape)
    nz = (x.detach() != 0).to(fan.dtype)
    if lead_dims > 1:
        nz = nz.sum(dim=tuple(range(1, lead_dims)))
    return (nz * fan).flatten(1).sum(1)


def _is_binary(x: torch.Tensor) -> torch.Tensor:
    x = x.detach()
    return ((x == 0) | (x.abs() == 1)).all()


@dataclass
class LayerActivity:
    """Counters for one layer, summed over every sample seen since the last reset."""

    kind: str  # "neuron" or "synapse"
    samples: int = 0
    steps: int = 0
    neurons: int = 0
    spikes: torch.Tensor | None = None  # [T], summed over samples
    acs: torch.Tensor | None = None  # [T]
    macs: torch.Tensor | None = None  # [T]

    def add(self, name: str, value: torch.Tensor) -> None:
        current = getattr(self, name)
        if current is None:
            setattr(self, name, value.detach().clone())
        else:  # calls with a different T are added step by step
            n = max(current.shape[0], value.shape[0])
            setattr(self, name, _pad_to(current, n) + _pad_to(value.detach(), n))

    def per_sample(self, name: str) -> float:
        total = getattr(self, name)
        return 0.0 if total is None or self.samples == 0 else float(total.sum()) / self.samples

    def per_step_per_sample(self, name: str) -> list[float]:
        total = getattr(self, name)
        if total is None or self.samples == 0:
            return []
        return (total.double() / self.samples).tolist()


def _pad_to(t: torch.Tensor, n: int) -> torch.Tensor:
    return torch.cat([t, t.new_zeros(n - t.shape[0])]) if t.shape[0] < n else t


class ActivityMonitor:
    """Counts spikes, ACs, MACs and neuron updates of a model's layers via forward hooks.

    Use as a context manager or call ``attach()``/``detach()``; ``enabled = False`` makes the
    hooks free. ``summary()`` returns per-sample totals, per-timestep curves and per-layer rows.
    """

    def __init__(self, model: nn.Module, enabled: bool = True) -> None:
        self.model = model
        self.enabled = enabled
        self.layers: dict[str, LayerActivity] = {}
        self._handles: list[Any] = []

    # -- lifecycle ---------------------------------------------------------------------
    def attach(self) -> ActivityMonitor:
        if self._handles:
            return self
        for name, module in self.model.named_modules():
            if isinstance(module, Neuron):
                self._handles.append(module.register_forward_hook(self._neuron_hook(name)))
            elif isinstance(module, (TimeDistributed, DirectEncoder)) and synaptic_layer(module.module):
                self._handles.append(module.register_forward_hook(self._synapse_hook(name)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def reset(self) -> None:
        self.layers.clear()

    def __enter__(self) -> ActivityMonitor:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- hooks -------------------------------------------------------------------------
    def _layer(self, name: str, kind: str) -> LayerActivity:
        if name not in self.layers:
            self.layers[name] = LayerActivity(kind=kind)
        return self.layers[name]

    def _neuron_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            if not self.enabled:
                return
            with torch.no_grad():
                rec = self._layer(name, "neuron")
                steps, batch = out.shape[0], out.shape[1]
                rec.samples += batch
                rec.steps = steps
                rec.neurons = out[0, 0].numel()
                rec.add("spikes", out.detach().flatten(1).sum(1))

        return hook

    def _synapse_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            if not self.enabled:
                return
            x = inputs[0]
            layer = synaptic_layer(module.module)
            with torch.no_grad():
                rec = self._layer(name, "synapse")
                if isinstance(module, DirectEncoder):
                    steps, batch = module.steps, x.shape[0]
                    ops = effective_ops(layer, x.unsqueeze(0), lead_dims=2).expand(steps)
                else:
                    steps, batch = x.shape[0], x.shape[1]
                    ops = effective_ops(layer, x, lead_dims=2)
                binary = _is_binary(x).to(ops.dtype)
                rec.samples += batch
                rec.steps = steps
                rec.add("acs", ops * binary)
                rec.add("macs", ops * (1 - binary))

        return hook

    # -- results -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Per-sample totals (``*_per_sample``), per-timestep curves and per-layer rows."""
        neurons = {n: r for n, r in self.layers.items() if r.kind == "neuron"}
        synapses = {n: r for n, r in self.layers.items() if r.kind == "synapse"}
        layers: dict[str, dict[str, Any]] = {}
        for n, r in neurons.items():
            spikes = r.per_sample("spikes")
            layers[n] = {
                "kind": "neuron",
                "neurons": r.neurons,
                "spikes_per_sample": spikes,
                "firing_rate": spikes / (r.neurons * r.steps) if r.neurons and r.steps else 0.0,
                "neuron_updates_per_sample": r.neurons * r.steps,
            }
        for n, r in synapses.items():
            layers[n] = {
                "kind": "synapse",
                "synops_per_sample": r.per_sample("acs"),
                "macs_per_sample": r.per_sample("macs"),
            }
        return {
            "spikes_per_sample": sum(r.per_sample("spikes") for r in neurons.values()),
            "synops_per_sample": sum(r.per_sample("acs") for r in synapses.values()),
            "macs_per_sample": sum(r.per_sample("macs") for r in synapses.values()),
            "neuron_updates_per_sample": sum(r.neurons * r.steps for r in neurons.values()),
            "spikes_per_step_per_sample": _sum_curves(r.per_step_per_sample("spikes") for r in neurons.values()),
            "synops_per_step_per_sample": _sum_curves(r.per_step_per_sample("acs") for r in synapses.values()),
            "layers": layers,
        }


def _sum_curves(curves) -> list[float]:
    total: list[float] = []
    for c in curves:
        if len(c) > len(total):
            total += [0.0] * (len(c) - len(total))
        for i, v in enumerate(c):
            total[i] += v
    return total
