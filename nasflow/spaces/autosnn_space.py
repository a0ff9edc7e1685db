"""The AutoSNN search space as a ``SearchSpace`` object: a tuple of block names, one per TBD slot.

Kept apart from ``nasflow.spaces.autosnn`` (the declarations) because building a network needs
``nasflow.models``, which itself imports those declarations.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from torch import nn

from nasflow.models import AutoSNNNet
from nasflow.spaces.autosnn import BLOCK_CHOICES, crossover, format_arch, get_macro, mutate, parse_arch

__all__ = ["AutoSNNSpace"]

Arch = tuple[str, ...]


class AutoSNNSpace:
    """AutoSNN's space for one macro: ``num_blocks(macro)`` slots, each one of ``choices``.

    Sampling, mutation and crossover draw from ``rng`` exactly as the released code does, so a
    seeded search proposes the same architectures through this object as it always did.
    """

    def __init__(self, macro: str = "snn1", choices: Sequence[str] = BLOCK_CHOICES) -> None:
        self.macro = get_macro(macro)
        self.choices = tuple(choices)
        self.num_blocks = self.macro.num_blocks
        self.name = f"autosnn-{self.macro.name}"

    def sample(self, rng: random.Random) -> Arch:
        return tuple(rng.choice(self.choices) for _ in range(self.num_blocks))

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        return mutate(arch, self.choices, prob, rng)

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        return crossover(a, b, rng)

    def key(self, arch: Arch) -> str:
        return format_arch(arch)

    def format(self, arch: Arch) -> str:
        return format_arch(arch)

    def parse(self, text: str) -> Arch:
        """Comma-separated block names (or ``all-<block>``); errors name unknown blocks and wrong lengths."""
        return parse_arch(text, self.num_blocks, self.choices)

    def size(self) -> int:
        return len(self.choices) ** self.num_blocks

    def build(self, arch: Arch, *, in_shape: Any, num_classes: int, channels: int, steps: int,
              neuron: Any = None, **kw: Any) -> nn.Module:
        return AutoSNNNet(arch=arch, in_shape=in_shape, num_classes=num_classes, channels=channels, steps=steps,
                          neuron=neuron, macro=self.macro.name, **kw)

    def fingerprint(self) -> dict[str, Any]:
        return {"space": self.name, "choices": list(self.choices), "num_blocks": self.num_blocks}
