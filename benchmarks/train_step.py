"""One SNN training step, nasflow against snnTorch, Norse, SpikingJelly and a ReLU floor.

The network is AutoSNN's SNN_1 backbone with SCB_k3 in every TBD block (REFERENCE.md §2, §10):
stem conv3x3+BN (3→C) + neuron, five SCB_k3 blocks ``[C, M, 2C, 2C, M, 4C, 4C, M]``, flatten,
``Linear(4C·4·4 → 10·classes, bias=False)`` + neuron, voting ``AvgPool1d(10, 10)``, rate averaged over T,
MSE against one-hot targets, Adam. Direct coding everywhere: the stem conv+BN runs once on the
analog image and the same current drives all T steps.

* ``nasflow``: ``create_model("autosnn", arch="all-SCB_k3", ...)`` (PLIF, fused time loop, BN+neuron
  fused in training). ``--nasflow-mode`` picks the variant (``fused`` default, ``plain``, ``+bool``,
  ``+cl`` for channels_last); ``--frameworks nasflow_plain,nasflow_fused_cl,...`` runs extra variants
  alongside for A/B (ratios always use ``nasflow``).
* ``snntorch``: per-step loop, ``snntorch.Leaky(learn_beta=True, reset_mechanism="zero")`` (one
  learnable decay per layer, like PLIF), the same conv/BN/pool/linear layers applied per step.
  snnTorch has one execution mode on CPU (eager, per step); explicit state passing is used.
* ``norse``: per-step ``norse.torch.SequentialState`` with ``LIFBoxCell`` (LIF without synaptic
  current; ``dt·tau_mem_inv = 0.5`` is the τ = 2 decay-input leak of PLIF, not learnable).
* ``spikingjelly``: multi-step ``SeqToANNContainer`` + ``MultiStepParametricLIFNode(backend="torch")``
  (``cupy`` is GPU-only, so ``torch`` is its fastest CPU multi-step backend).
* ``floor``: the same convs over ``T·B`` with ReLU instead of neurons (no time loop): the floor
  for a spiking step on this CPU (REFERENCE.md §10). ``floor_fused``: the same with BN+ReLU fused as nasflow
  fuses BN+neuron (saves the conv output and the BN statistics, recomputes BN in backward), so that nasflow /
  floor compares like with like.

Method
------
Each framework lives in its own spawned worker process (it imports only its own library, builds
its model, optimiser and batch, then waits for commands on a pipe). The parent sends ``step``
to the workers in round-robin order (the starting worker rotates every round), so the frameworks
alternate and background load hits them alike. Each worker times only its own step
(``perf_counter`` around zero_grad + forward + loss + backward + Adam step). The first
``--warmup`` rounds are discarded; the table shows the median and IQR of the rest.

Memory is per process, three ways:

* ``peak MB``: after the model, optimiser and batch exist (before any step) the worker reads its
  resident set size ``VmRSS`` and resets the kernel's high-water mark (writing ``5`` to
  ``/proc/self/clear_refs``); at the end ``VmHWM - baseline`` is the peak extra resident memory that
  training needed (activations, saved tensors, gradients, Adam state and what glibc's malloc kept
  after frees). Where the reset is refused the baseline falls back to ``ru_maxrss`` at that point.
* ``live MB``: peak bytes held by torch's CPU allocator during one extra step, from the profiler's
  allocation events: independent of malloc's retention and fragmentation.
* ``saved MB``: distinct storages saved for backward by one forward (``saved_tensors_hooks``).

Usage: ``python benchmarks/train_step.py [--steps 7] [--warmup 2] [--threads 2]
[--frameworks nasflow,snntorch,norse,spikingjelly,floor] [--batch 32] [--T 8] [--budget 150]
[--nasflow-mode fused]``.
Results also go to ``benchmarks/results/train_step.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

FRAMEWORKS = ("nasflow", "snntorch", "norse", "spikingjelly", "floor", "floor_fused")
PEERS = ("snntorch", "norse", "spikingjelly")
MIN_STEPS = 5  # the time budget never cuts the timed steps below this
VOTE = 10
TAU0 = 2.0


# ----------------------------------------------------------------------------------------------
# Shared architecture pieces (plain torch)
# ----------------------------------------------------------------------------------------------
def _layout(channels: int, size: int) -> list[tuple[int, int, bool]]:
    """``(c_in, c_out, pool_after)`` of the ten convs inside the five SCB_k3 blocks."""
    widths = [channels, 2 * channels, 2 * channels, 4 * channels, 4 * channels]
    convs, c = [], channels
    for i, w in enumerate(widths):
        convs.append((c, w, False))
        convs.append((w, w, i in (0, 2, 4)))
        c = w
    return convs


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]


def _fc_in(channels: int, size: int) -> int:
    return 4 * channels * (size // 8) ** 2


def _vote(x: torch.Tensor) -> torch.Tensor:
    return x.unflatten(-1, (x.shape[-1] // VOTE, VOTE)).mean(-1)


# ----------------------------------------------------------------------------------------------
# Model builders: each returns ``model`` with ``model(x[B, C, H, W]) -> rate[B, classes]`` and
# an optional ``before_step`` hook (state resets that a real training loop must also do).
# ----------------------------------------------------------------------------------------------
NASFLOW_MODES = ("fused", "fused+cl", "fused+bool", "fused+bool+cl", "plain", "plain+cl")


def build_nasflow(cfg: dict[str, Any], mode: str | None = None) -> tuple[nn.Module, Callable[[], None] | None]:
    """nasflow's model in one of ``NASFLOW_MODES``: ``fused`` = BN+neuron fused in training (the library
    default), ``plain`` = ``nasflow.snn.fused.set_fusion(False)``; ``+bool`` = ``set_fusion(True,
    spikes_as_bool=True)``; ``+cl`` = ``model.to(memory_format=torch.channels_last)``."""
    from nasflow.models import create_model
    from nasflow.snn.fused import set_fusion

    mode = mode or cfg.get("nasflow_mode", NASFLOW_MODES[0])
    opts = mode.split("+")
    set_fusion(opts[0] == "fused", spikes_as_bool="bool" in opts)
    model = create_model(
        "autosnn", arch="all-SCB_k3", in_shape=(3, cfg["size"], cfg["size"]), num_classes=cfg["classes"],
        channels=cfg["channels"], steps=cfg["T"],
    )
    if "cl" in opts:
        model = model.to(memory_format=torch.channels_last)
    return model, None


class SnnTorchNet(nn.Module):
    """Per-step loop with snnTorch ``Leaky`` neurons (learnable β ≈ PLIF's learnable decay)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate

        def leaky() -> nn.Module:
            return snn.Leaky(
                beta=torch.tensor(1.0 - 1.0 / TAU0), learn_beta=True, threshold=1.0, reset_mechanism="zero",
                spike_grad=surrogate.atan(alpha=2.0),
            )

        c, size, self.T = cfg["channels"], cfg["size"], cfg["T"]
        self.stem = nn.Sequential(*_conv_bn(3, c))
        self.stem_sn = leaky()
        self.convs = nn.ModuleList(nn.Sequential(*_conv_bn(ci, co)) for ci, co, _ in _layout(c, size))
        self.pools = [p for _, _, p in _layout(c, size)]
        self.sns = nn.ModuleList(leaky() for _ in self.convs)
        self.fc = nn.Linear(_fc_in(c, size), VOTE * cfg["classes"], bias=False)
        self.fc_sn = leaky()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cur0 = self.stem(x)  # direct coding: once, reused every step
        mems = [sn.init_leaky() for sn in (self.stem_sn, *self.sns, self.fc_sn)]
        rate = 0.0
        for _ in range(self.T):
            h, mems[0] = self.stem_sn(cur0, mems[0])
            for i, (conv, sn, pool) in enumerate(zip(self.convs, self.sns, self.pools)):
                h, mems[i + 1] = sn(conv(h), mems[i + 1])
                if pool:
                    h = F.max_pool2d(h, 2)
            h, mems[-1] = self.fc_sn(self.fc(h.flatten(1)), mems[-1])
            rate = rate + _vote(h)
        return rate / self.T


def build_snntorch(cfg: dict[str, Any]) -> tuple[nn.Module, Callable[[], None] | None]:
    return SnnTorchNet(cfg), None


class NorseNet(nn.Module):
    """Per-step ``SequentialState`` of conv/BN/``LIFBoxCell``/pool layers."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        import norse.torch as norse

        p = norse.LIFBoxParameters(
            tau_mem_inv=torch.tensor(1.0 / (TAU0 * 1e-3)), v_th=torch.tensor(1.0), v_reset=torch.tensor(0.0),
        )
        c, size, self.T = cfg["channels"], cfg["size"], cfg["T"]
        self.stem = nn.Sequential(*_conv_bn(3, c))
        layers: list[nn.Module] = [norse.LIFBoxCell(p)]
        for ci, co, pool in _layout(c, size):
            layers += [*_conv_bn(ci, co), norse.LIFBoxCell(p)]
            if pool:
                layers.append(nn.MaxPool2d(2))
        layers += [nn.Flatten(), nn.Linear(_fc_in(c, size), VOTE * cfg["classes"], bias=False), norse.LIFBoxCell(p)]
        self.net = norse.SequentialState(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cur0 = self.stem(x)
        state = None
        rate = 0.0
        for _ in range(self.T):
            z, state = self.net(cur0, state)
            rate = rate + _vote(z)
        return rate / self.T


def build_norse(cfg: dict[str, Any]) -> tuple[nn.Module, Callable[[], None] | None]:
    return NorseNet(cfg), None


class SpikingJellyNet(nn.Module):
    """Multi-step SpikingJelly (clock_driven): ``SeqToANNContainer`` + ``MultiStepParametricLIFNode``."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        from spikingjelly.clock_driven import layer, neuron, surrogate

        def plif() -> nn.Module:
            return neuron.MultiStepParametricLIFNode(
                init_tau=TAU0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=True,
                surrogate_function=surrogate.ATan(alpha=2.0), backend="torch",
            )

        c, size, self.T = cfg["channels"], cfg["size"], cfg["T"]
        self.stem = nn.Sequential(*_conv_bn(3, c))
        layers: list[nn.Module] = [plif()]
        for ci, co, pool in _layout(c, size):
            layers += [layer.SeqToANNContainer(*_conv_bn(ci, co)), plif()]
            if pool:
                layers.append(layer.SeqToANNContainer(nn.MaxPool2d(2)))
        layers += [
            nn.Flatten(2), layer.SeqToANNContainer(nn.Linear(_fc_in(c, size), VOTE * cfg["classes"], bias=False)),
            plif(),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cur0 = self.stem(x).unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return _vote(self.net(cur0)).mean(0)


def build_spikingjelly(cfg: dict[str, Any]) -> tuple[nn.Module, Callable[[], None] | None]:
    from spikingjelly.clock_driven import functional

    model = SpikingJellyNet(cfg)
    return model, lambda: functional.reset_net(model)


class ReluFloorNet(nn.Module):
    """The same convs over ``T·B`` with ReLU instead of spiking neurons: no time loop at all."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        c, size, self.T = cfg["channels"], cfg["size"], cfg["T"]
        self.stem = nn.Sequential(*_conv_bn(3, c), nn.ReLU())
        layers: list[nn.Module] = []
        for ci, co, pool in _layout(c, size):
            layers += [*_conv_bn(ci, co), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
        layers += [nn.Flatten(), nn.Linear(_fc_in(c, size), VOTE * cfg["classes"], bias=False), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = h.unsqueeze(0).expand(self.T, *h.shape).reshape(-1, *h.shape[1:])
        out = self.net(h)
        return _vote(out.unflatten(0, (self.T, x.shape[0]))).mean(0)


def build_floor(cfg: dict[str, Any]) -> tuple[nn.Module, Callable[[], None] | None]:
    return ReluFloorNet(cfg), None


class _BNReLU(torch.autograd.Function):
    """Training-mode BatchNorm + ReLU saving what nasflow's fused BN+neuron function saves (the conv output and the
    batch statistics) and recomputing BN in backward: the floor's memory and time on nasflow's own BN path."""

    @staticmethod
    def forward(ctx, y, weight, bias, bn):  # type: ignore[override]
        x, mean, invstd = torch.native_batch_norm(y, weight, bias, bn.running_mean, bn.running_var, True,
                                                  bn.momentum, bn.eps)
        ctx.bn = bn
        ctx.save_for_backward(y, weight, bias, mean, invstd)
        return x.relu_()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        y, weight, bias, mean, invstd = ctx.saved_tensors
        bn = ctx.bn
        shape = (1, -1) + (1,) * (y.dim() - 2)
        alpha = invstd * weight
        x = torch.addcmul((bias - mean * alpha).view(shape), y, alpha.view(shape))  # BN recomputed in one pass
        gx = torch.ops.aten.threshold_backward(grad, x, 0.0)
        gy, gw, gb = torch.ops.aten.native_batch_norm_backward(gx, y, weight, bn.running_mean, bn.running_var, mean,
                                                               invstd, True, bn.eps, [True, True, True])
        return gy, gw, gb, None


class FusedBNReLU(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return torch.relu(self.bn(y))
        return _BNReLU.apply(y, self.bn.weight, self.bn.bias, self.bn)


class FusedReluFloorNet(ReluFloorNet):
    """``ReluFloorNet`` with every BN+ReLU pair fused as nasflow fuses BN+neuron (``FusedBNReLU``)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.stem = _fuse_bn_relu(self.stem)
        self.net = _fuse_bn_relu(self.net)


def _fuse_bn_relu(seq: nn.Sequential) -> nn.Sequential:
    out: list[nn.Module] = []
    for m in seq:
        if isinstance(m, nn.ReLU) and out and isinstance(out[-1], nn.BatchNorm2d):
            bn = out.pop()
            fused = FusedBNReLU(bn.num_features)
            fused.bn = bn
            out.append(fused)
        else:
            out.append(m)
    return nn.Sequential(*out)


def build_floor_fused(cfg: dict[str, Any]) -> tuple[nn.Module, Callable[[], None] | None]:
    return FusedReluFloorNet(cfg), None


def build_nasflow_torchloop(cfg: dict[str, Any]) -> tuple[nn.Module, Callable[[], None] | None]:
    """nasflow with its torch-op neuron loop (``NASFLOW_KERNELS=torch`` in this worker only): A/B for the kernel."""
    import os

    os.environ["NASFLOW_KERNELS"] = "torch"
    return build_nasflow(cfg)


def build_nasflow_chunk(cfg: dict[str, Any], mb: float) -> tuple[nn.Module, Callable[[], None] | None]:
    """nasflow with CPU conv chunks of ``mb`` MiB (0: one conv call over T·B) in this worker only: A/B for the
    chunk size (``nasflow.snn.layers.CONV_CHUNK_BYTES``)."""
    from nasflow.snn import layers

    layers.CONV_CHUNK_BYTES = int(mb * 2**20)
    return build_nasflow(cfg)


CHUNK_VARIANTS = {"nasflow_nochunk": 0.0, "nasflow_chunk1": 1.0, "nasflow_chunk6": 6.0, "nasflow_chunk12": 12.0}

BUILDERS: dict[str, Callable[[dict[str, Any]], tuple[nn.Module, Callable[[], None] | None]]] = {
    "nasflow": build_nasflow,
    "snntorch": build_snntorch,
    "norse": build_norse,
    "spikingjelly": build_spikingjelly,
    "floor": build_floor,
    "floor_fused": build_floor_fused,
    # Extra nasflow variants for A/B runs (``--frameworks nasflow,nasflow_plain,...``); ratios use ``nasflow``.
    **{f"nasflow_{m.replace('+', '_')}": (lambda cfg, m=m: build_nasflow(cfg, m)) for m in NASFLOW_MODES},
    "nasflow_torchloop": build_nasflow_torchloop,
    **{name: (lambda cfg, mb=mb: build_nasflow_chunk(cfg, mb)) for name, mb in CHUNK_VARIANTS.items()},
}


def framework_version(name: str) -> str:
    if name in ("floor", "floor_fused"):
        return "torch " + torch.__version__.split("+")[0]
    if name.startswith("nasflow"):
        from nasflow import kernels

        return f"nasflow ({kernels.backend()} neuron loop)"
    try:
        from importlib.metadata import version

        return version(name.split("_")[0])
    except Exception:  # noqa: BLE001 - informative only
        return "?"


# ----------------------------------------------------------------------------------------------
# Memory probes
# ----------------------------------------------------------------------------------------------
def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def saved_tensor_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, before: Callable[[], None] | None) -> int:
    """Bytes of distinct storages saved for backward by one forward and still held when it ends.

    Tensors that a framework saves and then drops during the forward (a graph branch it detaches)
    are not counted: each saved tensor is tracked by a weak reference.
    """
    packed: list[tuple[weakref.ref, int, int]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        packed.append((weakref.ref(t), st.data_ptr(), st.nbytes()))
        return t

    if before is not None:
        before()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.mse_loss(model(x), y)
    alive = {ptr: nbytes for ref, ptr, nbytes in packed if ref() is not None}
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(alive.values())


@contextlib.contextmanager
def _quiet_stderr() -> Any:
    """Silence file descriptor 2 (C++ warnings bypass ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def torch_peak_live_bytes(fn: Callable[[], Any]) -> int | None:
    """Peak bytes held by torch's CPU allocator while ``fn()`` runs, above what was held at its start.

    Read from the profiler's raw allocation events (every alloc/free with its size, in time order), so
    it is independent of how glibc's malloc keeps or returns freed memory. ``None`` if this torch
    version's profiler does not expose the events.
    """
    try:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = prof.profiler.kineto_results.events()
        mem = sorted((e.start_us(), i, e.nbytes()) for i, e in enumerate(events) if e.name() == "[memory]")
    except Exception:  # noqa: BLE001 - private profiler API; the column is optional
        return None
    cur = peak = 0
    for _, _, nbytes in mem:
        cur += nbytes
        peak = max(peak, cur)
    return peak


# ----------------------------------------------------------------------------------------------
# Worker process
# ----------------------------------------------------------------------------------------------
def _worker(name: str, cfg: dict[str, Any], conn: Any) -> None:
    try:
        torch.set_num_threads(cfg["threads"])
        torch.manual_seed(0)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            model, before = BUILDERS[name](cfg)  # SpikingJelly prints optional-dependency notices on import
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(1)
        x = torch.rand(cfg["batch"], 3, cfg["size"], cfg["size"], generator=gen)
        y = F.one_hot(torch.randint(0, cfg["classes"], (cfg["batch"],), generator=gen), cfg["classes"]).float()
        params = sum(p.numel() for p in model.parameters())
        build_s = time.perf_counter() - t0

        def step() -> tuple[float, float, int]:
            flt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t, c = time.perf_counter(), time.process_time()
            if before is not None:
                before()
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            return wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt

        base_rss = _proc_status_kb("VmRSS") or _maxrss_kb()
        hwm_reset = _reset_hwm()
        if not hwm_reset:
            base_rss = _maxrss_kb()
        conn.send(dict(ok=True, params=params, build_s=build_s, version=framework_version(name), pid=os.getpid()))
        while True:
            cmd = conn.recv()
            if cmd == "step":
                conn.send(step())
            elif cmd == "finish":
                peak = (_proc_status_kb("VmHWM") if hwm_reset else None) or _maxrss_kb()
                saved = saved_tensor_bytes(model, x, y, before)
                with _quiet_stderr():  # c10 warns (on fd 2) about frees of blocks allocated before profiling
                    live = torch_peak_live_bytes(step)
                conn.send(dict(
                    base_rss_mb=base_rss / 1024, peak_rss_mb=peak / 1024, peak_delta_mb=(peak - base_rss) / 1024,
                    hwm_reset=hwm_reset, saved_mb=saved / 2**20, live_mb=None if live is None else live / 2**20,
                ))
                return
            else:
                raise ValueError(f"unknown command {cmd!r}")
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which prints it
        import traceback

        conn.send(dict(ok=False, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()))


# ----------------------------------------------------------------------------------------------
# Parent: alternate, collect, report
# ----------------------------------------------------------------------------------------------
def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def machine_info(threads: int) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return dict(
        platform=platform.platform(), python=platform.python_version(), cpu=cpu, cpu_count=os.cpu_count(),
        threads=threads, loadavg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        torch=torch.__version__,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [n.strip() for n in args.frameworks.split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise SystemExit(f"unknown frameworks {unknown}; choose from {', '.join(FRAMEWORKS)}")
    cfg = dict(batch=args.batch, T=args.T, channels=args.channels, size=32, classes=10, threads=args.threads,
               nasflow_mode=args.nasflow_mode)
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the profiler's stage messages out of the table
    ctx = mp.get_context("spawn")
    workers: dict[str, tuple[Any, Any]] = {}
    info: dict[str, dict[str, Any]] = {}
    t_start = time.perf_counter()
    machine = machine_info(args.threads)  # load average before the workers start
    for name in names:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(name, cfg, child), daemon=True)
        proc.start()
        child.close()  # only the worker holds its end, so a dead worker reads as EOF here
        workers[name] = (proc, parent)
    for name in list(names):
        try:
            msg = workers[name][1].recv()
        except (EOFError, OSError):
            msg = dict(ok=False, error=f"worker exited with code {workers[name][0].exitcode} before it was ready")
        if not msg.get("ok"):
            print(f"[{name}] failed to build: {msg['error']}\n{msg.get('trace', '')}", file=sys.stderr)
            workers.pop(name)[0].join(5)
            names.remove(name)
            continue
        info[name] = msg
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, list[int]] = {n: [] for n in names}
    rounds = args.warmup + args.steps
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)] if names else []
        got = {}
        for name in order:
            try:
                workers[name][1].send("step")
                got[name] = workers[name][1].recv()
            except (EOFError, OSError):
                code = workers[name][0].exitcode
                raise SystemExit(f"worker {name!r} died during a step (exit code {code})") from None
            if isinstance(got[name], dict):  # the worker reports an exception instead of a time
                raise SystemExit(f"[{name}] step failed: {got[name]['error']}\n{got[name].get('trace', '')}")
            if r >= args.warmup:
                wall[name].append(got[name][0])
                cpu[name].append(got[name][1])
                faults[name].append(got[name][2])
        if args.verbose:
            tag = "warm-up" if r < args.warmup else "timed"
            print(f"round {r + 1}/{rounds} ({tag}): " + ", ".join(f"{n} {got[n][0]:.3f}s" for n in names), flush=True)
        timed = r + 1 - args.warmup
        if args.budget and timed >= MIN_STEPS and time.perf_counter() - t_start > args.budget and r + 1 < rounds:
            print(f"time budget of {args.budget:.0f}s reached: stopping after {timed} timed steps", flush=True)
            break
    mem: dict[str, dict[str, Any]] = {}
    for name in names:
        workers[name][1].send("finish")
        mem[name] = workers[name][1].recv()
        workers[name][0].join(10)
    rows = []
    for name in names:
        q1, med, q3 = _quartiles(wall[name])
        rows.append(dict(
            framework=name, version=info[name]["version"], median_s=med, q1_s=q1, q3_s=q3, iqr_s=q3 - q1,
            min_s=min(wall[name]), cpu_median_s=statistics.median(cpu[name]), times_s=wall[name], cpu_s=cpu[name],
            minor_faults_per_step=statistics.median(faults[name]), params=info[name]["params"],
            build_s=info[name]["build_s"], **mem[name],
        ))
    by = {row["framework"]: row for row in rows}
    ratios: dict[str, Any] = {}
    peers = [by[p] for p in PEERS if p in by]
    if "nasflow" in by and peers:
        fastest = min(peers, key=lambda r: r["median_s"])
        lightest = min(peers, key=lambda r: r["peak_delta_mb"])
        nas = by["nasflow"]
        # Paired estimate: peer/nasflow within each round (adjacent in time), then the median over rounds.
        paired = {
            p["framework"]: statistics.median(a / b for a, b in zip(wall[p["framework"]], wall["nasflow"]))
            for p in peers
        }
        ratios = dict(
            fastest_peer=fastest["framework"],
            speedup_vs_fastest_peer=fastest["median_s"] / nas["median_s"],
            paired_speedup=paired,
            cpu_speedup_vs_fastest_peer=min(p["cpu_median_s"] for p in peers) / nas["cpu_median_s"],
            lightest_peer=lightest["framework"],
            memory_vs_lightest_peer=nas["peak_delta_mb"] / lightest["peak_delta_mb"],
            saved_vs_lightest_peer=nas["saved_mb"] / min(r["saved_mb"] for r in peers),
            live_vs_lightest_peer=(
                nas["live_mb"] / min(r["live_mb"] for r in peers)
                if nas["live_mb"] is not None and all(r["live_mb"] is not None for r in peers) else None
            ),
            goal=dict(speedup=1.2, memory=0.8),
        )
        if "floor" in by:
            ratios["time_vs_floor"] = nas["median_s"] / by["floor"]["median_s"]
            ratios["memory_vs_floor"] = nas["peak_delta_mb"] / by["floor"]["peak_delta_mb"]
        if "floor_fused" in by:
            ratios["time_vs_floor_fused"] = nas["median_s"] / by["floor_fused"]["median_s"]
            ratios["paired_time_vs_floor_fused"] = statistics.median(
                a / b for a, b in zip(wall["nasflow"], wall["floor_fused"]))
            ratios["memory_vs_floor_fused"] = nas["peak_delta_mb"] / by["floor_fused"]["peak_delta_mb"]
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    # imported here, not at the top: spawned workers import this module and must load only their framework
    from exporters.core.jsonio import SCHEMA_VERSION

    return dict(
        schema_version=SCHEMA_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        benchmark="train_step",
        network=dict(arch="AutoSNN SNN_1, all-SCB_k3", channels=args.channels, input=[3, 32, 32], T=args.T,
                     batch=args.batch, classes=10, vote=VOTE, loss="MSE(rate, one-hot)", optimiser="Adam(lr=1e-3)"),
        method=dict(
            steps=min((len(v) for v in wall.values()), default=0), steps_requested=args.steps, warmup=args.warmup,
            nasflow_mode=args.nasflow_mode,
            alternation="round-robin, rotating start, one process per framework",
            timing="perf_counter around zero_grad+forward+loss+backward+step inside the worker; median and IQR",
            memory="peak_delta_mb: VmHWM - VmRSS baseline per worker process (HWM reset via /proc/self/clear_refs "
                   "after model, optimiser and batch exist, before the first step); live_mb: peak bytes held by "
                   "torch's CPU allocator during one extra step (profiler allocation events); saved_mb: distinct "
                   "storages saved for backward by one forward",
        ),
        machine=machine,
        torch_version=torch.__version__,
        rows=rows,
        ratios=ratios,
        wall_s=time.perf_counter() - t_start,
    )


def format_table(res: dict[str, Any]) -> str:
    head = (f"{'framework':<13}{'version':>11}{'median s':>10}{'IQR s':>8}{'cpu s':>8}{'peak MB':>9}{'live MB':>9}"
            f"{'saved MB':>10}{'params':>9}")
    lines = [head, "-" * len(head)]
    for r in res["rows"]:
        lines.append(
            f"{r['framework']:<13}{r['version'][:11]:>11}{r['median_s']:>10.3f}{r['iqr_s']:>8.3f}"
            f"{r['cpu_median_s']:>8.3f}{r['peak_delta_mb']:>9.0f}"
            + (f"{r['live_mb']:>9.0f}" if r["live_mb"] is not None else f"{'n/a':>9}")
            + f"{r['saved_mb']:>10.0f}{r['params']:>9d}"
        )
    rt = res["ratios"]
    if rt:
        ok_t = "meets" if rt["speedup_vs_fastest_peer"] >= rt["goal"]["speedup"] else "misses"
        ok_m = "meets" if rt["memory_vs_lightest_peer"] <= rt["goal"]["memory"] else "misses"
        live = rt["live_vs_lightest_peer"]
        lines += [
            "",
            f"nasflow speed-up vs fastest peer ({rt['fastest_peer']}): {rt['speedup_vs_fastest_peer']:.2f}x"
            f"  [goal >= {rt['goal']['speedup']}: {ok_t}]",
            "  paired per round: " + ", ".join(f"{k} {v:.2f}x" for k, v in rt["paired_speedup"].items())
            + f"; on CPU time: {rt['cpu_speedup_vs_fastest_peer']:.2f}x",
            f"nasflow memory / lightest peer ({rt['lightest_peer']}): peak RSS {rt['memory_vs_lightest_peer']:.2f}"
            f"  [goal <= {rt['goal']['memory']}: {ok_m}]",
            "  torch live peak " + (f"{live:.2f}" if live is not None else "n/a")
            + f"; saved for backward {rt['saved_vs_lightest_peer']:.2f}",
        ]
        if "time_vs_floor" in rt:
            lines.append(
                f"nasflow / ReLU floor: time {rt['time_vs_floor']:.2f}x, peak RSS {rt['memory_vs_floor']:.2f}x"
            )
        if "time_vs_floor_fused" in rt:
            lines.append(
                f"nasflow / ReLU floor on the fused BN path: time {rt['time_vs_floor_fused']:.2f}x (paired "
                f"{rt['paired_time_vs_floor_fused']:.2f}x), peak RSS {rt['memory_vs_floor_fused']:.2f}x"
            )
    m = res["machine"]
    lines.append(
        f"\n{res['method']['steps']} timed + {res['method']['warmup']} warm-up steps each, alternated; "
        f"{m['threads']} threads; torch {m['torch']}; {m['cpu']} ({m['cpu_count']} CPUs); "
        f"load avg at start {', '.join(f'{x:.2f}' for x in (m['loadavg'] or []))}, at end "
        f"{', '.join(f'{x:.2f}' for x in (m.get('loadavg_end') or []))}; wall {res['wall_s']:.0f}s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=7, help="timed steps per framework (default 7)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up steps per framework (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per worker (default 2)")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS), help=f"comma list from {','.join(FRAMEWORKS)}")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T", default="8", help="time steps, or a comma list (4,8,16,32) for one run per T and a "
                                              "summary row each (default 8)")
    ap.add_argument("--channels", type=int, default=16, help="C of the backbone (default 16)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "train_step.json")
    ap.add_argument(
        "--budget", type=float, default=150.0,
        help=f"stop timing after this many seconds once {MIN_STEPS} timed steps exist (0: off; default 150)",
    )
    ap.add_argument(
        "--nasflow-mode", choices=NASFLOW_MODES, default=NASFLOW_MODES[0],
        help="how `nasflow` runs: fused BN+neuron or plain, +bool spikes saved as bool, +cl channels_last",
    )
    ap.add_argument("--verbose", action="store_true", help="print every round's times")
    args = ap.parse_args(argv)
    try:
        steps_list = [int(t) for t in str(args.T).split(",")]
    except ValueError:
        ap.error(f"--T takes integers separated by commas, got {args.T!r}")
    if args.steps < 1 or args.warmup < 0 or args.threads < 1 or args.batch < 1 or min(steps_list) < 1:
        ap.error("--steps, --threads, --batch and --T must be >= 1 and --warmup >= 0")
    results = []
    for t in steps_list:
        args.T = t
        res = run(args)
        print(f"\n== T = {t} ==\n" + format_table(res), flush=True)
        results.append(res)
    out = results[0] if len(results) == 1 else dict(benchmark="train_step",
                                                    by_T={r["network"]["T"]: r for r in results})
    if len(results) > 1:
        print("\n" + format_by_T(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"results written to {args.out}")
    return 0


def format_by_T(results: list[dict[str, Any]]) -> str:
    """One Markdown row per T: nasflow's step, the ratios against the fastest/lightest peer and the fused floor."""
    lines = ["| T | nasflow s | fastest peer | speed-up (paired) | peak RSS / lightest | nasflow / fused floor |",
             "|---|---|---|---|---|---|"]
    for r in results:
        rt, nas = r["ratios"], next(x for x in r["rows"] if x["framework"] == "nasflow")
        if not rt:
            continue
        paired = rt["paired_speedup"][rt["fastest_peer"]]
        floor = f"{rt['time_vs_floor_fused']:.2f}x" if "time_vs_floor_fused" in rt else "n/a"
        lines.append(f"| {r['network']['T']} | {nas['median_s']:.3f} | {rt['fastest_peer']} | "
                     f"{rt['speedup_vs_fastest_peer']:.2f}x ({paired:.2f}x) | {rt['memory_vs_lightest_peer']:.2f} | "
                     f"{floor} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
