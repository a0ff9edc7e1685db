"""The Lava backend's error type (a leaf module: every module of the backend raises it)."""

from __future__ import annotations

from exporters.core.errors import NIRFormatError

__all__ = ["LavaBackendError"]


class LavaBackendError(NIRFormatError):
    """A graph (node) or input that the Lava backend cannot represent; the message names the node.

    A ``NIRFormatError``, so that callers catching the core's error also catch a backend's refusal."""
