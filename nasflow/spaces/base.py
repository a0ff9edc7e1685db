"""The search-space protocol every strategy and the search runner work against (NASLib style).

A space owns everything that depends on what an architecture *is*: drawing one, varying one
(mutation, crossover), naming one (``key`` for the journal, ``format``/``parse`` for people and
files), counting them and building the network of one. Strategies never look inside an
architecture, so one evolutionary or random search serves every space.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Arch", "SearchSpace"]

Arch = TypeVar("Arch", bound=Hashable)


@runtime_checkable
class SearchSpace(Protocol[Arch]):
    """What a strategy and the runner need from a search space.

    ``Arch`` is a hashable value (strategies deduplicate with sets). ``key(arch) == format(arch)``
    and ``parse(format(arch)) == arch``, so a journal line names its architecture in the same
    spelling a user types on the command line.
    """

    name: str

    def sample(self, rng: random.Random) -> Arch:
        """One architecture drawn with ``rng`` (the only source of randomness, so a seed replays)."""
        ...

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        """A variation of ``arch``: each position changes with probability ``prob`` to a *different* value."""
        ...

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """A child mixing two parents."""
        ...

    def key(self, arch: Arch) -> str:
        """Stable journal key (equals ``format(arch)``)."""
        ...

    def format(self, arch: Arch) -> str:
        """Human-readable spelling that ``parse`` reads back."""
        ...

    def parse(self, text: str) -> Arch:
        """The architecture ``text`` spells; a ``ValueError`` naming the bad part otherwise."""
        ...

    def size(self) -> int:
        """Number of architectures (or, where distinct draws can build the same network, draws)."""
        ...

    def build(self, arch: Arch, *, in_shape: Any, num_classes: int, channels: int, steps: int,
              neuron: Any = None, **kw: Any) -> nn.Module:
        """The network of ``arch`` (random init)."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """JSON-native description a journal header and a supernet checkpoint must match to be reused."""
        ...
