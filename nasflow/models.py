"""Model registry and the AutoSNN macro backbone (SNN_1).

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
from nasflow.snn.fused import conv_bn_neuron
from nasflow.snn.layers import DirectEncoder, Flatten, SpikingMaxPool2d, TimeDistributed, VotingLayer
from nasflow.spaces.autosnn import NUM_TBD, parse_arch
from nasflow.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["AutoSNNNet", "MODELS", "build_model", "create_model", "load_model", "register_model", "save_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a model factory to the registry under ``name``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = factory
        return factory

    return wrap


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}") from None
    return factory(**kwargs)


def _num_pools(size: int) -> int:
    # SNN_1 has three 2x2 max-pools (32 → 4); smaller inputs keep as many as leave at least 2x2.
    return max(0, min(3, int(math.log2(size)) - 1))


class AutoSNNNet(nn.Module):
    """AutoSNN's SNN_1 backbone: stem, five TBD blocks ``[C, M, 2C, 2C, M, 4C, 4C, M]``, FC, voting.

    No global average pooling: the last feature map is flattened into ``Linear(→ vote·classes)``
    followed by a spiking neuron and a voting layer. Down-sampling stages follow the input size
    (8x8 digits: two max-pools, 8 → 4 → 2; 32x32: three, 32 → 4).
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
        block_factory: Callable[[str, int, int, NeuronSpec], nn.Module] = make_block,
    ) -> None:
        super().__init__()
        self.arch = parse_arch(arch if isinstance(arch, str) else tuple(arch))
        if len(in_shape) != 3 or in_shape[1] != in_shape[2]:
            raise ValueError(f"AutoSNNNet needs a square input shape (C, H, W), got {tuple(in_shape)}")
        self.in_shape = tuple(int(s) for s in in_shape)
        self.steps, self.num_classes, self.event_input = steps, num_classes, event_input
        self.config = dict(
            arch=list(self.arch), in_shape=list(self.in_shape), num_classes=num_classes, channels=channels,
            steps=steps, vote=vote, event_input=event_input,
        )
        neuron = neuron or NeuronSpec()
        self.config["neuron"] = neuron.to_dict()
        c_in, size = self.in_shape[0], self.in_shape[1]
        stem = conv_bn(c_in, channels, 3)
        self.stem = stem if event_input else DirectEncoder(stem.module, steps)
        self.stem_sn = neuron.build()
        widths = [channels, 2 * channels, 2 * channels, 4 * channels, 4 * channels]
        pool_after = {0, 2, 4}
        pools = _num_pools(size)
        layers: list[nn.Module] = []
        c, n_pool = channels, 0
        for i, (name, width) in enumerate(zip(self.arch, widths)):
            layers.append(block_factory(name, c, width, neuron))
            c = width
            if i in pool_after and n_pool < pools:
                layers.append(SpikingMaxPool2d(2))
                size //= 2
                n_pool += 1
        self.features = nn.Sequential(*layers)
        self.flatten = Flatten()
        self.fc = TimeDistributed(nn.Linear(c * size * size, vote * num_classes, bias=False))
        self.fc_sn = neuron.build()
        self.vote = VotingLayer(vote)
        assert len(self.arch) == NUM_TBD

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for inputs of the wrong shape or with NaN/inf values."""
        want = (self.steps, "B", *self.in_shape) if self.event_input else ("B", *self.in_shape)
        sample = tuple(x.shape[2:] if self.event_input else x.shape[1:])
        if x.dim() != len(want) or sample != self.in_shape:
            raise ValueError(f"{type(self).__name__} expects input of shape {want}, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{type(self).__name__} got an input with NaN or infinite values")

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Voting-layer output over time, ``[T, B, classes]``."""
        self.check_input(x)
        h = conv_bn_neuron(self.stem, self.stem_sn, x)
        h = self.features(h)
        return self.vote(self.fc_sn(self.fc(self.flatten(h))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(x).mean(0)


@register_model("autosnn")
def autosnn(**kwargs: Any) -> AutoSNNNet:
    """AutoSNN SNN_1 backbone; ``arch`` is a baseline name or five comma-separated block names."""
    return AutoSNNNet(**kwargs)


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a registered model from its saved ``config`` (the ``model.config`` dict)."""
    config = dict(config)
    if "neuron" in config and isinstance(config["neuron"], dict):
        config["neuron"] = NeuronSpec.from_dict(config["neuron"])
    return create_model(name, **config)


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
