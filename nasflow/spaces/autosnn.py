"""AutoSNN search space declaration (REFERENCE.md §2): an architecture is its TBD block names in order."""

from __future__ import annotations

from nasflow.snn.blocks import BLOCKS

__all__ = ["BASELINES", "BLOCK_CHOICES", "NUM_TBD", "format_arch", "parse_arch"]

BLOCK_CHOICES: tuple[str, ...] = BLOCKS
NUM_TBD = 5
BASELINES = {"all-SCB_k3": ("SCB_k3",) * NUM_TBD, "all-SRB_k3": ("SRB_k3",) * NUM_TBD}


def parse_arch(text: str | tuple[str, ...] | list[str], num_blocks: int = NUM_TBD) -> tuple[str, ...]:
    """``"SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5"`` or a baseline name (``all-SCB_k3``) → a tuple of block names."""
    if isinstance(text, str):
        if text in BASELINES:
            return (BASELINES[text][0],) * num_blocks
        if text.startswith("all-"):
            raise ValueError(f"unknown architecture {text!r}; baselines: {', '.join(BASELINES)}")
        names = tuple(part.strip() for part in text.split(","))
    else:
        names = tuple(text)
    unknown = [n for n in names if n not in BLOCK_CHOICES]
    if unknown:
        raise ValueError(
            f"unknown block name(s) {unknown} in architecture {text!r}; choose from {', '.join(BLOCK_CHOICES)}"
        )
    if len(names) != num_blocks:
        raise ValueError(f"architecture {text!r} has {len(names)} blocks; this search space needs {num_blocks}")
    return names


def format_arch(arch: tuple[str, ...]) -> str:
    """The canonical comma-separated spelling of an architecture."""
    return ",".join(arch)
