"""A differentiable twin of the fixed-point Lava network: the integers of ``lava-emu`` in the forward pass,
straight-through and surrogate gradients in the backward pass (the ground for quantisation-aware fine-tuning).

:class:`FixedPointTwin` holds, as float64 parameters, what the quantiser rounds: every connection's weights (as
``exporters.lava.quantize`` sees them, the input scale applied) and every neuron layer's bias; the rest of the
quantisation (each layer's scale α, each connection's ``weight_exp``, ``vth``, ``du``, ``dv``, ``bias_exp``) stays
as :func:`~exporters.lava.quantize.quantize_plan` chose it. Its forward pass rounds the weights and biases exactly as
the quantiser does and runs Lava's integer dynamics in float64 (every value an exact integer below 2^53), so its
spikes are the emulator's; rounding, truncation and wrap-around pass their gradient straight through, and the
threshold test has an arctan surrogate. Training its parameters therefore trains the network Lava will run.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from exporters.lava.emulate import UV_MAX, VTH_SHIFT, FixedPointNetwork, lava_dense_weights
from exporters.lava.errors import LavaBackendError
from exporters.lava.plan import CONST, LavaPlan
from exporters.lava.quantize import BIAS_MANT_MAX, W_MAX, QuantPlan

__all__ = ["FixedPointTwin"]


def _ste(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (y - x).detach()


def _wrap32(x: torch.Tensor) -> torch.Tensor:
    return _ste(x, torch.remainder(x + 2.0**31, 2.0**32) - 2.0**31)


def _wrap24(x: torch.Tensor) -> torch.Tensor:
    return _ste(x, torch.remainder(x + UV_MAX, 2.0 * UV_MAX) - UV_MAX)


def _decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """Lava's ``sign(p)·(|p| >> 12)`` for ``p = x·(4096 − d)``: ``trunc(p / 4096)``, exact in float64."""
    p = x * (4096 - d) / 4096.0
    return _ste(p, torch.trunc(p))


class _Spike(torch.autograd.Function):
    """``v > vth`` forward; arctan surrogate of ``(v − vth) / vth`` backward."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, vth: float, alpha: float) -> torch.Tensor:  # noqa: ANN001 - autograd ctx
        ctx.save_for_backward(v)
        ctx.vth, ctx.alpha = vth, alpha
        return (v > vth).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: ANN001
        (v,) = ctx.saved_tensors
        z = (v - ctx.vth) / ctx.vth
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * z) ** 2) / ctx.vth, None, None


class FixedPointTwin(nn.Module):
    """The network ``lava-emu`` runs for ``plan`` and ``quant``, as a torch module (see the module docstring).

    ``forward(x)`` takes ``x`` ``[T, B, *input_shape]`` (float, graph units) and returns, per neuron node, its
    spikes ``[T, B, *shape]`` (float64) or, for non-spiking read-outs, its voltage in NIR units; samples start from
    rest, as Lava's per-sample reset makes them. ``surrogate`` is the arctan slope of the threshold's gradient.
    """

    def __init__(self, plan: LavaPlan, quant: QuantPlan, surrogate: float = 2.0) -> None:
        super().__init__()
        self.plan, self.quant, self.surrogate = plan, quant, float(surrogate)
        net = FixedPointNetwork(plan, quant)  # the emulator's connections and evaluation order
        self.conns = net.conns
        self.order = [m for comp in net.components for m in comp]
        self.weights = nn.ParameterList()
        for c, qc in zip(plan.conns, quant.conns):
            if c.delays is not None:
                raise LavaBackendError(f"node {c.dst!r}: quantisation-aware fine-tuning does not support per-neuron "
                                       "delays (a NIR Delay) yet")
            # The twin rounds as the quantiser does; that must also be what Lava's Dense weight rule keeps.
            if c.dense is not None and not np.array_equal(lava_dense_weights(qc.weights), qc.weights):
                raise LavaBackendError(f"node {c.dst!r}: Lava would change the quantised weights from {c.src!r}")
            w = c.weights / quant.input_scale if c.src == plan.input_id else c.weights
            self.weights.append(nn.Parameter(torch.tensor(np.asarray(w, dtype=np.float64))))
        self.biases = nn.ParameterDict({self._key(m): nn.Parameter(torch.tensor(np.asarray(spec.bias_v, np.float64)))
                                        for m, spec in plan.neurons.items()})

    @staticmethod
    def _key(node_id: str) -> str:
        return node_id.replace(".", "·")  # ParameterDict keys may not contain dots

    def int_weights(self, k: int) -> torch.Tensor:
        """Connection ``k``'s 8-bit weights as the quantiser rounds them (straight-through gradient)."""
        c, q = self.conns[k], self.quant.conns[k]
        alpha = self.quant.neurons[c.dst].alpha
        w = self.weights[k]
        scaled = alpha * w / 2.0**q.weight_exp / 2.0
        return _ste(2 * scaled, torch.clamp(2 * torch.round(scaled), -128, W_MAX))

    def int_bias(self, m: str) -> torch.Tensor:
        """Layer ``m``'s effective bias ``bias_mant << bias_exp`` as the quantiser rounds it."""
        q = self.quant.neurons[m]
        b = 64.0 * q.alpha * self.biases[self._key(m)] / 2.0**q.bias_exp
        return _ste(b, torch.clamp(torch.round(b), -BIAS_MANT_MAX - 1, BIAS_MANT_MAX)) * 2.0**q.bias_exp

    def quant_plan(self) -> QuantPlan:
        """The integers the twin runs now, as a :class:`QuantPlan` for ``lava-fixed`` and ``lava-emu``
        (``quant=``): the quantiser's scales and exponents with the trained weights and biases."""
        with torch.no_grad():
            neurons = {m: replace(q, bias_mant=np.rint(self.int_bias(m).numpy() / 2.0**q.bias_exp).astype(np.int32))
                       for m, q in self.quant.neurons.items()}
            conns = []
            for k, qc in enumerate(self.quant.conns):
                w = self.int_weights(k).numpy()
                ref = self.weights[k].numpy() * self.quant.neurons[qc.dst].alpha / 2.0**qc.weight_exp
                peak = float(np.abs(ref).max(initial=0))
                err = float(np.abs(w - ref).max(initial=0) / peak) if peak > 0 else 0.0
                conns.append(replace(qc, weights=w.astype(np.int32), max_rel_error=err))
        return QuantPlan(neurons, conns, self.quant.input_scale, list(self.quant.notes))

    def _acc(self, k: int, s: torch.Tensor) -> torch.Tensor:
        """What connection ``k`` sends for source values ``s`` ``[B, *src_shape]``: ``[B, n_dst]``."""
        c = self.conns[k]
        w = self.int_weights(k)
        if c.conv is None:
            acc = s.reshape(s.shape[0], -1) @ w.T
        else:
            cv = c.conv
            acc = torch.nn.functional.conv2d(s.reshape((s.shape[0],) + c.src_shape), w, stride=cv["stride"],
                                             padding=cv["padding"], dilation=cv["dilation"], groups=cv["groups"])
            acc = acc.reshape(s.shape[0], -1)
        acc = acc * 2.0**c.exp if c.exp >= 0 else _ste(acc / 2.0**-c.exp, torch.floor(acc / 2.0**-c.exp))
        return _wrap32(acc) if c.conv is None else _wrap24(acc)

    def forward(self, x: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        plan, quant = self.plan, self.quant
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        t_len, b = x.shape[:2]
        x_int = torch.round(x * quant.input_scale)
        if not bool(((x == 0) | (x == 1)).all()):
            src_in = x_int
        else:
            src_in = (x_int != 0).to(torch.float64)
        into: dict[str, list[int]] = {m: [] for m in plan.neurons}
        for k, c in enumerate(self.conns):
            into[c.dst].append(k)
        n = {m: int(np.prod(spec.shape)) for m, spec in plan.neurons.items()}
        u = {m: torch.zeros(b, n[m], dtype=torch.float64) for m in plan.neurons}
        v = {m: torch.zeros(b, n[m], dtype=torch.float64) for m in plan.neurons}
        out: dict[str, list[torch.Tensor]] = {m: [] for m in plan.neurons}
        volt: dict[str, list[torch.Tensor]] = {m: [] for m in plan.neurons}
        biases = {m: self.int_bias(m) for m in plan.neurons}
        ones = torch.ones(b, 1, dtype=torch.float64)
        for t in range(t_len):
            for m in self.order:
                a_in = torch.zeros(b, n[m], dtype=torch.float64)
                for k in into[m]:
                    c = self.conns[k]
                    tt = t - 1 if c.delayed else t
                    if tt < 0:
                        continue
                    if c.src == plan.input_id:
                        s = src_in[tt]
                    elif c.src == CONST:
                        s = ones
                    else:
                        s = out[c.src][tt]
                    a_in = a_in + self._acc(k, s)
                q = quant.neurons[m]
                cur = _wrap32(_decay(u[m], q.du + 1) + _wrap32(_wrap32(a_in) * 64))
                wrapped = torch.where(cur > UV_MAX, cur - 2 * UV_MAX, cur)
                u[m] = torch.where(wrapped <= -UV_MAX, cur + 2 * UV_MAX, wrapped)
                vv = _wrap32(_decay(v[m], q.dv) + u[m] + biases[m])
                vv = torch.clamp(vv, -UV_MAX + 1, UV_MAX - 1)
                s = _Spike.apply(vv, float(int(q.vth) << VTH_SHIFT), self.surrogate)
                v[m] = vv * (1 - s.detach())
                out[m].append(s)
                volt[m].append(v[m])
        result: dict[str, torch.Tensor] = {}
        for m, spec in plan.neurons.items():
            shape = (t_len, b) + spec.shape
            if spec.record == "v":
                scale = torch.as_tensor((spec.v_scale * quant.neurons[m].v_unit).reshape(spec.shape))
                offset = torch.as_tensor(np.array(np.broadcast_to(spec.v_offset, (int(np.prod(spec.shape)),))
                                                  ).reshape(spec.shape))
                result[m] = torch.stack(volt[m]).reshape(shape) / scale + offset
            else:
                result[m] = torch.stack(out[m]).reshape(shape)
        return result
