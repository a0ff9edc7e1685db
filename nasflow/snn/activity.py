"""Activity accounting with one definition for the whole toolchain (REFERENCE.md §8).

* **spikes**: outputs of neuron layers, summed over T, per sample (pooling is not counted);
* **ACs / MACs** (synaptic operations): for every conv/linear layer, the number of
  (non-zero input, non-zero weight) pairs that contribute to an output, summed over T, per
  sample; ACs when the layer's input is binary (all values in {0, ±1}), MACs otherwise.
  This is NeuroBench's effective-ops count, biases excluded, borders/stride/padding included.
  A direct-coding stem (``DirectEncoder``) counts its MACs at every step;
* **neuron updates**: neurons × T for every neuron layer, analog ones (``AnalogReLU``) included;
* **analog layers** emit values, not spikes: their non-zero outputs are counted (``nonzero_per_sample``), never
  as spikes, and their consumers do MACs.

Counts are exact: ops are int64, spikes float64 (float32 sums stop being exact at 2**24).

The count per layer is ``Σ_inputs 1[x ≠ 0] · fanout(input position)`` where the fan-out map
is the transposed convolution of an all-ones output with the non-zero weight mask: one cheap
pass over the input per layer, so accounting can stay on during training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from exporters.core.errors import NIRFormatError
from exporters.core.fanout import affine_fanout, conv_fanout
from exporters.core.shapes import conv_pads
from nasflow.snn.layers import DirectEncoder, Flatten, SpikingMaxPool2d, TimeDistributed, synaptic_layer
from nasflow.snn.neuron_types import AnalogReLU
from nasflow.snn.neurons import Neuron

__all__ = ["ActivityMonitor", "LayerActivity", "effective_ops", "fanout_map"]


def fanout_map(layer: nn.Conv2d | nn.Linear, in_shape: tuple[int, ...]) -> torch.Tensor:
    """For each input element of one sample, how many (output, non-zero weight) pairs it feeds.

    Float32 with exact integer values, from the one definition the hardware models also use
    (``exporters.core.fanout``). Conv padding may be numeric or ``'valid'``/``'same'`` (PyTorch puts the
    odd pixel of ``'same'`` on the bottom/right); only zero padding is supported.
    """
    mask = (layer.weight.detach() != 0).cpu().numpy()
    if isinstance(layer, nn.Linear):
        fan = affine_fanout(mask)
    else:
        if layer.padding_mode != "zeros":
            raise ValueError(
                f"activity accounting supports zero padding only, got padding_mode={layer.padding_mode!r}")
        try:
            pads = conv_pads(layer.padding, layer.kernel_size, layer.dilation)
        except NIRFormatError:
            raise ValueError(f"activity accounting: unknown conv padding {layer.padding!r}") from None
        fan = conv_fanout(mask, (layer.in_channels, *in_shape[-2:]), layer.stride, pads, layer.dilation,
                          layer.groups)
    return torch.from_numpy(fan).to(device=layer.weight.device, dtype=torch.float32)


def effective_ops(layer: nn.Conv2d | nn.Linear, x: torch.Tensor, lead_dims: int) -> torch.Tensor:
    """Effective synaptic ops of ``layer`` on ``x``, summed over batch dims, per leading dim.

    ``x`` has ``lead_dims`` leading dims (e.g. ``[T, B]`` → 2) before one sample's shape; the
    result is summed over all leading dims except the first one (time), shape ``[x.shape[0]]``,
    as exact int64 counts (float32 sums stop being exact above 2**24 ≈ 16.8 M operations).
    """
    return _ops_and_binary(layer, x, lead_dims)[0]


def _cached_fanout(layer: nn.Conv2d | nn.Linear, in_shape: tuple[int, ...]) -> torch.Tensor:
    """``fanout_map`` as float64, recomputed only when the weights (their version) or the shape change."""
    w = layer.weight
    key = (w.data_ptr(), w._version, in_shape, w.device, w.dtype)
    cached = getattr(layer, "_nasflow_fanout", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    fan = fanout_map(layer, in_shape).round().double()
    layer._nasflow_fanout = (key, fan)  # plain attribute: not a buffer, not in state_dict
    return fan


def _ops_and_binary(layer: nn.Conv2d | nn.Linear, x: torch.Tensor, lead_dims: int) -> tuple[torch.Tensor, bool]:
    """Effective ops per leading dim and whether every input value lies in {0, ±1}.

    Few passes over ``x``: ``|x|``, its max, its sum over the batch dims and a non-zero count. The
    input is binary exactly when ``max |x| <= 1`` and ``Σ|x| = nnz`` (every non-zero has ``|x| = 1``);
    then ``Σ_batch |x|`` already is the per-position non-zero count. Sums over the batch are exact in
    float32 (each is at most the batch size); the weighting by fan-out runs in float64.
    """
    xd = x.detach()
    fan = _cached_fanout(layer, tuple(x.shape[lead_dims:]))
    batch_dims = tuple(range(1, lead_dims))
    magnitude = xd.abs()
    per_position = magnitude.sum(dim=batch_dims, dtype=torch.float32) if batch_dims else magnitude.float()
    nnz = torch.count_nonzero(xd)
    binary = bool(nnz == 0) or (
        float(magnitude.amax()) <= 1.0 and int(nnz) == int(per_position.double().sum().round())
    )
    if not binary:
        nz = (xd != 0).to(torch.float32)
        per_position = nz.sum(dim=batch_dims) if batch_dims else nz
    ops = (per_position.double() * fan).flatten(1).sum(1)
    return ops.round().long(), binary


def _spike_ops(layer: nn.Conv2d | nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Effective ops per step of a ``[T, B, ...]`` input known to hold spikes (values in {0, 1}).

    One pass over ``x``: the batch sum is already the per-position non-zero count (exact in float32).
    """
    fan = _cached_fanout(layer, tuple(x.shape[2:]))
    per_position = x.detach().sum(dim=1, dtype=torch.float32)
    return (per_position.double() * fan).flatten(1).sum(1).round().long()


def _float_acc(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


@dataclass
class LayerActivity:
    """Counters for one layer, summed over every sample seen since the last reset.

    A layer called several times within one forward pass of the monitored model (a model that
    loops over time and calls it on ``[1, B, ...]`` slices, or a module shared between places)
    counts its batch once per pass; each further call continues its curves after the steps
    already seen in that pass, so totals stay per sample.
    """

    kind: str  # "neuron", "analog", "pool" or "synapse"
    samples: int = 0
    steps: int = 0  # steps seen in the last forward pass
    neurons: int = 0
    updates: int = 0  # neuron updates (neurons × steps × batch), summed over samples
    spikes: torch.Tensor | None = None  # [T], summed over samples
    acs: torch.Tensor | None = None  # [T], int64
    macs: torch.Tensor | None = None  # [T], int64
    nonzero: torch.Tensor | None = None  # [T]: non-zero outputs of an analog layer
    pass_id: int = -1  # the monitor's forward pass that last called this layer
    offset: int = 0  # steps already counted in that pass

    def add(self, name: str, value: torch.Tensor, offset: int = 0) -> None:
        """Add ``value`` (one entry per step) to counter ``name`` from step ``offset`` on."""
        value = value.detach()
        current = getattr(self, name)
        end = offset + value.shape[0]
        size = end if current is None else max(end, current.shape[0])
        # Out of place: counters made under torch.inference_mode() cannot be updated in place outside it.
        update = torch.cat([value.new_zeros(offset), value, value.new_zeros(size - end)])
        setattr(self, name, update if current is None else _pad_to(current, size) + update)

    def per_sample(self, name: str) -> float:
        total = getattr(self, name)
        return 0.0 if total is None or self.samples == 0 else float(total.sum()) / self.samples

    def per_step_per_sample(self, name: str) -> list[float]:
        total = getattr(self, name)
        if total is None or self.samples == 0:
            return []
        return (total.double() / self.samples).tolist()

    def updates_per_sample(self) -> float:
        return self.updates / self.samples if self.samples else 0.0


def _pad_to(t: torch.Tensor, n: int) -> torch.Tensor:
    return torch.cat([t, t.new_zeros(n - t.shape[0])]) if t.shape[0] < n else t


class ActivityMonitor:
    """Counts spikes, ACs, MACs and neuron updates of a model's layers via forward hooks.

    Use as a context manager or call ``attach()``/``detach()``; ``enabled = False`` makes the
    hooks free. ``summary()`` returns per-sample totals, per-timestep curves and per-layer rows.

    A sample is counted once per forward pass of ``model`` (the monitored root module): calling
    the model step by step on ``[1, B, ...]`` chunks with stateful neurons counts ``T`` samples,
    not ``B``; run the whole sequence in one call (or in a model that loops over time inside
    its forward) to get per-sample numbers.
    """

    def __init__(self, model: nn.Module, enabled: bool = True) -> None:
        self.model = model
        self.enabled = enabled
        self.layers: dict[str, LayerActivity] = {}
        self._handles: list[Any] = []
        self._pass = 0
        self._in_pass = False
        # Tensors known to hold spikes in the current pass (neuron outputs, max-pooled or flattened
        # spikes), by data pointer. Held by reference so their memory cannot be reused within the pass.
        self._spikes: dict[int, torch.Tensor] = {}

    # -- lifecycle ---------------------------------------------------------------------
    def attach(self) -> ActivityMonitor:
        if self._handles:
            return self
        self._in_pass = False
        self._handles.append(self.model.register_forward_pre_hook(self._begin_pass))
        for name, module in self.model.named_modules():
            if isinstance(module, Neuron):
                self._handles.append(module.register_forward_hook(self._neuron_hook(name)))
            elif isinstance(module, AnalogReLU):
                self._handles.append(module.register_forward_hook(self._analog_hook(name)))
            elif isinstance(module, (TimeDistributed, DirectEncoder)) and synaptic_layer(module.module):
                self._handles.append(module.register_forward_hook(self._synapse_hook(name)))
            elif type(module) is SpikingMaxPool2d:  # not AvgPool: its output is analog
                self._handles.append(module.register_forward_hook(self._pool_hook(name)))
            elif type(module) is Flatten:
                self._handles.append(module.register_forward_hook(self._propagate_spikes))
        # Registered last so that it runs after the layer hooks of a root that is itself a layer.
        self._handles.append(self.model.register_forward_hook(self._end_pass, always_call=True))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._in_pass = False
        self._spikes.clear()

    def reset(self) -> None:
        self.layers.clear()

    def __enter__(self) -> ActivityMonitor:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- hooks -------------------------------------------------------------------------
    def _begin_pass(self, module: nn.Module, inputs: tuple) -> None:
        self._pass += 1
        self._in_pass = True
        self._spikes.clear()

    def _end_pass(self, module: nn.Module, inputs: tuple, out: Any) -> None:
        self._in_pass = False
        self._spikes.clear()

    def _mark_spikes(self, t: torch.Tensor) -> None:
        if self._in_pass and isinstance(t, torch.Tensor):
            self._spikes[t.data_ptr()] = t

    def _known_spikes(self, x: torch.Tensor) -> bool:
        known = self._spikes.get(x.data_ptr())
        return known is not None and known.numel() == x.numel() and known.dtype == x.dtype

    def _propagate_spikes(self, module: nn.Module, inputs: tuple, out: Any) -> None:
        if self.enabled and inputs and self._known_spikes(inputs[0]):
            self._mark_spikes(out)

    def _record(self, name: str, kind: str, batch: int, steps: int) -> tuple[LayerActivity, int]:
        """The layer's record and the step offset of this call; counts the batch once per pass."""
        if name not in self.layers:
            self.layers[name] = LayerActivity(kind=kind)
        rec = self.layers[name]
        if self._in_pass and rec.pass_id == self._pass:
            offset = rec.offset
        else:  # first call in this pass, or a call outside any pass of the model
            rec.samples += batch
            rec.pass_id = self._pass if self._in_pass else -1
            offset = 0
        rec.offset = offset + steps
        rec.steps = rec.offset
        return rec, offset

    def _neuron_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            if not self.enabled:
                return
            with torch.no_grad():
                steps, batch = out.shape[0], out.shape[1]
                rec, offset = self._record(name, "neuron", batch, steps)
                rec.neurons = out[0, 0].numel()
                rec.updates += rec.neurons * steps * batch
                # float32 sums are exact up to 2**24 per step; only larger steps pay for float64.
                per_step = out.detach().flatten(1)
                dtype = torch.float32 if per_step.shape[1] < 2**24 else _float_acc(out.device)
                rec.add("spikes", per_step.sum(1, dtype=dtype).to(_float_acc(out.device)), offset)
                self._mark_spikes(out)

        return hook

    def _analog_hook(self, name: str):
        """An analog layer: neuron updates and non-zero outputs (its consumers' input is not binary)."""

        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            if not self.enabled:
                return
            with torch.no_grad():
                steps, batch = out.shape[0], out.shape[1]
                rec, offset = self._record(name, "analog", batch, steps)
                rec.neurons = out[0, 0].numel()
                rec.updates += rec.neurons * steps * batch
                rec.add("nonzero", (out.detach().flatten(1) != 0).sum(1).to(_float_acc(out.device)), offset)

        return hook

    def _pool_hook(self, name: str):
        """Max-pooled spikes: counted per layer (hardware models route them) but not as neuron spikes."""

        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            if not self.enabled or not self._known_spikes(inputs[0]):
                return
            with torch.no_grad():
                rec, offset = self._record(name, "pool", out.shape[1], out.shape[0])
                rec.neurons = out[0, 0].numel()
                rec.add("spikes", out.detach().flatten(1).sum(1, dtype=torch.float32).to(_float_acc(out.device)),
                        offset)
            self._mark_spikes(out)

        return hook

    def _synapse_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            if not self.enabled:
                return
            x = inputs[0]
            layer = synaptic_layer(module.module)
            with torch.no_grad():
                if isinstance(module, DirectEncoder):
                    steps, batch = module.steps, x.shape[0]
                    ops, binary = _ops_and_binary(layer, x.unsqueeze(0), lead_dims=2)
                    ops = ops.expand(steps)
                elif self._known_spikes(x):  # skip the binary check: it costs several passes over x
                    steps, batch = x.shape[0], x.shape[1]
                    ops, binary = _spike_ops(layer, x), True
                else:
                    steps, batch = x.shape[0], x.shape[1]
                    ops, binary = _ops_and_binary(layer, x, lead_dims=2)
                rec, offset = self._record(name, "synapse", batch, steps)
                zero = torch.zeros_like(ops)
                rec.add("acs", ops if binary else zero, offset)
                rec.add("macs", zero if binary else ops, offset)

        return hook

    # -- results -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Per-sample totals (``*_per_sample``), per-timestep curves and per-layer rows."""
        neurons = {n: r for n, r in self.layers.items() if r.kind == "neuron"}
        synapses = {n: r for n, r in self.layers.items() if r.kind == "synapse"}
        layers: dict[str, dict[str, Any]] = {}
        for n, r in neurons.items():
            spikes = r.per_sample("spikes")
            updates = r.updates_per_sample()
            layers[n] = {
                "kind": "neuron",
                "neurons": r.neurons,
                "spikes_per_sample": spikes,
                "firing_rate": spikes / updates if updates else 0.0,
                "neuron_updates_per_sample": updates,
            }
        analog = {n: r for n, r in self.layers.items() if r.kind == "analog"}
        for n, r in analog.items():
            updates = r.updates_per_sample()
            layers[n] = {"kind": "analog", "neurons": r.neurons, "nonzero_per_sample": r.per_sample("nonzero"),
                         "activity": r.per_sample("nonzero") / updates if updates else 0.0,
                         "neuron_updates_per_sample": updates}
        for n, r in self.layers.items():
            if r.kind == "pool":
                layers[n] = {"kind": "pool", "neurons": r.neurons, "spikes_per_sample": r.per_sample("spikes")}
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
            "neuron_updates_per_sample": sum(r.updates_per_sample() for r in (*neurons.values(), *analog.values())),
            "spikes_per_step_per_sample": _sum_curves(r.per_step_per_sample("spikes") for r in neurons.values()),
            "synops_per_step_per_sample": _sum_curves(r.per_step_per_sample("acs") for r in synapses.values()),
            "macs_per_step_per_sample": _sum_curves(r.per_step_per_sample("macs") for r in synapses.values()),
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
