"""Spiking building blocks (AutoSNN's SCB, SRB, SIB and skip) on time-first tensors.

* SCB_k: ``conv_k-BN-neuron`` twice (a VGG-style block);
* SRB_k: ``conv_k-BN-neuron``, ``conv_k-BN``, plus a shortcut added to the second neuron's input
  (ResNet style: the residual meets the membrane current, so the block still emits only spikes).
  The shortcut is identity, or ``conv1x1-BN`` when the channel count or resolution changes;
* skip: identity, or ``conv1x1-BN-neuron`` when the channel count or resolution changes;
* SIB_k_e (spiking inverted bottleneck, MobileNetV2-like; AutoSNN appendix B.3, optional):
  ``conv1x1 (e·C_in)-BN-neuron``, ``depthwise conv_k-BN-neuron``, ``conv1x1 (C_out)-BN-neuron``.
  Every conv is followed by BN and a spiking neuron (so the block emits spikes like the others and
  has ``(2·e·C_in + C_out)·H·W`` neurons, the count the paper's appendix uses); no residual.

Every block takes ``stride`` (default 1). A stride-2 block is a trainable down-sampling block
(AutoSNN's SNN_3): SCB/SRB put the stride in the first conv (and the SRB shortcut becomes
``conv1x1 stride 2-BN``), skip becomes ``conv1x1 stride 2-BN-neuron``, SIB strides its depthwise conv.

Neurons come from a ``NeuronSpec`` so a whole network shares one set of conventions. Every block states
its structure once, as a ``nasflow.snn.wiring.Wiring`` that its ``forward`` runs and exporters convert. In
training mode every ``conv-BN-neuron`` runs BN and the neuron through one autograd function that keeps only
the conv output (``nasflow.snn.fused``); modules and state_dict keys are the same either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from nasflow.snn.layers import TimeDistributed
from nasflow.snn.neurons import IF, LIF, PLIF, Neuron
from nasflow.snn.surrogate import make_surrogate
from nasflow.snn.wiring import IN, Wired, Wiring, step

__all__ = [
    "BLOCKS",
    "SIB_BLOCKS",
    "NeuronSpec",
    "SkipBlock",
    "SpikingConvBlock",
    "SpikingInvertedBottleneck",
    "SpikingResidualBlock",
    "conv_bn",
    "make_block",
]


@dataclass(frozen=True)
class NeuronSpec:
    """Which neuron every layer of a network uses, with its conventions (defaults: AutoSNN)."""

    kind: str = "plif"  # if | lif | plif
    tau: float = 2.0
    decay_input: bool = True
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    detach_reset: bool = True
    strict: bool = False
    surrogate: str = "atan"
    surrogate_params: dict[str, float] = field(default_factory=lambda: {"alpha": 2.0})

    def build(self) -> Neuron:
        """A fresh neuron module with these settings."""
        common: dict[str, Any] = dict(
            v_threshold=self.v_threshold,
            v_reset=self.v_reset,
            detach_reset=self.detach_reset,
            strict=self.strict,
            surrogate=make_surrogate(self.surrogate, **self.surrogate_params),
        )
        kind = self.kind.lower()
        if kind == "if":
            return IF(**common)
        if kind == "lif":
            return LIF(tau=self.tau, decay_input=self.decay_input, **common)
        if kind == "plif":
            return PLIF(tau0=self.tau, decay_input=self.decay_input, **common)
        raise ValueError(f"unknown neuron kind {self.kind!r} in NeuronSpec; choose 'if', 'lif' or 'plif'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NeuronSpec:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown NeuronSpec keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> TimeDistributed:
    """``Conv2d(k, same padding, no bias) + BatchNorm2d`` applied over ``T·B``."""
    return TimeDistributed(
        nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        )
    )


class SpikingConvBlock(Wired):
    """SCB: two ``conv-BN-neuron`` layers."""

    def __init__(self, c_in: int, c_out: int, kernel: int, neuron: NeuronSpec, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.sn1 = conv_bn(c_in, c_out, kernel, stride), neuron.build()
        self.conv2, self.sn2 = conv_bn(c_out, c_out, kernel), neuron.build()

    def wiring(self) -> Wiring:
        return Wiring.chain("conv1", "sn1", "conv2", "sn2")


# The shortcut meets the second neuron's input current (fan-in), so the block emits only spikes.
_SRB_WIRING = Wiring((step("conv1", IN), step("sn1", "conv1"), step("conv2", "sn1"), step("shortcut", IN),
                      step("sn2", "conv2", "shortcut")))


class SpikingResidualBlock(Wired):
    """SRB: ``conv-BN-neuron``, ``conv-BN``, shortcut added before the second neuron."""

    def __init__(self, c_in: int, c_out: int, kernel: int, neuron: NeuronSpec, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.sn1 = conv_bn(c_in, c_out, kernel, stride), neuron.build()
        self.conv2, self.sn2 = conv_bn(c_out, c_out, kernel), neuron.build()
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if c_in != c_out or stride != 1 else nn.Identity()

    def wiring(self) -> Wiring:
        return _SRB_WIRING


class SkipBlock(Wired):
    """skip: identity, or ``conv1x1-BN-neuron`` (with the block's stride) when channels or resolution change."""

    def __init__(self, c_in: int, c_out: int, neuron: NeuronSpec, stride: int = 1) -> None:
        super().__init__()
        change = c_in != c_out or stride != 1
        self.proj = conv_bn(c_in, c_out, 1, stride) if change else None
        self.sn = neuron.build() if change else None

    def wiring(self) -> Wiring:
        return Wiring.chain() if self.proj is None else Wiring.chain("proj", "sn")


class SpikingInvertedBottleneck(Wired):
    """SIB: ``conv1x1-BN-neuron`` (expand to ``e·C_in``), depthwise ``conv_k-BN-neuron``, ``conv1x1-BN-neuron``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, neuron: NeuronSpec, stride: int = 1) -> None:
        super().__init__()
        hidden = expand * c_in
        self.expand, self.sn1 = conv_bn(c_in, hidden, 1), neuron.build()
        self.dw, self.sn2 = conv_bn(hidden, hidden, kernel, stride, groups=hidden), neuron.build()
        self.project, self.sn3 = conv_bn(hidden, c_out, 1), neuron.build()

    def wiring(self) -> Wiring:
        return Wiring.chain("expand", "sn1", "dw", "sn2", "project", "sn3")


BLOCKS = ("skip", "SCB_k3", "SCB_k5", "SRB_k3", "SRB_k5")
SIB_BLOCKS = tuple(f"SIB_k{k}_e{e}" for k in (3, 5) for e in (1, 3, 6))


def make_block(name: str, c_in: int, c_out: int, neuron: NeuronSpec, stride: int = 1) -> nn.Module:
    """Build a block by its AutoSNN name (``skip``, ``SCB_k3``, ``SRB_k5``, ``SIB_k3_e3``, ...).

    ``stride=2`` makes a down-sampling block (SNN_3's trainable down-sampling).
    """
    if stride not in (1, 2):
        raise ValueError(f"block stride must be 1 or 2, got {stride}")
    if name == "skip":
        return SkipBlock(c_in, c_out, neuron, stride)
    kind, _, k = name.partition("_k")
    if kind in ("SCB", "SRB") and k.isdigit() and int(k) % 2 == 1:
        cls = SpikingConvBlock if kind == "SCB" else SpikingResidualBlock
        return cls(c_in, c_out, int(k), neuron, stride)
    if kind == "SIB":
        k, _, e = k.partition("_e")
        if k.isdigit() and int(k) % 2 == 1 and e.isdigit() and int(e) >= 1:
            return SpikingInvertedBottleneck(c_in, c_out, int(k), int(e), neuron, stride)
    raise ValueError(
        f"unknown block {name!r}; known blocks: {', '.join(BLOCKS + SIB_BLOCKS)} "
        "(any odd kernel: SCB_k7, ...; any expansion: SIB_k3_e2, ...)"
    )
