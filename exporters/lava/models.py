"""Lava ProcessModels used by the NIR → Lava backend (``exporters.lava``).

They implement lava-nc's own ``Dense``, ``Conv`` and ``LIFReset`` processes and reuse Lava's dynamics
(``subthr_dynamics``, spiking, weight clipping, bit-accurate fixed point); they add three per-instance
options read from ``proc_params`` (keys prefixed ``nasflow_``):

- ``nasflow_zero_delay`` (Dense, Conv): deliver the accumulation within the same step instead of
  Lava's one-step buffer. Used on the feed-forward part of a graph so that Lava runs on NIR's time axis;
  connections that close a cycle keep Lava's one-step buffer, which is exactly NIR's back-edge delay.
- ``nasflow_delays`` (Dense, Conv): per output element, whole steps by which its sum arrives late (a NIR
  ``Delay`` in front of the neuron), on top of the timing above.
- ``nasflow_period``: samples run back to back in one runtime; every ``period`` steps the neurons reset
  ``u`` and ``v`` and the delaying connections drop their buffer, so no state crosses a sample boundary
  and no gap steps are needed.
- ``nasflow_record`` (LIFReset): ``(spike_path | None, voltage_path | None, n_steps)``; the model writes its
  spikes and/or its voltage after reset (Lava units) of every step into float32 memory-mapped files
  (``[n_steps, n_neurons]``, Lava layout), which costs no extra Lava process
  (a ``Monitor`` per layer would double the process count, and Var reads go element by element).

Select them with ``Loihi2SimCfg(exception_proc_model_map=model_map(fixed_point))``.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv import utils as conv_utils
from lava.proc.conv.process import Conv
from lava.proc.dense.models import AbstractPyDenseModelBitAcc, AbstractPyDenseModelFloat
from lava.proc.dense.process import Dense
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat
from lava.proc.lif.process import LIFReset
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

__all__ = ["model_map"]


class _Options:
    """Per-instance options shared by all models below (read once from proc_params)."""

    proc_params: dict
    time_step: int

    def _opts(self) -> None:
        if not hasattr(self, "_zero_delay"):
            self._zero_delay = bool(self.proc_params.get("nasflow_zero_delay", False))
            self._period = int(self.proc_params.get("nasflow_period", 0))
            self._record = self.proc_params.get("nasflow_record", None)
            self._rec = None

    def _sample_start(self) -> bool:
        """True on the first step of every sample (Lava's time_step starts at 1)."""
        return self._period > 0 and (self.time_step - 1) % self._period == 0

    def _lava_reset(self) -> bool:
        """LIFReset's own schedule (used by netx), when no nasflow period is set."""
        interval = int(self.proc_params.get("reset_interval", 0) or 0)
        if self._period > 0 or interval <= 0:
            return False
        return self.time_step % interval == int(self.proc_params.get("reset_offset", 0)) % interval

    def _write(self, spikes: np.ndarray, volt: np.ndarray) -> None:
        if self._record is None:
            return
        if self._rec is None:
            n_steps = int(self._record[2])
            self._rec = [
                None if path is None else np.memmap(path, dtype=np.float32, mode="r+", shape=(n_steps, spikes.size))
                for path in self._record[:2]
            ]
        for mm, values in zip(self._rec, (spikes, volt)):
            if mm is not None:
                mm[self.time_step - 1] = values.ravel()


class _ConnMixin(_Options):
    """Send-then-receive (Lava's buffered timing) or receive-then-send (zero delay)."""

    a_out: PyOutPort
    s_in: PyInPort

    def _accumulate(self, s_in: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _recv(self) -> np.ndarray:
        if self.num_message_bits.item() > 0:
            return self.s_in.recv()
        return self.s_in.recv().astype(bool)

    def run_spk(self) -> None:
        self._opts()
        if self.proc_params.get("nasflow_delays") is not None:
            self._run_delayed()
            return
        if self._zero_delay:
            self.a_out.send(self._accumulate(self._recv()))
            return
        if self._sample_start() or getattr(self, "_buf", None) is None:
            self._buf = np.zeros(self.a_out.shape, dtype=self._dtype)
        self.a_out.send(self._buf)
        self._buf = self._accumulate(self._recv())

    def _run_delayed(self) -> None:
        """Per output element a delay line (a NIR Delay in front of the neuron): the sum of step t reaches element j
        at step t + delay_j (+ 1 with Lava's buffered timing), from a ring buffer cleared at every sample start. With
        buffered timing it sends before it receives, as Lava's own models do, so that it can close a cycle."""
        if self._sample_start() or getattr(self, "_ring", None) is None:
            lag = np.asarray(self.proc_params["nasflow_delays"], dtype=np.int64).reshape(-1)
            self._lag = lag + (0 if self._zero_delay else 1)
            self._ring = np.zeros((int(self._lag.max()) + 1, lag.size), dtype=self._dtype)
            self._pos = 0
        depth, cols = len(self._ring), np.arange(self._ring.shape[1])
        if self._zero_delay:
            self._ring[(self._pos + self._lag) % depth, cols] = np.asarray(self._accumulate(self._recv())).reshape(-1)
        out = self._ring[self._pos].copy()
        self._ring[self._pos] = 0
        self.a_out.send(out.reshape(self.a_out.shape))
        if not self._zero_delay:
            self._ring[(self._pos + self._lag) % depth, cols] = np.asarray(self._accumulate(self._recv())).reshape(-1)
        self._pos = (self._pos + 1) % depth


@implements(proc=Dense, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class NasDenseFloat(_ConnMixin, AbstractPyDenseModelFloat):
    """Float Dense with optional zero delay and per-sample buffer reset."""

    _dtype = float

    def _accumulate(self, s_in: np.ndarray) -> np.ndarray:
        if s_in.dtype == bool:
            return self.weights[:, s_in].sum(axis=1)
        return self.weights.dot(s_in)


@implements(proc=Dense, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class NasDenseFixed(_ConnMixin, AbstractPyDenseModelBitAcc):
    """Bit-accurate Dense (Lava's 8-bit clip/truncate and ``weight_exp``) with the options above."""

    _dtype = np.int32

    def _accumulate(self, s_in: np.ndarray) -> np.ndarray:
        if not self.weights_set:
            sign_mode = self.proc_params.get("sign_mode") or determine_sign_mode(self.weights)
            bits = self.proc_params.get("num_weight_bits", 8)
            self.weights = truncate_weights(clip_weights(self.weights, sign_mode, num_bits=8), sign_mode, bits)
            self.weights_set = True
            self.weight_exp = int(self.proc_params.get("weight_exp", 0))
        w = self.weights.astype(np.int64)
        acc = w[:, s_in].sum(axis=1) if s_in.dtype == bool else w.dot(s_in.astype(np.int64))
        acc = np.left_shift(acc, self.weight_exp) if self.weight_exp >= 0 else np.right_shift(acc, -self.weight_exp)
        return acc.astype(np.int32)


class _ConvBase(_ConnMixin, PyLoihiProcessModel):
    kernel_size: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    stride: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    padding: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    dilation: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    groups: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)
    weight_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_weight_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)

    def _conv(self, s_in: np.ndarray) -> np.ndarray:
        """Lava's convolution (``lava.proc.conv.utils.conv``: flipped kernel, (W, H, C) layout) in numpy.

        Lava's own helper rebuilds the kernel with ``torch.FloatTensor(ndarray)`` on every step (about 5 ms
        for an 8x8x16 layer), and torch's OpenMP convolutions can hang in Lava's forked processes; this is
        the same formula with the kernel prepared once and numpy (BLAS) doing the sums.
        """
        if getattr(self, "_kernel", None) is None:
            w = np.asarray(self.weight, dtype=np.float64)[:, ::-1, ::-1].transpose(0, 3, 2, 1)  # (O, I, kh, kw)
            self._kernel = np.ascontiguousarray(w)
            rev = [np.asarray(v).ravel()[::-1].astype(int) for v in (self.stride, self.padding, self.dilation)]
            self._geom = [tuple(int(t) for t in r) for r in rev]
        return conv2d_chw(np.asarray(s_in, dtype=np.float64).transpose(2, 1, 0), self._kernel, *self._geom,
                          int(self.groups[0])).transpose(2, 1, 0)


def conv2d_chw(x: np.ndarray, k: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
               dilation: tuple[int, int], groups: int) -> np.ndarray:
    """Cross-correlation of ``x`` (C, H, W) with ``k`` (O, C/groups, kh, kw), as ``torch.nn.functional.conv2d``."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    o, cg, kh, kw = k.shape
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    win = win[:, ::sh, ::sw, ::dh, ::dw]  # (C, Ho, Wo, kh, kw)
    og = o // groups
    outs = [np.tensordot(k[g * og:(g + 1) * og], win[g * cg:(g + 1) * cg], axes=([1, 2, 3], [0, 3, 4]))
            for g in range(groups)]
    return np.concatenate(outs, axis=0)


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class NasConvFloat(_ConvBase):
    """Float Conv with the options above."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_buf: np.ndarray = LavaPyType(np.ndarray, float)
    weight: np.ndarray = LavaPyType(np.ndarray, float)
    _dtype = float

    def _accumulate(self, s_in: np.ndarray) -> np.ndarray:
        return self._conv(s_in)


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class NasConvFixed(_ConvBase):
    """Fixed-point Conv; unlike Lava 0.10's PyConvModelFixed it applies ``weight_exp``."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    _dtype = np.int32

    def _accumulate(self, s_in: np.ndarray) -> np.ndarray:
        acc = np.rint(self._conv(s_in)).astype(np.int64)
        exp = int(np.asarray(self.weight_exp).ravel()[0])
        acc = np.left_shift(acc, exp) if exp >= 0 else np.right_shift(acc, -exp)
        return conv_utils.signed_clamp(acc, bits=24).astype(np.int32)


class _LifMixin(_Options):
    """LIFReset step: receive, reset at sample start, Lava's dynamics, fire, record, send."""

    def _spikes(self) -> np.ndarray:
        raise NotImplementedError

    def run_spk(self) -> None:
        self._opts()
        a_in = self.a_in.recv()
        if self._sample_start() or self._lava_reset():
            self.u *= 0
            self.v *= 0
        self._prepare()
        self.subthr_dynamics(activation_in=a_in)
        s = self._spikes()
        self.reset_voltage(spike_vector=s)
        self._write(s, self.v)
        self.s_out.send(s)

    def _prepare(self) -> None:
        pass


@implements(proc=LIFReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class NasLifFloat(_LifMixin, AbstractPyLifModelFloat):
    """Lava's float LIF dynamics with per-sample reset and recording."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)

    def _spikes(self) -> np.ndarray:
        return self.v > self.vth


@implements(proc=LIFReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class NasLifFixed(_LifMixin, AbstractPyLifModelFixed):
    """Lava's bit-accurate LIF dynamics (24-bit u, v; vth << 6) with per-sample reset and recording."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)

    def _prepare(self) -> None:
        self.scale_bias()
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)

    def _spikes(self) -> np.ndarray:
        return self.v > self.effective_vth


def model_map(fixed_point: bool) -> dict:
    """``exception_proc_model_map`` for ``Loihi2SimCfg``: Lava process class → model class above."""
    if fixed_point:
        return {Dense: NasDenseFixed, Conv: NasConvFixed, LIFReset: NasLifFixed}
    return {Dense: NasDenseFloat, Conv: NasConvFloat, LIFReset: NasLifFloat}
