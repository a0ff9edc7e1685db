"""Reading and writing NIR files (HDF5) with one clear error type for everything that can go wrong.

``read_nir`` checks, before handing the file to ``nir.read``: that it exists and is HDF5, that it holds a
NIR graph, that every node has a known type (naming the node otherwise); after reading: that the graph
has an Input node, that no parameter holds NaN or infinite values (``exporters.core.traversal``)
and that its shapes agree (``exporters.core.shapes.infer_shapes``, naming the node).

Files written by nir < 1.0.6 have no ``v_reset`` on their neurons and meant reset by subtraction;
following REFERENCE.md §6 they are read back as reset to ``v_reset = 0`` (what ``nir.read`` does), with a
``LegacyResetWarning`` and ``metadata["legacy_reset"]`` naming the affected nodes (the warning points to the
dialects of the frameworks that write such files; with a dialect the reset is the dialect's, and nothing is
assumed).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import h5py
import nir

from exporters.core.conventions import Conventions
from exporters.core.errors import NIRFormatError
from exporters.core.hdf5 import check_hdf5
from exporters.core.kinds import FIRING_TYPES, KINDS, KNOWN_TYPES
from exporters.core.shapes import infer_shapes
from exporters.core.traversal import check_finite_parameters, require_input
from exporters.dialects import apply_dialect

__all__ = ["LegacyResetWarning", "NIRFormatError", "read_nir", "write_nir"]


class LegacyResetWarning(UserWarning):
    """A pre-1.0.6 NIR file whose neurons meant reset by subtraction is read with reset to 0."""


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _as_str(v: object) -> str:
    return v.decode("utf8", "replace") if isinstance(v, bytes) else str(v)


def _required(kind: str) -> list[str]:
    """The parameters nir's node class cannot do without (no default)."""
    cls = getattr(nir, kind)
    return [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING and f.name not in ("input_type", "output_type", "metadata")]


def _scan(group: h5py.Group, path: Path, prefix: str, legacy: list[str]) -> None:
    """Check node types recursively; collect resetting neurons without ``v_reset``."""
    if "type" not in group:
        raise NIRFormatError(f"{path}: node {prefix or '<root>'!r} has no 'type' entry; not a NIR graph")
    kind = _as_str(group["type"][()])
    if kind not in KINDS:
        raise NIRFormatError(
            f"{path}: node {prefix or '<root>'!r} has unknown NIR type {kind!r}; supported: {', '.join(KNOWN_TYPES)}"
        )
    if KINDS[kind].category == "neuron":
        missing = [name for name in _required(kind) if name not in group]
        if missing:
            raise NIRFormatError(f"{path}: node {prefix!r} ({kind}) has no {', '.join(missing)}; nir 1.0.8 requires "
                                 f"{', '.join(_required(kind))} for a {kind} (re-export it, or add the value)")
    if kind in FIRING_TYPES and "v_reset" not in group:
        legacy.append(prefix)
    if kind == "NIRGraph":
        if "nodes" not in group or "edges" not in group:
            raise NIRFormatError(f"{path}: graph {prefix or '<root>'!r} lacks 'nodes' or 'edges'")
        for key, child in group["nodes"].items():
            if not isinstance(child, h5py.Group):
                raise NIRFormatError(f"{path}: node {key!r} is not an HDF5 group")
            _scan(child, path, f"{prefix}.{key}" if prefix else key, legacy)


def read_nir(path: str | Path, dialect: str = "nir", dt: float | None = None) -> nir.NIRGraph:
    """Read and validate a NIR graph; raises ``NIRFormatError`` naming the file and node on any problem.

    ``dialect`` (``exporters.dialects``) rewrites the graph to the producing framework's discretisation before it
    is checked (a dialect may repair what its exporter writes, such as snnTorch's ``τ = ∞`` for an integrator or
    Rockpool's batch dimension in the Input); ``dt`` is the step it uses when the file has none.
    """
    path = Path(path)
    if not path.is_file():
        raise NIRFormatError(f"{path}: no such NIR file")
    legacy: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise NIRFormatError(f"{path}: HDF5 file without a 'node' group; not a NIR graph")
            check_hdf5(f, path, NIRFormatError)
            version = _as_str(f["version"][()]) if "version" in f else "0"
            _scan(f["node"], path, "", legacy)
    except NIRFormatError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as err:  # h5py on a damaged file
        raise NIRFormatError(f"{path}: not a readable NIR file (truncated, or not HDF5): {err}") from None
    try:
        graph = nir.read(path, type_check=False)
    except NIRFormatError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, OSError, AssertionError, IndexError,
            RuntimeError) as err:  # nir's own constructors check with assert
        raise NIRFormatError(f"{path}: cannot build the NIR graph: {type(err).__name__}: {err}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NIRFormatError(f"{path}: the top-level node is a {type(graph).__name__}, not a NIRGraph")
    require_input(graph, path)
    try:
        if dialect != "nir":  # before the checks: a dialect repairs what its exporter writes (snnTorch's τ = ∞)
            graph = apply_dialect(graph, dialect, dt)
        check_finite_parameters(graph)  # also: every parameter a number (a damaged file may hold text)
        infer_shapes(graph)
        Conventions.from_metadata(graph.metadata)
    except NIRFormatError as err:
        raise NIRFormatError(f"{path}: {err}") from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, AssertionError) as err:
        raise NIRFormatError(f"{path}: inconsistent NIR graph ({type(err).__name__}: {err})") from None
    if not isinstance(graph.metadata, dict):
        graph.metadata = {}
    graph.metadata.setdefault("nir_version", version)
    if legacy and _version_tuple(version) < (1, 0, 6):
        graph.metadata["legacy_reset"] = ",".join(legacy)
        if dialect != "nir":  # the dialect states the reset explicitly
            return graph
        warnings.warn(
            f"{path}: written by nir {version} (< 1.0.6), where {', '.join(legacy)} meant reset by subtraction; "
            "read as reset to v_reset = 0 (REFERENCE.md §6). Files from Sinabs or Rockpool (which pin nir <= 1.0.4) "
            "run as their framework does with --dialect sinabs / --dialect rockpool",
            LegacyResetWarning,
            stacklevel=2,
        )
    return graph


def write_nir(path: str | Path, graph: nir.NIRGraph) -> Path:
    """Validate ``graph`` (shapes, Input present) and write it to ``path`` (parents created); returns the path."""
    path = Path(path)
    try:
        infer_shapes(graph)
    except NIRFormatError as err:
        raise NIRFormatError(f"{path}: refusing to write an inconsistent graph: {err}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(path, graph)
    return path
