"""The one error type for NIR graphs and files that cannot be interpreted (numpy + nir only)."""

from __future__ import annotations

__all__ = ["NIRFormatError"]


class NIRFormatError(ValueError):
    """A NIR graph (or file) that cannot be interpreted; the message names the file and/or node."""
