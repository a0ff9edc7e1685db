"""Training-free scores from binary activation codes: SNASNet's SAHD and NASWOT's Hamming kernel.

REFERENCE.md §3. For one LIF layer at one time step with codes ``c ∈ {0,1}^{B×N}``:

* ``n_i = Σ_k c_ik`` (spikes of sample ``i``), ``r_i = 1 - n_i/N`` (its sparsity);
* ``d_H(i,j) = n_i + n_j - 2 c_i·c_j`` (one batched matrix product per layer and step);
* ``p_ij = r_i(1-r_j) + (1-r_i) r_j`` (the probability that two independent outputs differ);
* kernel ``K_ij = N - α_ij d_H(i,j)`` with

  - ``sahd``/``paper`` (Eq. 9, default): ``α_ij = α / (p_ij + ε)``, α = 0.5; ``ε`` only guards
    ``p_ij = 0`` (then ``d_H = 0`` too), so it is small;
  - ``sahd``/``code`` (the released code's final version): ``α_ij = α / (N p_ij + ε_code)``, ε_code = 1e-3;
  - ``hamming`` (NASWOT baseline): ``α_ij = 1``.

Kernels of every LIF layer and step are **summed** (paper, default) or **averaged** (released code,
``combine="mean"``), and the score is ``log|det K|`` (slogdet), averaged over the scoring batches.

``SAHDScorer`` collects codes with forward hooks on every ``Neuron`` of a model (random init, train
mode, no gradients). Layers whose codes equal an earlier layer's in the same pass (two LIF ops reading
the same cell node) reuse that layer's kernel instead of recomputing it: the score is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from nasflow.snn.activity import ActivityMonitor
from nasflow.snn.neurons import Neuron, reset_states

__all__ = [
    "COMBINES",
    "KERNELS",
    "NORMALISATIONS",
    "KernelAccumulator",
    "SAHDConfig",
    "SAHDScorer",
    "ScoreResult",
    "kernel_matrix",
    "layer_kernels",
    "finite_or_none",
    "logdet_score",
]

KERNELS = ("sahd", "hamming")
NORMALISATIONS = ("paper", "code")
COMBINES = ("sum", "mean")

CostFn = Callable[[nn.Module, dict[str, Any]], float]


@dataclass(frozen=True)
class SAHDConfig:
    """Which kernel, normalisation and combination (defaults: the paper's SAHD)."""

    kernel: str = "sahd"  # sahd | hamming
    normalisation: str = "paper"  # paper (Eq. 9) | code (released code)
    combine: str = "sum"  # sum (paper) | mean (released code)
    alpha: float = 0.5
    eps: float = 1e-6  # guard of the paper's normalisation
    code_eps: float = 1e-3  # constant of the released code's normalisation

    def __post_init__(self) -> None:
        for key, value, allowed in (("kernel", self.kernel, KERNELS), ("normalisation", self.normalisation,
                                     NORMALISATIONS), ("combine", self.combine, COMBINES)):
            if value not in allowed:
                raise ValueError(f"SAHD {key} must be one of {allowed}, got {value!r}")
        if not (self.alpha > 0 and self.eps > 0 and self.code_eps > 0):
            raise ValueError(f"SAHD alpha, eps and code_eps must be > 0, got {self.alpha}, {self.eps}, {self.code_eps}")

    @property
    def name(self) -> str:
        """Short label, e.g. ``sahd-paper-sum`` or ``hamming-sum``."""
        if self.kernel == "hamming":
            return f"hamming-{self.combine}"
        return f"sahd-{self.normalisation}-{self.combine}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts_and_distances(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` ``[S, B]`` and Hamming distances ``[S, B, B]`` of codes ``[S, B, N]`` (float32, exact).

    Distances are integers below ``2N``, exact in float32 for any layer under 2**23 neurons; the
    matrix product and the ``n_i + n_j`` term are one fused ``baddbmm``.
    """
    c = codes.to(torch.float32)
    n = c.sum(-1)
    pair = n.unsqueeze(2) + n.unsqueeze(1)
    return n, torch.baddbmm(pair, c, c.transpose(1, 2), alpha=-2.0)


def layer_kernels(codes: torch.Tensor, cfg: SAHDConfig = SAHDConfig()) -> torch.Tensor:
    """Per-step kernels ``[S, B, B]`` (float64) of one layer's binary codes ``[S, B, N]``.

    The definition written out (the reference the fast path, ``_kernel_sum``, is tested against).
    """
    if codes.dim() != 3:
        raise ValueError(f"codes must be [steps, batch, neurons], got shape {tuple(codes.shape)}")
    c = codes.double()
    neurons = c.shape[-1]
    n = c.sum(-1)
    dist = n.unsqueeze(2) + n.unsqueeze(1) - 2.0 * (c @ c.transpose(1, 2))
    if cfg.kernel == "hamming":
        return neurons - dist
    r = 1.0 - n / neurons
    ri, rj = r.unsqueeze(2), r.unsqueeze(1)
    p = ri * (1.0 - rj) + (1.0 - ri) * rj
    scale = cfg.alpha / (p + cfg.eps) if cfg.normalisation == "paper" else cfg.alpha / (neurons * p + cfg.code_eps)
    return neurons - scale * dist


def _mismatch_probability(n: torch.Tensor, neurons: int) -> torch.Tensor:
    """``p_ij = r_i(1-r_j) + (1-r_i) r_j = ((N-n_i) n_j + n_i (N-n_j)) / N²`` as one small matrix product.

    A sum of two non-negative terms: no cancellation for nearly silent or saturated layers, where
    ``p`` is tiny and float32 rounding of a difference would dominate ``d_H / p``.
    """
    m = neurons - n
    left = torch.stack([m, n], dim=-1)
    right = torch.stack([n, m], dim=-1)
    return torch.bmm(left, right.transpose(1, 2)).div_(float(neurons) ** 2)


def _kernel_sum(n: torch.Tensor, dist: torch.Tensor, neurons: int, cfg: SAHDConfig,
                p: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ_t K_t`` ``[B, B]`` (float64) from counts and distances; per-step terms in float32."""
    steps = dist.shape[0]
    if cfg.kernel == "hamming":
        return steps * neurons - dist.sum(0, dtype=torch.float64)
    p = _mismatch_probability(n, neurons) if p is None else p
    denom = p + cfg.eps if cfg.normalisation == "paper" else p.mul(neurons).add_(cfg.code_eps)
    ratio = torch.div(dist, denom, out=denom)
    return steps * neurons - cfg.alpha * ratio.sum(0, dtype=torch.float64)


def kernel_matrix(layers: Iterable[torch.Tensor], cfg: SAHDConfig = SAHDConfig()) -> torch.Tensor:
    """Combined kernel ``[B, B]`` of several layers' codes (each ``[S, B, N]``): sum or mean over (layer, step)."""
    acc = KernelAccumulator(cfg, dedupe=False)
    for codes in layers:
        acc.add(codes)
    return acc.kernel()


def logdet_score(kernel: torch.Tensor) -> float:
    """``log|det K|`` (``-inf`` for a singular kernel)."""
    return float(torch.linalg.slogdet(kernel.double()).logabsdet)


class KernelAccumulator:
    """Running sums of per-(layer, step) kernels of one batch for one or more configurations.

    Every configuration shares one matrix product per layer call; with ``dedupe`` a layer whose
    codes equal one of the last few layers' codes reuses their kernels.
    """

    CACHE = 6  # recent layers kept for reuse: enough for the LIF ops reading one cell node

    def __init__(self, configs: SAHDConfig | Sequence[SAHDConfig] = SAHDConfig(), dedupe: bool = True) -> None:
        self.configs = [configs] if isinstance(configs, SAHDConfig) else list(configs)
        self.dedupe = dedupe
        self.totals: list[torch.Tensor] | None = None
        self.count = 0  # kernels added (layers × steps)
        self._spikes: torch.Tensor | float = 0.0  # on the codes' device: no host sync per layer
        self.reused = 0
        self._recent: list[tuple[torch.Tensor, torch.Tensor, int, list[torch.Tensor]]] = []

    def add(self, codes: torch.Tensor) -> None:
        """Add the kernels of one layer call, codes ``[S, B, N]`` with values in {0, 1}."""
        codes = codes.detach()
        if codes.dim() != 3:
            raise ValueError(f"codes must be [steps, batch, neurons], got shape {tuple(codes.shape)}")
        parts, n = self._lookup(codes)
        if parts is None:
            n, dist = _counts_and_distances(codes)
            neurons = codes.shape[-1]
            p = _mismatch_probability(n, neurons) if any(c.kernel == "sahd" for c in self.configs) else None
            parts = [_kernel_sum(n, dist, neurons, cfg, p) for cfg in self.configs]
            if self.dedupe:
                # A reference, not a copy; its version counter tells if anything wrote to it since.
                self._recent = [*self._recent[-(self.CACHE - 1):], (n, codes, codes._version, parts)]
        if self.totals is None:
            self.totals = [p.clone() for p in parts]
        else:
            for total, p in zip(self.totals, parts):
                total.add_(p)
        self.count += codes.shape[0]
        self._spikes = self._spikes + n.sum()

    @property
    def spikes(self) -> float:
        """Spikes of every layer and step added so far, summed over the batch."""
        return float(self._spikes)

    def _lookup(self, codes: torch.Tensor) -> tuple[list[torch.Tensor] | None, torch.Tensor | None]:
        if not self.dedupe or not self._recent:
            return None, None
        n = codes.to(torch.float32).sum(-1)
        for n_prev, prev, version, parts in self._recent:
            # Counts first (cheap); equal codes give equal kernels by definition.
            if prev._version != version or n_prev.shape != n.shape or not torch.equal(n_prev, n):
                continue
            if torch.equal(prev, codes):
                self.reused += 1
                return parts, n
        return None, n

    def kernels(self) -> list[torch.Tensor]:
        """The combined kernel ``[B, B]`` per configuration (sum, or mean over the kernels added)."""
        if self.totals is None:
            raise ValueError("no LIF layer produced codes: the model has no spiking neurons to score")
        return [t / self.count if cfg.combine == "mean" else t for cfg, t in zip(self.configs, self.totals)]

    def kernel(self) -> torch.Tensor:
        """The combined kernel of the first configuration."""
        return self.kernels()[0]


@dataclass
class ScoreResult:
    """Scores of one model under each kernel configuration, and what the scoring pass measured."""

    scores: dict[str, float]  # config name → mean log|det K| over batches
    per_batch: dict[str, list[float]]
    spikes_per_sample: float
    kernels_per_batch: int
    cost: float | None = None
    reused_per_batch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class SAHDScorer:
    """Score a model from its LIF codes on ``batches`` (random init, train mode, ``torch.no_grad``).

    ``configs``: one or more ``SAHDConfig``; every configuration is computed from the same forward
    pass (their kernels share the matrix products). ``cost_fn(model, activity_summary)`` (optional)
    is evaluated on an ``ActivityMonitor`` summary of the same pass.
    """

    def __init__(self, configs: SAHDConfig | Sequence[SAHDConfig] = SAHDConfig(), dedupe: bool | None = None) -> None:
        self.configs = [configs] if isinstance(configs, SAHDConfig) else list(configs)
        if not self.configs:
            raise ValueError("SAHDScorer needs at least one SAHDConfig")
        self.dedupe = dedupe  # None: on CPU only (on a GPU the equality checks' host syncs cost more)

    def score(self, model: nn.Module, batches: Sequence[torch.Tensor], cost_fn: CostFn | None = None) -> ScoreResult:
        """Mean ``log|det K|`` over ``batches`` (each ``[B, ...]`` input, B >= 2) per configuration."""
        batches = list(batches)
        if not batches:
            raise ValueError("SAHD scoring got no batches: the scoring data set is empty")
        small = [i for i, x in enumerate(batches) if x.shape[0] < 2]
        if small:
            raise ValueError(f"SAHD scoring needs batches of at least 2 samples; batch {small[0]} has fewer")
        was_training = model.training
        model.train()
        per_batch: dict[str, list[float]] = {c.name: [] for c in self.configs}
        spikes = samples = 0.0
        count = reused = 0
        monitor = ActivityMonitor(model) if cost_fn is not None else None
        try:
            if monitor is not None:
                monitor.attach()
            for x in batches:
                acc = self._score_batch(model, x)
                for cfg, kernel in zip(self.configs, acc.kernels()):
                    per_batch[cfg.name].append(logdet_score(kernel))
                spikes += acc.spikes
                samples += x.shape[0]
                count, reused = acc.count, acc.reused
        finally:
            if monitor is not None:
                monitor.detach()
            model.train(was_training)
        cost = float(cost_fn(model, monitor.summary())) if cost_fn is not None and monitor is not None else None
        return ScoreResult(
            scores={k: sum(v) / len(v) for k, v in per_batch.items()}, per_batch=per_batch,
            spikes_per_sample=spikes / samples, kernels_per_batch=count, cost=cost, reused_per_batch=reused,
        )

    @torch.no_grad()
    def _score_batch(self, model: nn.Module, x: torch.Tensor) -> KernelAccumulator:
        dedupe = x.device.type == "cpu" if self.dedupe is None else self.dedupe
        acc = KernelAccumulator(self.configs, dedupe)

        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            acc.add(out.detach().flatten(2))

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Neuron)]
        try:
            reset_states(model)
            model(x)
        finally:
            for h in handles:
                h.remove()
        return acc


def finite_or_none(value: float) -> float | None:
    """JSON-safe score: ``None`` for ``-inf``/NaN (a singular kernel)."""
    return value if math.isfinite(value) else None
