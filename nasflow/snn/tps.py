"""TPS's candidate dynamics (paper §4.3, Algorithm 3): one neuron parameter searched over a fixed candidate set.

A ``TPSNeuron`` wraps one neuron layer. While it searches, its output is the mixture ``Σ_k softmax(γ)_k S_k`` of
the spikes ``S_k`` every candidate value produces on the *same* input current, all candidates run in one pass
with the candidates stacked on a new axis (``candidate_spikes``), not K forwards (with the compiled kernel, the
candidates are the kernel's leading axis and the input is never copied K times). ``commit()`` replaces the
parameter by the candidate with the largest ``γ`` and resets ``γ`` to its initial value (zeros); outside a
search the layer is the plain neuron with the committed value.

Parameters, as the SpikeDHS neuron writes its leak (``mem = λ·mem·(1 - s) + I``):

* ``decay``: the per-step leak factor ``λ``. nasflow's LIF/PLIF use a time constant ``τ`` in steps; with
  ``decay_input=False`` (``H = V - (V - v_leak)/τ + X``) the two agree exactly for ``λ = 1 - 1/τ``
  (``τ = 1 / (1 - λ)``; the SpikeDHS neuron's λ = 0.2 is τ = 1.25). With ``decay_input=True``
  (``H = V + (X - (V - v_leak))/τ``) the same ``λ = 1 - 1/τ`` sets the leak, and the input is scaled by
  ``1 - λ`` as well. ``λ`` must lie in ``[0, 1)`` (τ ≥ 1). PLIF's own learnable decay is frozen while TPS runs
  and set to the committed ``λ``.
* ``alif.beta`` and ``alif.rho``: ALIF's adaptation strength ``β`` and adaptation decay ``ρ``
  (threshold ``v_th + β a[t]``, ``a[t] = ρ a[t-1] + S[t-1]``).

Default candidate sets (nasflow's documented choice where the paper's table values were lost):
``DEFAULT_CANDIDATES``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nasflow.snn.compiled import AdaptiveSeq, candidate_leaky, kernel_ops
from nasflow.snn.neuron_types import TYPES, set_type, type_layers, type_of
from nasflow.snn.neurons import ALIF, LIF, PLIF, Neuron

__all__ = [
    "DEFAULT_CANDIDATES", "PARAMS", "TPSNeuron", "TemporalArch", "accepts", "apply_temporal", "candidate_spikes",
    "decay_to_tau", "get_param", "neuron_layers", "parse_temporal", "read_temporal", "set_param", "tau_to_decay",
]

PARAMS = ("decay", "alif.beta", "alif.rho")
"""The searchable neuron parameters."""

DEFAULT_CANDIDATES: dict[str, tuple[float, ...]] = {
    "decay": (0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95),
    "alif.beta": (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6),
    "alif.rho": (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99),
}


def decay_to_tau(decay: float) -> float:
    """The LIF time constant (steps) of a per-step leak factor: ``τ = 1 / (1 - λ)``."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"a decay (leak factor) must lie in [0, 1), got {decay}")
    return 1.0 / (1.0 - decay)


def tau_to_decay(tau: float) -> float:
    """The per-step leak factor of a LIF time constant: ``λ = 1 - 1/τ``."""
    if not tau >= 1.0:
        raise ValueError(f"a LIF time constant must be >= 1 step, got {tau}")
    return 1.0 - 1.0 / tau


def accepts(neuron: object, param: str) -> bool:
    """Whether ``neuron`` has the searchable ``param`` (``decay``: LIF, PLIF, ALIF; ``alif.*``: ALIF)."""
    return isinstance(neuron, ALIF) if param.startswith("alif.") else isinstance(neuron, LIF)


def get_param(neuron: Neuron, param: str) -> float:
    """The current value of ``param`` (``decay`` as ``λ = 1 - 1/τ``)."""
    if param == "decay":
        return float(1.0 - float(neuron.inv_tau()))  # type: ignore[attr-defined]
    return float(neuron.beta if param == "alif.beta" else neuron.rho)  # type: ignore[attr-defined]


@torch.no_grad()
def set_param(neuron: Neuron, param: str, value: float) -> None:
    """Set ``param`` to ``value`` (checked as a candidate would be); PLIF's learnable decay follows ``decay``."""
    value = _check(neuron, param, (value,))[0]
    if param == "decay":
        if isinstance(neuron, PLIF):
            neuron.w.fill_(float(torch.logit(torch.tensor(1.0 - value, dtype=torch.float64))))  # sigmoid(w) = 1 - λ
        neuron.tau = decay_to_tau(value)  # type: ignore[attr-defined]
    elif param == "alif.beta":
        neuron.beta = value  # type: ignore[attr-defined]
    else:
        neuron.rho = value  # type: ignore[attr-defined]


def _check(neuron: Neuron, param: str, values: Sequence[float]) -> tuple[float, ...]:
    if param not in PARAMS:
        raise ValueError(f"unknown TPS parameter {param!r}; known: {', '.join(PARAMS)}")
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ValueError(f"the candidate set of {param!r} is empty; give at least one value")
    if param == "decay":
        if not isinstance(neuron, LIF):
            raise ValueError(f"TPS searches 'decay' on LIF, PLIF or ALIF layers, not {type(neuron).__name__}")
        for v in vals:
            decay_to_tau(v)
        if isinstance(neuron, PLIF) and min(vals) <= 0.0:
            raise ValueError(f"PLIF holds its decay as sigmoid(w) = 1 - λ < 1: decay candidates must be > 0, got "
                             f"{list(vals)}")
    elif not isinstance(neuron, ALIF):
        raise ValueError(f"TPS parameter {param!r} belongs to ALIF layers, not {type(neuron).__name__}")
    elif param == "alif.rho" and not all(0.0 <= v <= 1.0 for v in vals):
        raise ValueError(f"alif.rho candidates must lie in [0, 1], got {list(vals)}")
    elif param == "alif.beta" and not all(v >= 0.0 for v in vals):
        raise ValueError(f"alif.beta candidates must be >= 0, got {list(vals)}")
    return vals


def candidate_spikes(neuron: Neuron, x: torch.Tensor, param: str, values: Sequence[float]) -> torch.Tensor:
    """Spikes ``[K, T, B, ...]`` of ``neuron`` on the input current ``x [T, B, ...]`` for each of the ``K``
    candidate ``values`` of ``param``, in one pass: the input is broadcast along a candidate axis and the
    parameter is a ``[K, 1, ...]`` tensor, so every step runs all candidates at once (exact BPTT through the
    step loop; the neuron's other settings — threshold, reset, surrogate, comparison — are its own)."""
    vals = _check(neuron, param, values)
    if kernel_ops(x, neuron) is not None:
        return _compiled_candidates(neuron, x, param, vals)
    k = len(vals)
    xs = x.unsqueeze(1).expand(x.shape[0], k, *x.shape[1:])
    shape = (k,) + (1,) * (x.dim() - 1)
    p = torch.tensor(vals, dtype=x.dtype, device=x.device).view(shape)
    clone = copy.copy(neuron)  # shares parameters and surrogate; the candidate tensor lives on the copy only
    if param == "decay":
        inv_tau = 1.0 - p
        clone.inv_tau = lambda: inv_tau  # type: ignore[method-assign]
    elif param == "alif.beta":
        clone.beta = p  # type: ignore[assignment]
    else:
        clone.rho = p  # type: ignore[assignment]
    spikes, _, _ = clone.forward_steps(xs)
    return spikes.transpose(0, 1)


def _compiled_candidates(neuron: Neuron, x: torch.Tensor, param: str, vals: tuple[float, ...]) -> torch.Tensor:
    # The candidate values as the step loop sees them ([K] tensors in x's dtype), so the spikes are identical.
    cand = torch.tensor(vals, dtype=x.dtype)
    p = (1.0 - cand if param == "decay" else cand).tolist()
    if not isinstance(neuron, ALIF):
        return candidate_leaky(neuron, x, p)
    k = len(vals)
    ks = p if param == "decay" else [float(neuron.inv_tau())] * k
    betas = p if param == "alif.beta" else [neuron.beta] * k
    rhos = p if param == "alif.rho" else [neuron.rho] * k
    state = neuron.initial_state(x[0])
    return AdaptiveSeq.apply(x, state.v, state.aux[0], state.aux[1], neuron, ks, betas, rhos)[0]


class TPSNeuron(nn.Module):
    """A neuron layer whose ``param`` TPS searches over ``candidates`` (module docstring).

    ``searching=True``: the output is ``Σ_k softmax(γ)_k S_k`` (``γ`` learnable, initialised to zeros);
    ``commit()`` sets the parameter to the candidate of largest ``γ`` and resets ``γ``. ``searching=False``:
    the wrapped neuron, unchanged in shape and semantics."""

    def __init__(self, neuron: Neuron, param: str = "decay", candidates: Sequence[float] | None = None) -> None:
        super().__init__()
        self.param = param
        self.candidates = _check(neuron, param, candidates if candidates is not None
                                 else DEFAULT_CANDIDATES.get(param, ()))
        self.neuron = neuron
        self.gamma = nn.Parameter(torch.zeros(len(self.candidates)))
        self.searching = True
        self._plif_grad = None
        self.history: list[float] = [self.value()]

    def value(self) -> float:
        """The parameter's current value (``decay`` as ``λ``)."""
        return get_param(self.neuron, self.param)

    def retarget(self, param: str, candidates: Sequence[float]) -> None:
        """Search another parameter of the same neuron from now on (``γ`` resized and reset)."""
        self.candidates = _check(self.neuron, param, candidates)
        self.param = param
        self.gamma = nn.Parameter(torch.zeros(len(self.candidates), device=self.gamma.device))

    def start(self) -> None:
        """Enter the search: mixture output; PLIF's learnable decay frozen (TPS owns the decay)."""
        self.searching = True
        if isinstance(self.neuron, PLIF) and self.param == "decay" and self._plif_grad is None:
            self._plif_grad = self.neuron.w.requires_grad
            self.neuron.w.requires_grad_(False)

    def stop(self) -> None:
        """Leave the search: the plain neuron with the committed value (PLIF learns its decay again)."""
        self.searching = False
        if self._plif_grad is not None:
            self.neuron.w.requires_grad_(self._plif_grad)  # type: ignore[union-attr]
            self._plif_grad = None

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.gamma, 0)

    @torch.no_grad()
    def commit(self) -> float:
        """Replace the parameter by the candidate of largest ``γ`` (ties: the first), reset ``γ``; returns it."""
        best = self.candidates[int(torch.argmax(self.gamma))]
        set_param(self.neuron, self.param, best)
        self.gamma.zero_()
        self.history.append(best)
        return best

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.searching:
            return self.neuron(x)
        s = candidate_spikes(self.neuron, x, self.param, self.candidates)
        w = self.weights().to(s.dtype).view((-1,) + (1,) * (s.dim() - 1))
        return (w * s).sum(0)

    def extra_repr(self) -> str:
        return f"param={self.param}, candidates={list(self.candidates)}, searching={self.searching}"


def neuron_layers(model: nn.Module, param: str) -> list[str]:
    """Names of ``model``'s neuron modules that have ``param``, in module order."""
    if param not in PARAMS:
        raise ValueError(f"unknown TPS parameter {param!r}; known: {', '.join(PARAMS)}")
    return [name for name, m in model.named_modules() if name and accepts(m, param)]


@dataclass(frozen=True)
class TemporalArch:
    """Per-layer parameter values ``((layer, param, value), ...)``; ``str`` gives the ``;``-joined form.

    ``param`` is one of ``PARAMS`` (a number) or ``type`` (HNS's neuron type, one of
    ``nasflow.snn.neuron_types.TYPES``: ``layer:type=relu``)."""

    values: tuple[tuple[str, str, float | str], ...]

    def __str__(self) -> str:
        return ";".join(f"{layer}:{param}={value if isinstance(value, str) else format(value, 'g')}"
                        for layer, param, value in self.values)

    def as_dict(self) -> dict[str, dict[str, float | str]]:
        out: dict[str, dict[str, float | str]] = {}
        for layer, param, value in self.values:
            out.setdefault(layer, {})[param] = value
        return out


def parse_temporal(text: str) -> TemporalArch:
    """The ``TemporalArch`` that ``str`` wrote; a ``ValueError`` naming the malformed item otherwise."""
    values = []
    for item in (p.strip() for p in str(text).split(";")):
        if not item:
            continue
        layer, sep, rest = item.rpartition(":")
        param, eq, value = rest.partition("=")
        if not sep or not eq or not layer:
            raise ValueError(f"temporal item {item!r} must read 'layer:param=value'")
        if param == "type":
            if value not in TYPES:
                raise ValueError(f"temporal item {item!r}: unknown neuron type {value!r}; known: {', '.join(TYPES)}")
            values.append((layer, param, value))
            continue
        if param not in PARAMS:
            raise ValueError(f"temporal item {item!r}: unknown parameter {param!r}; known: type, {', '.join(PARAMS)}")
        try:
            values.append((layer, param, float(value)))
        except ValueError:
            raise ValueError(f"temporal item {item!r}: {value!r} is not a number") from None
    return TemporalArch(tuple(values))


def apply_temporal(model: nn.Module, arch: TemporalArch | str) -> nn.Module:
    """Write ``arch``'s values into ``model``'s neuron layers (in place; returns ``model``): the neuron types first
    (a layer of a new type is made from the old one), then the parameters."""
    arch = parse_temporal(arch) if isinstance(arch, str) else arch
    for layer, param, value in arch.values:
        if param == "type":
            set_type(model, layer, str(value))
    modules = dict(model.named_modules())
    for layer, param, value in arch.values:
        if param == "type":
            continue
        neuron = modules.get(layer)
        if neuron is None or not accepts(neuron, param):
            known = ", ".join(neuron_layers(model, param)[:8])
            raise ValueError(f"temporal item {layer}:{param}: the model has no neuron layer {layer!r} with "
                             f"{param!r} (neuron layers: {known}, ...)")
        set_param(neuron, param, float(value))  # type: ignore[arg-type]
    return model


def read_temporal(model: nn.Module, params: Sequence[str]) -> TemporalArch:
    """The current values of ``params`` (``type`` included) in every neuron layer that has them."""
    modules = dict(model.named_modules())
    types = tuple((layer, "type", type_of(modules[layer]) or "") for layer in type_layers(model)) \
        if "type" in params else ()
    return TemporalArch(types + tuple((layer, p, round(get_param(modules[layer], p), 6))  # type: ignore[arg-type]
                                      for p in params if p != "type" for layer in neuron_layers(model, p)))
