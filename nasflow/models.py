"""Model registry and the AutoSNN macro backbones (SNN_1 by default; SNN_2-4 and enlarged spaces).

``create_model("autosnn", arch="all-SCB_k3", in_shape=(1, 8, 8), num_classes=10)`` builds a
standalone network; every model takes ``[B, C, H, W]`` (direct coding: analog input every step)
or ``[T, B, C, H, W]`` (event input) and returns the voting layer's firing rate ``[B, classes]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasflow.snn.blocks import NeuronSpec, conv_bn, make_block
from nasflow.snn.layers import (
    DirectEncoder,
    Flatten,
    GlobalAvgPool,
    SpikingAvgPool2d,
    SpikingMaxPool2d,
    TimeDistributed,
    VotingLayer,
)
from nasflow.snn.wiring import Wired, Wiring, run_wiring
from nasflow.spaces.autosnn import EXTENDED_CHOICES, MACROS, Macro, get_macro, parse_arch
from nasflow.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "AutoSNNNet", "MODELS", "build_model", "create_model", "list_models", "load_model", "register_model", "save_model",
]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a model factory to the registry under ``name``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = factory
        return factory

    return wrap


# Models registered by modules that import this one (so they cannot be imported here at load time).
_LAZY_MODELS = {"snasnet": "nasflow.spaces.snasnet"}


def _load_lazy(name: str) -> None:
    if name not in MODELS and name in _LAZY_MODELS:
        import importlib

        importlib.import_module(_LAZY_MODELS[name])


def list_models() -> list[str]:
    """The names of every registered model (those registered by other modules included), sorted."""
    for name in _LAZY_MODELS:
        _load_lazy(name)
    return sorted(MODELS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name."""
    _load_lazy(name)
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}") from None
    return factory(**kwargs)


def _num_pools(size: int, available: int = 3) -> int:
    # SNN_1 has three 2x2 max-pools (32 → 4); smaller inputs keep as many as leave at least 2x2.
    return max(0, min(available, int(math.log2(size)) - 1))


STEMS = ("plain", "deep64", "deep128")


def _auto_stem(size: int) -> str:
    """The stem for an input size: deeper stems bring 64x64 and 128x128 inputs down to 32x32."""
    return {64: "deep64", 128: "deep128"}.get(size, "plain")


class StemStage(Wired):
    """One extra stem stage: 2x2 max-pool over spikes, then ``conv3x3-BN-neuron``."""

    def __init__(self, c_in: int, c_out: int, neuron: NeuronSpec) -> None:
        super().__init__()
        self.pool = SpikingMaxPool2d(2)
        self.conv, self.sn = conv_bn(c_in, c_out, 3), neuron.build()

    def wiring(self) -> Wiring:
        return Wiring.chain("pool", "conv", "sn")


class AutoSNNNet(Wired):
    """AutoSNN's macro backbones: stem, TBD blocks and down-sampling (``macro``), FC, voting.

    The default ``macro="snn1"`` is SNN_1, five TBD blocks ``[C, M, 2C, 2C, M, 4C, 4C, M]``; the other
    macros (``nasflow.spaces.autosnn.MACROS``: snn2 GAP, snn3 stride-2 TBD down-sampling, snn4 avg-pools,
    snn1-8tbd) follow the same rules. Without GAP the last feature map is flattened into
    ``Linear(→ vote·classes)`` followed by a spiking neuron and a voting layer. Down-sampling stages
    follow the input size (8x8 digits: two, 8 → 4 → 2; 32x32: three, 32 → 4).

    ``stem``: ``plain`` (conv3x3-BN-neuron), ``deep64`` (+ max-pool, conv3x3-BN-neuron: 64x64 → 32x32,
    Tiny-ImageNet, paper Fig. 6b), ``deep128`` (two such stages: 128x128 → 32x32, DVS, our reading of
    Fig. 6c) or ``auto`` (chosen from the input size: 64 → deep64, 128 → deep128, else plain).

    ``block_factory(name, c_in, c_out, neuron)`` builds each TBD block; stride-2 blocks (snn3's
    down-sampling slots) are built with an extra keyword ``stride=2``.
    """

    def __init__(
        self,
        arch: Sequence[str] | str = "all-SCB_k3",
        in_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        channels: int = 16,
        steps: int = 8,
        neuron: NeuronSpec | None = None,
        vote: int = 10,
        event_input: bool = False,
        block_factory: Callable[..., nn.Module] = make_block,
        macro: str | Macro = "snn1",
        stem: str = "auto",
    ) -> None:
        super().__init__()
        self.macro = get_macro(macro)
        if self.macro.name not in MACROS or MACROS[self.macro.name] != self.macro:
            raise ValueError(f"macro {self.macro.name!r} is not registered in MACROS; saved models need it to rebuild")
        n_tbd = self.macro.num_blocks
        self.arch = parse_arch(arch if isinstance(arch, str) else tuple(arch), num_blocks=n_tbd,
                               choices=EXTENDED_CHOICES)
        if len(in_shape) != 3 or in_shape[1] != in_shape[2]:
            raise ValueError(f"AutoSNNNet needs a square input shape (C, H, W), got {tuple(in_shape)}")
        self.in_shape = tuple(int(s) for s in in_shape)
        self.steps, self.num_classes, self.event_input = steps, num_classes, event_input
        c_in, size = self.in_shape[0], self.in_shape[1]
        stem = _auto_stem(size) if stem == "auto" else stem
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose from auto, {', '.join(STEMS)}")
        self.config = dict(
            arch=list(self.arch), in_shape=list(self.in_shape), num_classes=num_classes, channels=channels,
            steps=steps, vote=vote, event_input=event_input, macro=self.macro.name, stem=stem,
        )
        neuron = neuron or NeuronSpec()
        self.config["neuron"] = neuron.to_dict()
        conv = conv_bn(c_in, channels, 3)
        self.stem = conv if event_input else DirectEncoder(conv.module, steps)
        self.stem_sn = neuron.build()
        extra = {"plain": 0, "deep64": 1, "deep128": 2}[stem]
        if extra:
            if size // 2**extra < 2:
                raise ValueError(f"stem {stem!r} needs an input of at least {2 ** (extra + 1)}x{2 ** (extra + 1)}")
            self.stem_layers = nn.Sequential(*(StemStage(channels, channels, neuron) for _ in range(extra)))
            size //= 2**extra
        else:
            self.stem_layers = None
        pools = _num_pools(size, self.macro.num_downsample)
        layers: list[nn.Module] = []
        names = iter(self.arch)
        c, n_pool = channels, 0
        for slot in self.macro.slots:
            if slot != "M":
                width = int(slot) * channels
                layers.append(block_factory(next(names), c, width, neuron))
                c = width
                continue
            down = n_pool < pools
            if self.macro.downsample == "tbd":
                name = next(names)
                block = block_factory(name, c, c, neuron, stride=2) if down else block_factory(name, c, c, neuron)
                layers.append(block)
            elif down:
                layers.append(SpikingMaxPool2d(2) if self.macro.downsample == "max" else SpikingAvgPool2d(2))
            if down:
                size //= 2
                n_pool += 1
        self.features = nn.Sequential(*layers)
        self.gap = GlobalAvgPool() if self.macro.gap else None
        if self.macro.gap:
            size = 1
        self.flatten = Flatten()
        self.fc = TimeDistributed(nn.Linear(c * size * size, vote * num_classes, bias=False))
        self.fc_sn = neuron.build()
        self.vote = VotingLayer(vote)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for inputs of the wrong shape or with NaN/inf values."""
        want = (self.steps, "B", *self.in_shape) if self.event_input else ("B", *self.in_shape)
        sample = tuple(x.shape[2:] if self.event_input else x.shape[1:])
        if x.dim() != len(want) or sample != self.in_shape:
            raise ValueError(f"{type(self).__name__} expects input of shape {want}, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{type(self).__name__} got an input with NaN or infinite values")

    def wiring(self) -> Wiring:
        """Stem (direct coding: ``DirectEncoder``) and its neuron, extra stem stages, TBD blocks and
        down-sampling, GAP (SNN_2), then flatten, FC, its neuron and the voting layer."""
        parts = [a for a in ("stem_layers", "features", "gap") if getattr(self, a) is not None]
        return Wiring.chain("stem", "stem_sn", *parts, "flatten", "fc", "fc_sn", "vote")

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Voting-layer output over time, ``[T, B, classes]``."""
        self.check_input(x)
        return run_wiring(self, self.wiring(), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(x).mean(0)


@register_model("autosnn")
def autosnn(**kwargs: Any) -> AutoSNNNet:
    """AutoSNN backbone (``macro``: snn1 by default); ``arch`` is a baseline name or comma-separated block names."""
    return AutoSNNNet(**kwargs)


@register_model("spikedhs")
def spikedhs(arch: str | None = None, in_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, channels: int = 8,
             steps: int = 6, layers: int = 5, stem_multiplier: int = 2, neuron: NeuronSpec | None = None,
             event_input: bool = False, **_: Any) -> nn.Module:
    """A decoded SpikeDHS network (``nasflow.snn.dhs.DHSNet``); ``arch`` is a genotype string
    (``nasflow.spaces.spikedhs``), ``layers`` the macro's cell count (reductions at layers//3, 2·layers//3)."""
    from nasflow.snn.dhs import SPIKEDHS_NEURON, DHSNet
    from nasflow.spaces.spikedhs import BASELINE, parse_genotype, reduction_layers

    g = parse_genotype(arch or BASELINE)
    neuron = neuron or SPIKEDHS_NEURON
    # Decoded networks mix at the membrane whatever the preset searched with, as the released retrain model does
    # (``mixed_at_mem``): a node sums currents into its neuron, so every layer is neuron -> weights -> neuron.
    net = DHSNet(g.normal.nodes, g.reduce.nodes, "membrane", reduction_layers(layers), layers,
                 in_shape=in_shape, num_classes=num_classes, channels=channels, steps=steps,
                 stem_multiplier=stem_multiplier, neuron=neuron, event_input=event_input, title=f"spikedhs {g}")
    net.config = dict(arch=str(g), in_shape=[int(s) for s in in_shape], num_classes=num_classes, channels=channels,
                      steps=steps, layers=layers, stem_multiplier=stem_multiplier, neuron=neuron.to_dict(),
                      event_input=event_input)
    net.arch = (str(g),)
    return net


@register_model("spikedhs-stereo")
def spikedhs_stereo(arch: str | None = None, in_shape: Sequence[int] = (4, 24, 24), num_classes: int = 8,
                    channels: int = 4, steps: int = 4, layers: int = 6, levels: int = 3,
                    rates: Sequence[int] = (3, 2, 2, 2), features: int | None = None, neuron: NeuronSpec | None = None,
                    **_: Any) -> nn.Module:
    """A decoded SpikeDHS trellis path as a stereo model (``nasflow.snn.stereo.SiameseStereo`` on
    ``nasflow.snn.trellis.TrellisPathNet``); ``arch`` is a trellis architecture ``PRESET:cell=...;path=...``
    (``nasflow.spaces.trellis``), ``in_shape`` one stereo frame ``(4, H, W)``, ``num_classes`` the disparity
    levels; the defaults are those of ``nasflow search spikedhs --task stereo``. The chip runs the features of
    one camera (``chip_network()``); matching runs on the host."""
    from nasflow.snn.dhs import SPIKEDHS_NEURON
    from nasflow.snn.stereo import SiameseStereo
    from nasflow.snn.trellis import TrellisPathNet
    from nasflow.spaces.trellis import Trellis, parse_trellis_arch

    c, h, w = (int(s) for s in in_shape[-3:])
    if c != 4:
        raise ValueError(f"a stereo model takes (4, H, W) frames (left ON/OFF, right ON/OFF), got in_shape {in_shape}")
    if arch is None:
        raise ValueError("model spikedhs-stereo needs arch=PRESET:cell=...;path=... (a decoded trellis architecture)")
    trellis = Trellis(int(layers), int(levels), tuple(int(r) for r in rates))
    parsed = parse_trellis_arch(arch, trellis)
    neuron = neuron or SPIKEDHS_NEURON
    net = TrellisPathNet(parsed.cell.nodes, parsed.path, trellis, (2, h, w), channels, features, neuron)
    net.event_input = True  # each camera's ON/OFF event frames
    size = trellis.sizes(min(h, w))[0]
    model = SiameseStereo(net, (h, w), (size * h // min(h, w), size * w // min(h, w)), num_classes,
                          net.output_factor)
    model.config = dict(arch=str(parsed), in_shape=[4, h, w], num_classes=int(num_classes), channels=int(channels),
                        steps=int(steps), layers=int(layers), levels=int(levels), rates=[int(r) for r in rates],
                        features=net.features, neuron=neuron.to_dict(), event_input=True)
    model.arch = (str(parsed),)
    return model


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a registered model from its saved ``config`` (the ``model.config`` dict)."""
    config = dict(config)
    if name == "autosnn":
        # Configs saved before macros/stems existed always meant SNN_1 with the plain stem.
        config.setdefault("macro", "snn1")
        config.setdefault("stem", "plain")
    if "neuron" in config and isinstance(config["neuron"], dict):
        config["neuron"] = NeuronSpec.from_dict(config["neuron"])
    temporal = config.pop("temporal", None)
    model = create_model(name, **config)
    if temporal:  # per-layer dynamics found by TPS (``nasflow.snn.tps.TemporalArch``)
        from nasflow.snn.tps import apply_temporal

        apply_temporal(model, temporal)
        model.config = {**model.config, "temporal": temporal}
    return model


def save_model(path: str | Path, model: nn.Module, name: str, meta: dict[str, Any] | None = None) -> Path:
    """Save weights plus everything needed to rebuild ``model`` (``load_model`` reads it back)."""
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no `config` attribute; only registry models can be saved")
    return save_checkpoint(
        path, {"kind": "model", "model_name": name, "model_config": config, "state_dict": model.state_dict(),
               "meta": meta or {}},
    )


def load_model(path: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a model saved by ``save_model`` (``weights_only``); returns ``(model, meta)``."""
    data = load_checkpoint(path, map_location=map_location)
    if data.get("kind") != "model":
        raise CheckpointError(f"{path} is a nasflow {data.get('kind')!r} checkpoint, not a trained model (model.pt)")
    try:
        model = build_model(data["model_name"], data["model_config"])
        model.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot rebuild the saved model: {str(err).splitlines()[0]}") from None
    return model, dict(data.get("meta", {}))
