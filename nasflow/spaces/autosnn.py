"""AutoSNN search space declaration (REFERENCE.md §2): an architecture is its TBD block names in order.

The macro backbone is declared by a ``Macro``: a sequence of slots, each a TBD block of width
``k·C`` (an int ``k``) or a down-sampling slot ``"M"``, plus how down-sampling is done and whether a
global average pooling (GAP) precedes the FC layer. ``MACROS`` holds the paper's variants:

* ``snn1``: SNN_1, ``[C, M, 2C, 2C, M, 4C, 4C, M]`` with 2x2 max-pools over spikes (the default space,
  five TBD blocks, 5^5 = 3,125 architectures);
* ``snn2``: SNN_1 plus GAP before the FC layer (paper §3.1);
* ``snn3``: the down-sampling slots are TBD blocks too (stride-2 spiking blocks, paper §3.2), so it
  has eight TBD blocks. It is also Table 6's first enlarged space (the SNN_3-based one, 5^8 = 390,625);
* ``snn4``: 2x2 average pools instead of max-pools (paper §3.2);
* ``snn1-8tbd``: Table 6's second enlarged space, SNN_1 with an extra TBD block (same width, stride 1)
  before each max-pool: ``[C, C, M, 2C, 2C, 2C, M, 4C, 4C, 4C, M]``, eight TBD blocks.

The network keeps as many down-sampling stages as the input allows (``AutoSNNNet``; 8x8 digits: two).
A dropped ``M`` slot is simply left out, except in ``snn3`` where its TBD block stays and runs at
stride 1, so an architecture has the same length for every input size.

Block choices: the paper's five (``BLOCK_CHOICES``); ``EXTENDED_CHOICES`` adds the optional spiking
inverted bottlenecks ``SIB_k{3,5}_e{1,3,6}`` (appendix B.3), not part of the default space.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from nasflow.snn.blocks import BLOCKS, SIB_BLOCKS

__all__ = [
    "BASELINES",
    "BLOCK_CHOICES",
    "EXTENDED_CHOICES",
    "MACROS",
    "NUM_TBD",
    "SIB_CHOICES",
    "Macro",
    "crossover",
    "format_arch",
    "get_macro",
    "mutate",
    "num_blocks",
    "parse_arch",
    "search_space_size",
]

BLOCK_CHOICES: tuple[str, ...] = BLOCKS
SIB_CHOICES: tuple[str, ...] = SIB_BLOCKS
EXTENDED_CHOICES: tuple[str, ...] = BLOCKS + SIB_BLOCKS
NUM_TBD = 5
BASELINES = {"all-SCB_k3": ("SCB_k3",) * NUM_TBD, "all-SRB_k3": ("SRB_k3",) * NUM_TBD}

DOWNSAMPLE_KINDS = ("max", "avg", "tbd")


@dataclass(frozen=True)
class Macro:
    """A macro backbone: ``slots`` are width multipliers of TBD blocks (``1``, ``2``, ``4`` → C, 2C, 4C)
    or ``"M"`` for a down-sampling slot; ``downsample`` is ``max`` / ``avg`` (2x2 pooling over spikes) or
    ``tbd`` (a stride-2 TBD block keeping the current width); ``gap`` adds global average pooling
    before the FC layer."""

    name: str
    slots: tuple[int | str, ...]
    downsample: str = "max"
    gap: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.downsample not in DOWNSAMPLE_KINDS:
            raise ValueError(
                f"macro {self.name!r}: downsample must be one of {DOWNSAMPLE_KINDS}, got {self.downsample!r}"
            )
        for s in self.slots:
            if s != "M" and not (isinstance(s, int) and s >= 1):
                raise ValueError(f"macro {self.name!r}: a slot is a positive width multiplier or 'M', got {s!r}")
        if not self.slots or self.slots[0] == "M":
            raise ValueError(f"macro {self.name!r} must start with a TBD block")

    @property
    def num_downsample(self) -> int:
        return sum(1 for s in self.slots if s == "M")

    @property
    def num_blocks(self) -> int:
        """Number of TBD blocks (an architecture's length)."""
        tbd = sum(1 for s in self.slots if s != "M")
        return tbd + (self.num_downsample if self.downsample == "tbd" else 0)

    def layout(self, channels: int) -> str:
        """Human-readable layout, e.g. ``[16, M, 32, 32, M, 64, 64, M]``."""
        ds = {"max": "M", "avg": "A", "tbd": "DS"}[self.downsample]
        parts = [ds if s == "M" else str(int(s) * channels) for s in self.slots]
        return "[" + ", ".join(parts) + "]" + (" + GAP" if self.gap else "")


_SNN1 = (1, "M", 2, 2, "M", 4, 4, "M")
MACROS: dict[str, Macro] = {
    m.name: m
    for m in (
        Macro("snn1", _SNN1, "max", False, "SNN_1: max-pool down-sampling, no GAP (the AutoSNN search space)"),
        Macro("snn2", _SNN1, "max", True, "SNN_2: SNN_1 + global average pooling before the FC layer"),
        Macro("snn3", _SNN1, "tbd", False,
              "SNN_3: stride-2 TBD blocks instead of max-pools (8 TBD; Table 6's SNN_3-based enlarged space)"),
        Macro("snn4", _SNN1, "avg", False, "SNN_4: 2x2 average pools instead of max-pools"),
        Macro("snn1-8tbd", (1, 1, "M", 2, 2, 2, "M", 4, 4, 4, "M"), "max", False,
              "Table 6: SNN_1 with an extra TBD block before each max-pool (8 TBD)"),
    )
}


def get_macro(macro: str | Macro) -> Macro:
    """A ``Macro`` by name (or the object itself)."""
    if isinstance(macro, Macro):
        return macro
    try:
        return MACROS[macro]
    except KeyError:
        raise ValueError(f"unknown macro {macro!r}; choose from {', '.join(MACROS)}") from None


def num_blocks(macro: str | Macro = "snn1") -> int:
    """The number of TBD blocks of a macro (5 for SNN_1, 8 for SNN_3 and the enlarged spaces)."""
    return get_macro(macro).num_blocks


def search_space_size(macro: str | Macro = "snn1", choices: tuple[str, ...] = BLOCK_CHOICES) -> int:
    """How many architectures a macro holds with these block choices (5^5 = 3,125 for SNN_1)."""
    return len(choices) ** num_blocks(macro)


def parse_arch(
    text: str | tuple[str, ...] | list[str],
    num_blocks: int = NUM_TBD,
    choices: tuple[str, ...] = BLOCK_CHOICES,
) -> tuple[str, ...]:
    """``"SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5"`` or a baseline name (``all-SCB_k3``) → a tuple of block names.

    ``num_blocks`` is the macro's TBD count (``num_blocks(macro)``); ``choices`` the allowed block names
    (``EXTENDED_CHOICES`` to admit SIBs). ``all-<block>`` repeats any allowed block.
    """
    if isinstance(text, str):
        if text in BASELINES:
            return (BASELINES[text][0],) * num_blocks
        if text.startswith("all-"):
            if text[4:] in choices:
                return (text[4:],) * num_blocks
            raise ValueError(f"unknown architecture {text!r}; baselines: {', '.join(BASELINES)}")
        names = tuple(part.strip() for part in text.split(","))
    else:
        names = tuple(text)
    unknown = [n for n in names if n not in choices]
    if unknown:
        raise ValueError(
            f"unknown block name(s) {unknown} in architecture {text!r}; choose from {', '.join(choices)}"
        )
    if len(names) != num_blocks:
        raise ValueError(f"architecture {text!r} has {len(names)} blocks; this search space needs {num_blocks}")
    return names


def format_arch(arch: tuple[str, ...]) -> str:
    """The canonical comma-separated spelling of an architecture."""
    return ",".join(arch)


def mutate(arch: tuple[str, ...], choices: Sequence[str], prob: float, rng: random.Random) -> tuple[str, ...]:
    """Replace each block with probability ``prob`` by a *different* block."""
    out = []
    for block in arch:
        if rng.random() < prob:
            out.append(rng.choice([c for c in choices if c != block]))
        else:
            out.append(block)
    return tuple(out)


def crossover(a: tuple[str, ...], b: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
    """Single-point crossover: the first ``i`` blocks of ``a`` and the rest of ``b``, ``1 <= i < len``."""
    if len(a) != len(b):
        raise ValueError(f"crossover needs parents of equal length, got {len(a)} and {len(b)}")
    i = rng.randint(1, len(a) - 1)
    return a[:i] + b[i:]
